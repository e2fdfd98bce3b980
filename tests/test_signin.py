"""Sign-in: what an ``[auth]`` section means (medapp.serving.signin), who the audit log names, and the app's gate
through Streamlit's AppTest (``at.secrets`` for the configuration, ``at.user`` for a signed-in user). The real
sign-in through an identity provider, in a browser, is tests/test_signin_browser.py."""

from __future__ import annotations

import getpass
import json

import pytest
from streamlit.testing.v1 import AppTest

from medapp.errors import ConfigError
from medapp.serving.signin import (
    LOCAL_USER,
    SINGLE_USER_NOTICE,
    SignInConfig,
    cli_user,
    read_signin_config,
    signed_in_user,
)
from medapp.settings import reload_settings
from tests.app_fixtures import PROJECT_ROOT, app_model_dir, busi_test_image  # noqa: F401  (a fixture)

AUTH = {"redirect_uri": "https://medapp.hospital.example/oauth2callback", "cookie_secret": "s" * 32,
        "client_id": "medapp", "client_secret": "shh",
        "server_metadata_url": "https://idp.hospital.example/.well-known/openid-configuration"}
PROVIDER = {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")}
SHARED = {k: AUTH[k] for k in ("redirect_uri", "cookie_secret")}


@pytest.mark.parametrize(
    ("auth", "providers"),
    [
        (None, ()),
        ({}, ()),
        (AUTH, (None,)),
        (AUTH | {"client_kwargs": {"prompt": "login"}}, (None,)),  # the unnamed provider's options, not a provider
        (SHARED | {"okta": PROVIDER, "entra": PROVIDER}, ("okta", "entra")),
    ],
)
def test_auth_section_gives_the_providers(auth, providers):
    config = read_signin_config(auth)
    assert config == SignInConfig(providers) and config.enabled == bool(providers)


@pytest.mark.parametrize(
    ("auth", "unreadable", "match"),
    [
        ({"client_id": "x"}, (), r"lacks redirect_uri, cookie_secret"),
        (AUTH | {"client_secret": ""}, (), r"\[auth\] .* lacks client_secret"),
        (SHARED, (), "names no identity provider"),
        (SHARED | {"okta": {"client_id": "x"}}, (), r"\[auth\.okta\] .* lacks client_secret, server_metadata_url"),
        (SHARED | {"my_idp": PROVIDER}, (), "may not contain '_'"),
        (AUTH | {"redirect_uri": "https://medapp.hospital.example/"}, (), "ending in /oauth2callback"),
        (None, ("/etc/medapp/secrets.toml",), r"/etc/medapp/secrets.toml exists but could not be read"),
    ],
)
def test_half_configured_sign_in_is_refused_not_turned_off(auth, unreadable, match):
    """An [auth] section that cannot work keeps the app closed: falling back to no sign-in would open it."""
    with pytest.raises(ConfigError, match=match):
        read_signin_config(auth, unreadable)


@pytest.mark.parametrize(
    ("claims", "user"),
    [
        ({"email": "dr.a@hospital.example", "sub": "123", "iss": "https://idp"}, "dr.a@hospital.example"),
        ({"sub": "123", "iss": "https://idp"}, "123 (issuer https://idp)"),
        ({"sub": "123"}, "123"),
        ({"email": "dr.a@x\n{\"forged\": 1}", "sub": "1"}, 'dr.a@x {"forged": 1}'),  # one line, whatever it holds
        ({"email": "a" * 500}, "a" * 200),
    ],
)
def test_signed_in_user_is_the_email_else_the_subject(claims, user):
    assert signed_in_user(claims) == user


def test_a_token_naming_nobody_is_refused():
    with pytest.raises(ConfigError, match="neither an email nor a sub"):
        signed_in_user({"is_logged_in": True, "email": "  ", "name": "Dr A"})


def test_cli_user_is_the_os_account():
    assert cli_user() == f"{getpass.getuser()} (OS user, command line)"


@pytest.fixture
def at(monkeypatch, tmp_path, app_model_dir) -> AppTest:  # noqa: F811
    monkeypatch.setenv("MEDAPP_MODEL_DIR", str(app_model_dir))
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    reload_settings()
    return AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "error", "warning", "info", "title")
                     for e in at.get(kind))


def test_with_sign_in_configured_nothing_but_the_sign_in_screen_shows(at):
    at.secrets["auth"] = AUTH
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in to medapp"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.get("file_uploader") and not at.metric and not at.sidebar.get("caption")  # no model, no page


def test_a_broken_auth_section_keeps_the_app_closed(at):
    at.secrets["auth"] = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "x"}  # no provider
    at.run()
    assert not at.exception and not at.button and not at.get("file_uploader")
    assert "stays closed" in at.error[0].value and "names no identity provider" in at.error[0].value


def test_signed_in_user_sees_the_app_their_name_and_sign_out_and_is_audited(at, tmp_path):
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": "dr.a@hospital.example", "sub": "42"}
    at.run()
    assert not at.exception
    assert [t.value for t in at.sidebar.text] == ["Signed in as dr.a@hospital.example"]
    assert SINGLE_USER_NOTICE not in [str(c.value) for c in at.sidebar.caption]
    assert "Sign out" in [b.label for b in at.sidebar.button]
    image = busi_test_image("malignant")
    at.file_uploader(key="uploads").set_value([(image.name, image.read_bytes(), "image/png")])
    at.run()
    assert not at.exception
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert entries and {e["user"] for e in entries} == {"dr.a@hospital.example"}


def test_without_an_identity_provider_the_app_says_sign_in_is_off_and_audits_a_local_user(at, tmp_path):
    at.secrets["medapp_test"] = "no [auth] section"  # secrets without [auth]; never the developer's own file
    at.run()
    assert not at.exception
    assert SINGLE_USER_NOTICE in [str(c.value) for c in at.sidebar.caption]
    assert "Sign out" not in [b.label for b in at.sidebar.button]
    image = busi_test_image("benign")
    at.file_uploader(key="uploads").set_value([(image.name, image.read_bytes(), "image/png")])
    at.run()
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert entries and {e["user"] for e in entries} == {LOCAL_USER}


def test_a_secrets_file_that_does_not_parse_keeps_the_app_closed(at, tmp_path):
    """Streamlit skips a secrets file it cannot parse; the app must not then run as if sign-in were off."""
    from streamlit import config
    from streamlit.runtime.secrets import secrets_singleton

    broken = tmp_path / "secrets.toml"
    broken.write_text('[auth]\nredirect_uri = "https://medapp.hospital.example/oauth2callback\n')  # unterminated
    before = config.get_option("secrets.files")
    config.set_option("secrets.files", [str(broken)])
    secrets_singleton._reset()
    try:
        at.run()
    finally:
        config.set_option("secrets.files", before)
        secrets_singleton._reset()
    assert not at.exception and not at.button and not at.get("file_uploader")
    assert f"{broken} exists but could not be read" in at.error[0].value.replace("\\", "")
