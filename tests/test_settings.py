"""Every environment variable the README documents changes behaviour (one test each), read in one place."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import tiny_model_dir  # noqa: F401
from pacs_fixtures import SilentServer, TlsRelay, orthanc, set_pacs_env, silent, tls_certificate  # noqa: F401
from PIL import Image

from medapp import settings
from medapp.data.datasets import load_busi_records
from medapp.errors import ConfigError, DataNotFoundError, ModelLoadError, PacsError, UnsupportedImageError
from medapp.intake.imaging import load_image
from medapp.model.checkpoint import default_model_dir
from medapp.pacs.client import PacsClient, PacsConfig
from medapp.pacs.orthanc_server import OrthancServer
from medapp.serving.analysis import Upload, analyze_upload, open_audit_log
from medapp.serving.predict import Predictor
from medapp.settings import get_settings, reload_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _png(height: int, width: int) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _set(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    reload_settings()


def test_readme_documents_exactly_the_variables_settings_reads() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## The pipeline")]
    documented = set(re.findall(r"`(MEDAPP_[A-Z_]+)`", table))
    read_here = {v for k, v in vars(settings).items() if k.endswith("_ENV")}
    assert documented == read_here


def test_no_other_module_reads_the_environment() -> None:
    readers = [p.relative_to(PROJECT_ROOT) for p in (PROJECT_ROOT / "medapp").rglob("*.py")
               if "os.environ" in p.read_text() or "getenv" in p.read_text()]
    # torchrun's own variables are read where its protocol is spoken
    assert sorted(map(str, readers)) == ["medapp/settings.py", "medapp/training/distributed.py"]


def test_defaults_without_the_environment() -> None:
    resolved = settings.Settings.from_env({})
    assert resolved == settings.Settings()
    assert resolved.data_dir == PROJECT_ROOT.parent / "shared" / "data" and resolved.model_dir is None
    assert (resolved.max_file_bytes, resolved.max_pixels, resolved.min_side) == (128_000_000, 40_000_000, 32)


def test_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("MEDAPP_MIN_SIDE", "500")
    assert get_settings() is first  # not re-read behind the caller's back
    assert reload_settings().min_side == 500


def test_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _set(monkeypatch, "MEDAPP_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path))):
        load_busi_records("test")


def test_model_dir(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    _set(monkeypatch, "MEDAPP_MODEL_DIR", str(tiny_model_dir))
    assert default_model_dir() == tiny_model_dir
    assert Predictor.from_dir().card.name == "tiny_test_model"
    _set(monkeypatch, "MEDAPP_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelLoadError, match="no model_card.json"):
        Predictor.from_dir()


def test_audit_log(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    target = tmp_path / "elsewhere" / "audit.jsonl"
    _set(monkeypatch, "MEDAPP_AUDIT_LOG", str(target))
    analyze_upload(Predictor.from_dir(tiny_model_dir), Upload("scan.png", _png(200, 260)), explain=False,
                   audit=open_audit_log())
    entries = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(entries) == 1 and "scan.png" not in target.read_text()


def test_deid_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from medapp.intake.deidentify import site_secret

    target = tmp_path / "keys" / "deid_secret"
    _set(monkeypatch, "MEDAPP_DEID_SECRET_FILE", str(target))
    assert site_secret() == target.read_text().strip()


def test_max_file_mb(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png(200, 260)
    assert load_image(data).original_size == (200, 260)
    _set(monkeypatch, "MEDAPP_MAX_FILE_MB", str(len(data) / 2 / 1e6))
    with pytest.raises(UnsupportedImageError, match="MB limit"):
        load_image(data)


def test_max_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, "MEDAPP_MAX_PIXELS", "40000")
    assert load_image(_png(150, 260)).original_size == (150, 260)
    with pytest.raises(UnsupportedImageError, match="possible decompression bomb"):
        load_image(_png(200, 260))


def test_min_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported bug: MEDAPP_MIN_SIDE=500 still loaded a 100x120 PNG."""
    assert load_image(_png(100, 120)).original_size == (100, 120)
    _set(monkeypatch, "MEDAPP_MIN_SIDE", "500")
    with pytest.raises(UnsupportedImageError, match="at least 500 px"):
        load_image(_png(100, 120))


