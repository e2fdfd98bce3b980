"""Sign-in end to end: `streamlit run app.py` with an ``[auth]`` secrets file pointing at a real OpenID Connect
provider on localhost (oidc-provider-mock: a working provider whose login form takes any subject), driven in
Debian's Chromium. Nothing on the app's side is mocked: Streamlit's own st.login fetches the provider's metadata,
exchanges the code for tokens and checks the ID token's signature.

Skips only when /usr/bin/chromium is missing, as tests/test_e2e_browser.py does.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from oidc_provider_mock import run_server_in_thread
from playwright.sync_api import Page, sync_playwright

from medapp.reporting.report import DECISION_SUPPORT
from medapp.serving.signin import LOCAL_USER, SINGLE_USER_NOTICE
from tests.app_fixtures import (  # noqa: F401  (app_model_dir is a fixture)
    CHROMIUM,
    CHROMIUM_ARGS,
    AppServer,
    app_model_dir,
    busi_test_image,
    free_port,
)

TIMEOUT_MS = 120_000
CLINICIAN = "dr.jones@hospital.example"

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium`")


@pytest.fixture
def identity_provider() -> Iterator[str]:
    """A real OIDC provider on a free localhost port, in a thread of this process; yields its issuer URL."""
    with run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


def write_auth_secrets(path: Path, app_port: int, issuer: str) -> Path:
    """What a hospital writes into .streamlit/secrets.toml, here for the local provider (never the project's)."""
    path.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "medapp-test"
client_secret = "{secrets.token_hex(16)}"
server_metadata_url = "{issuer}/.well-known/openid-configuration"
""")
    return path


def _wait_until_idle(page: Page) -> None:
    """Until the script run has finished (Streamlit's own end-to-end tests wait on this attribute), so that what
    is absent then is absent for good."""
    page.locator("[data-testid=stApp][data-test-script-state=notRunning]").wait_for()


def _upload_and_wait_for_result(page: Page, image: Path) -> str:
    with page.expect_file_chooser() as chooser:
        page.locator("[data-testid=stFileUploaderDropzone] button").first.click()
    chooser.value.set_files(str(image))
    metric = page.get_by_test_id("stMetricValue").first
    metric.wait_for()
    return metric.inner_text().strip()


def _audit_users(path: Path) -> list[str | None]:
    return [json.loads(line).get("user") for line in path.read_text().splitlines()]


def test_sign_in_through_the_identity_provider_then_analyse_and_the_audit_log_names_the_user(
        app_model_dir, identity_provider, tmp_path):  # noqa: F811
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    env = {"MEDAPP_MODEL_DIR": str(app_model_dir), "MEDAPP_AUDIT_LOG": str(audit)}
    secrets_file = write_auth_secrets(tmp_path / "secrets.toml", port, identity_provider)
    with (AppServer(env, port=port, log_path=tmp_path / "streamlit.log", secrets=secrets_file) as srv,
          sync_playwright() as pw):
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            for path in ("/performance", "/"):  # a deep link gets the sign-in screen too
                page.goto(f"{srv.url}{path}")
                page.get_by_role("heading", name="Sign in to medapp").wait_for()
                page.get_by_role("button", name="Sign in").wait_for()
                _wait_until_idle(page)
                assert page.locator("[data-testid=stFileUploaderDropzone]").count() == 0  # refused without sign-in
                assert page.get_by_text(DECISION_SUPPORT).count() == 0  # no model, no sidebar, no other page
                assert page.get_by_role("link", name="Model performance").count() == 0
                assert page.get_by_role("heading", name="Model performance").count() == 0
            page.screenshot(path=str(tmp_path / "signin.png"))

            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{identity_provider}/oauth2/authorize**")  # the provider's own login form
            page.locator("input[name=sub]").fill(CLINICIAN)
            page.get_by_role("button", name="Authorize").click()

            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_text(f"Signed in as {CLINICIAN}").wait_for()
            sidebar.get_by_role("button", name="Sign out").wait_for()
            assert sidebar.locator("a", has_text=CLINICIAN).count() == 0  # shown as text, not a mailto link
            assert sidebar.get_by_text(SINGLE_USER_NOTICE).count() == 0
            assert re.fullmatch(r"[<>]?\d{1,2}%", _upload_and_wait_for_result(page, busi_test_image("malignant", 3)))
            users = _audit_users(audit)
            assert users and set(users) == {CLINICIAN}
            page.screenshot(path=str(tmp_path / "signed_in.png"))

            sidebar.get_by_role("button", name="Sign out").click()  # Streamlit ends the provider's session too
            page.wait_for_url(f"{identity_provider}/oauth2/end_session**")
            page.get_by_role("button", name="End session").click()
            page.get_by_role("heading", name="Sign in to medapp").wait_for()
            _wait_until_idle(page)
            assert page.locator("[data-testid=stFileUploaderDropzone]").count() == 0
        finally:
            browser.close()


def test_without_an_identity_provider_the_app_says_it_is_single_user(app_model_dir, tmp_path):  # noqa: F811
    audit = tmp_path / "audit.jsonl"
    env = {"MEDAPP_MODEL_DIR": str(app_model_dir), "MEDAPP_AUDIT_LOG": str(audit)}
    no_secrets = tmp_path / "absent" / "secrets.toml"  # no secrets at all, whatever the developer has configured
    with (AppServer(env, log_path=tmp_path / "streamlit.log", secrets=no_secrets) as srv, sync_playwright() as pw):
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(srv.url)
            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_text(SINGLE_USER_NOTICE).wait_for()
            _wait_until_idle(page)
            assert sidebar.get_by_role("button", name="Sign out").count() == 0
            assert page.get_by_role("heading", name="Sign in to medapp").count() == 0
            _upload_and_wait_for_result(page, busi_test_image("benign", 0))
        finally:
            browser.close()
    users = _audit_users(audit)
    assert users and set(users) == {LOCAL_USER}
