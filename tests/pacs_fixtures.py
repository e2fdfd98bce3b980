"""A real PACS for the tests (Orthanc with DICOMweb, from Debian's packages) and breast-ultrasound DICOMs to put in it.

Imported by test_pacs.py and test_settings.py (not a conftest: the lead owns that). The session's Orthanc is shared:
every test makes its own study (fresh UIDs), so tests never see each other's objects unless they search by date.
"""

from __future__ import annotations

import io
import select
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medapp.pacs.client import PacsClient, PacsConfig
from medapp.pacs.orthanc_server import OrthancServer, find_dicomweb_plugin, find_orthanc, write_config
from medapp.settings import reload_settings

# Identifiers the results must keep (they go back into the same study), and header values they must not copy.
PATIENT = {"PatientName": "Testperson^Ada", "PatientID": "MRN-0042", "PatientBirthDate": "19700101",
           "PatientSex": "F", "AccessionNumber": "ACC-77", "StudyID": "ST-9", "ReferringPhysicianName": "Ref^Rita"}
NOT_COPIED = {"InstitutionName": "St Elsewhere General", "ImageComments": "Ada has a lump, left breast",
              "OperatorsName": "Sono^Sam", "StudyDescription": "US BREAST LEFT Ada"}


def require_orthanc() -> None:
    """Skip, naming what to install, when Debian's Orthanc or its DICOMweb plugin is missing."""
    if find_orthanc() is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; .ci/run does it)")
    if find_dicomweb_plugin() is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """One Orthanc for the session, on a free local port, authentication on."""
    require_orthanc()
    with OrthancServer(write_config(tmp_path_factory.mktemp("orthanc"))) as server:
        yield server


def pacs_config(server: OrthancServer, **overrides: object) -> PacsConfig:
    c = server.config
    return PacsConfig(**{"url": c.dicomweb_url, "user": c.user, "password": c.password, "timeout": 30.0,
                         "attempts": 2, "backoff": 0.05, **overrides})


def pacs_client(server: OrthancServer, **overrides: object) -> PacsClient:
    return PacsClient(pacs_config(server, **overrides))


def set_pacs_env(monkeypatch: pytest.MonkeyPatch, server: OrthancServer) -> None:
    """Point the MEDAPP_PACS_* settings at ``server`` (as a hospital's IT would for its PACS)."""
    monkeypatch.setenv("MEDAPP_PACS_URL", server.config.dicomweb_url)
    monkeypatch.setenv("MEDAPP_PACS_USER", server.config.user)
    monkeypatch.setenv("MEDAPP_PACS_PASSWORD_FILE", str(server.config.password_path))
    reload_settings()


def ultrasound_regions(rows: int, cols: int, delta_cm: float = 0.01) -> Sequence:
    """One calibrated 2D tissue region over the whole frame (PS3.3 C.8.5.5: spatial format 1 = 2D, data type 1 =
    tissue, physical units 3 = cm, ``delta_cm`` cm per pixel in x and y)."""
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = cols - 1, rows - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = region.PhysicalDeltaY = delta_cm
    return Sequence([region])


def new_study(study_date: str = "20240105") -> Dataset:
    """The study-level attributes of a fresh study (new UID), with the patient of :data:`PATIENT`."""
    ds = Dataset()
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = study_date, "101010"
    for keyword, value in {**PATIENT, **NOT_COPIED}.items():
        setattr(ds, keyword, value)
    return ds


def in_study(ds: Dataset, study: Dataset, instance_number: int = 1) -> Dataset:
    """``ds`` moved into ``study``: its study-level attributes, and a new series and instance UID."""
    for elem in study:
        ds[elem.tag] = elem
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber, ds.SeriesNumber = instance_number, instance_number
    return ds


def busi_ultrasound(image_path: Path, study: Dataset, instance_number: int = 1) -> Dataset:
    """A breast-ultrasound DICOM (US Image Storage, MONOCHROME2, 8 bit) of a BUSI image, with an Ultrasound Region
    Sequence calibrated over the scan, in ``study``."""
    from intake_fixtures import make_dataset

    pixels = np.asarray(Image.open(image_path).convert("L"))
    ds = make_dataset(pixels, modality="US", BurnedInAnnotation="NO", Manufacturer="BUSI (Baheya Hospital)",
                      SequenceOfUltrasoundRegions=ultrasound_regions(*pixels.shape))
    return in_study(ds, study, instance_number)


def part10(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hung PACS); counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/dicom-web"

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def tls_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files: a self-signed certificate for 127.0.0.1 (being self-signed, it is also the CA
    bundle that trusts it); skips when the openssl command is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class TlsRelay:
    """HTTPS in front of a plain-HTTP server on this machine, as a hospital's reverse proxy (nginx, stunnel)
    terminates TLS in front of its PACS: each TLS connection is relayed byte for byte to ``target_port``."""

    def __init__(self, certificate: Path, key: Path, target_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate, key)
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):  # the client did not trust the certificate
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            while True:
                ready = select.select([tls, upstream], [], [], 30)[0]
                if not ready:
                    return
                for source in ready:
                    data = source.recv(65536)
                    if source is tls:
                        while tls.pending():
                            data += tls.recv(tls.pending())
                    if not data:
                        return
                    (upstream if source is tls else tls).sendall(data)
        except (ssl.SSLError, OSError):
            return
        finally:
            tls.close()
            upstream.close()

    def close(self) -> None:
        self.sock.close()