@pytest.mark.parametrize(("name", "value"), [("MEDAPP_MIN_SIDE", "big"), ("MEDAPP_MAX_PIXELS", "-5"),
                                             ("MEDAPP_MAX_FILE_MB", "0")])
def test_bad_values_are_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        reload_settings()


# -- the PACS (medapp.pacs.client): each variable changes what the client does --------------------------------

def _pacs_client() -> PacsClient:
    return PacsClient(PacsConfig.from_settings(attempts=1))


@pytest.mark.filterwarnings("ignore:.*plain HTTP.*")
def test_pacs_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no PACS is configured.*MEDAPP_PACS_URL"):
        _pacs_client()
    _set(monkeypatch, "MEDAPP_PACS_URL", "http://127.0.0.1:9/dicom-web")  # the discard port: nobody answers
    with pytest.raises(PacsError, match=re.escape("cannot reach the PACS at http://127.0.0.1:9/dicom-web")):
        _pacs_client().search_studies()


def test_pacs_user(monkeypatch: pytest.MonkeyPatch, orthanc: OrthancServer) -> None:  # noqa: F811
    set_pacs_env(monkeypatch, orthanc)
    assert isinstance(_pacs_client().search_studies(), list)
    _set(monkeypatch, "MEDAPP_PACS_USER", "someone-else")
    with pytest.raises(PacsError, match="HTTP 401"):
        _pacs_client().search_studies()


def test_pacs_password_file(monkeypatch: pytest.MonkeyPatch, orthanc: OrthancServer, tmp_path: Path) -> None:  # noqa: F811
    set_pacs_env(monkeypatch, orthanc)
    assert isinstance(_pacs_client().search_studies(), list)
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    _set(monkeypatch, "MEDAPP_PACS_PASSWORD_FILE", str(wrong))
    with pytest.raises(PacsError, match="refused medapp's credentials"):
        _pacs_client().search_studies()
    _set(monkeypatch, "MEDAPP_PACS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="MEDAPP_PACS_PASSWORD_FILE"):
        _pacs_client()


def test_pacs_ca_bundle(monkeypatch: pytest.MonkeyPatch, orthanc: OrthancServer, tmp_path: Path) -> None:  # noqa: F811
    """The PACS behind HTTPS with the hospital's own certificate: refused until the CA bundle names it."""
    certificate, key = tls_certificate(tmp_path)
    relay = TlsRelay(certificate, key, orthanc.config.http_port)
    try:
        set_pacs_env(monkeypatch, orthanc)
        _set(monkeypatch, "MEDAPP_PACS_URL", f"https://127.0.0.1:{relay.port}/dicom-web")
        with pytest.raises(PacsError, match="TLS certificate.*MEDAPP_PACS_CA_BUNDLE"):
            _pacs_client().search_studies()
        _set(monkeypatch, "MEDAPP_PACS_CA_BUNDLE", str(certificate))
        assert isinstance(_pacs_client().search_studies(), list)
    finally:
        relay.close()
    _set(monkeypatch, "MEDAPP_PACS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="MEDAPP_PACS_CA_BUNDLE"):
        _pacs_client()


@pytest.mark.filterwarnings("ignore:.*plain HTTP.*")
def test_pacs_timeout(monkeypatch: pytest.MonkeyPatch, silent: SilentServer) -> None:  # noqa: F811
    _set(monkeypatch, "MEDAPP_PACS_URL", silent.url)
    _set(monkeypatch, "MEDAPP_PACS_TIMEOUT", "0.2")
    with pytest.raises(PacsError, match=r"did not answer a study search within 0\.2 s.*MEDAPP_PACS_TIMEOUT"):
        _pacs_client().search_studies()
