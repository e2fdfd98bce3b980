"""Fixtures shared by every test: the data folder and the shipped model, each skipping clearly when absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medapp.data.datasets import data_dir
from medapp.settings import reload_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def session_audit_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's audit entries (the app's and ``predict``'s, subprocesses included) go to a scratch file, never
    into the project's ``artifacts/``; a test that checks entries sets its own ``MEDAPP_AUDIT_LOG``."""
    import os

    scratch = tmp_path_factory.mktemp("audit")
    path = scratch / "audit.jsonl"
    # The de-identification secret too: tests never create the site's real one in artifacts/.
    values = {"MEDAPP_AUDIT_LOG": str(path), "MEDAPP_DEID_SECRET_FILE": str(scratch / "deid_secret")}
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield path
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Each test reads the environment afresh, and leaves no settings behind (a test that sets a ``MEDAPP_*``
    variable calls :func:`medapp.settings.reload_settings` after setting it)."""
    reload_settings()
    yield
    reload_settings()


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    root = data_dir()
    if not (root / "busi" / "splits.csv").is_file():
        pytest.skip(f"BUSI data not found at {root} (set MEDAPP_DATA_DIR to the folder holding busi/)")
    return root


@pytest.fixture(scope="session")
def shipped_model_dir() -> Path:
    cards = sorted(PROJECT_ROOT.glob("models/*/model_card.json"))
    if not cards:
        pytest.skip("no shipped model under models/ yet")
    return cards[0].parent
