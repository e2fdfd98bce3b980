"""The DICOMweb client side (PS3.18): search a PACS (QIDO-RS), fetch instances into memory (WADO-RS), store (STOW-RS).

Built on ``dicomweb-client`` over a ``requests`` session. Credentials come from the deployment's settings
(``MEDAPP_PACS_USER`` and the file ``MEDAPP_PACS_PASSWORD_FILE`` names), never from code, and never from the URL
(credentials in a URL end up in logs and shell history, so such a URL is refused). TLS is verified against
``MEDAPP_PACS_CA_BUNDLE`` when set (it wins over ``REQUESTS_CA_BUNDLE``), else requests' default bundle.

Every request has a timeout (``MEDAPP_PACS_TIMEOUT``). Only safe requests (GET: searches and retrievals) are
retried, with exponential backoff, on a refused connection, a timeout, or an answer that says "try again" (HTTP 408,
429, 502, 503, 504); a store (POST) is sent once, because whether a store that timed out arrived is unknown:
callers make stores idempotent instead (:mod:`medapp.pacs.results` derives result UIDs from their source, and
:mod:`medapp.pacs.workflow` asks the PACS what it already holds before storing). Whatever goes wrong becomes one
:class:`~medapp.errors.PacsError` naming the PACS, what was asked and what to do; instances are never written to disk.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from ..errors import ConfigError, PacsError
from ..settings import Settings, get_settings

log = logging.getLogger(__name__)
# dicomweb-client logs every study, series and instance UID at INFO; medapp's logs carry no identifiers.
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)

RETRY_STATUS = frozenset({408, 429, 502, 503, 504})  # "try again": RFC 9110 15.5.9, 15.6.3-5; RFC 6585 4
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
T = TypeVar("T")


def read_password(path: Path) -> str:
    """The PACS password: the first line of ``path`` (a file readable by medapp's account only)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"the PACS password file {path} cannot be read; check MEDAPP_PACS_PASSWORD_FILE") from e
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise ConfigError(f"the PACS password file {path} is empty; write the password on its first line")
    return password


def check_url(url: str) -> str:
    """The DICOMweb base URL without a trailing slash; refuses other schemes and credentials in the URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the PACS URL must be an http(s) DICOMweb address such as "
                          f"https://pacs.hospital.example/dicom-web, got {parts.scheme or 'no'} scheme")
    if parts.username or parts.password:
        raise ConfigError("the PACS URL holds a user name or password; remove them and set MEDAPP_PACS_USER and "
                          "MEDAPP_PACS_PASSWORD_FILE instead (credentials in a URL end up in logs)")
    if parts.query or parts.fragment:
        raise ConfigError("the PACS URL must be the DICOMweb base address, without a query or fragment")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        warnings.warn(f"the PACS at {parts.hostname} is reached over plain HTTP: images, patient details and the "
                      "password cross the network unencrypted; use https", stacklevel=2)
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class PacsConfig:
    """How to reach one PACS. ``timeout`` is seconds per request; ``attempts`` bounds a safe request's tries,
    ``backoff`` the first wait between them (doubled each time)."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    timeout: float = 30.0
    attempts: int = 3
    backoff: float = 0.5

    @classmethod
    def from_settings(cls, url: str | None = None, settings: Settings | None = None, **overrides: Any) -> PacsConfig:
        """The deployment's PACS (``MEDAPP_PACS_*``), ``url`` replacing ``MEDAPP_PACS_URL`` when given."""
        s = settings or get_settings()
        url = url or s.pacs_url
        if not url:
            raise ConfigError("no PACS is configured: pass --dicomweb URL or set MEDAPP_PACS_URL")
        password = read_password(s.pacs_password_file) if s.pacs_password_file else None
        if password and not s.pacs_user:
            raise ConfigError("MEDAPP_PACS_PASSWORD_FILE is set but MEDAPP_PACS_USER is not; set both")
        if s.pacs_ca_bundle is not None and not s.pacs_ca_bundle.is_file():
            raise ConfigError(f"the CA bundle {s.pacs_ca_bundle} (MEDAPP_PACS_CA_BUNDLE) is not a file")
        values = {"url": check_url(url), "user": s.pacs_user, "password": password, "ca_bundle": s.pacs_ca_bundle,
                  "timeout": s.pacs_timeout, **overrides}
        return cls(**values)


@dataclass(frozen=True)
class StudySummary:
    """One study as a search returns it. ``patient_name`` (DICOM PN, e.g. ``Family^Given``) is filled only when a
    search asks for it: the app's PACS page, where the clinician picks a study by it; the CLI never asks, and it is
    never logged (nor in this object's repr)."""

    study_uid: str
    study_date: str
    modalities: tuple[str, ...]
    n_instances: int | None
    patient_name: str = field(default="", repr=False)


@dataclass(frozen=True)
class InstanceRef:
    """Where one instance lives, and what kind of object it is (``sop_class_uid``), before fetching it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str = ""


def _value(item: dict[str, Any], keyword: str, default: Any = "") -> Any:
    """One attribute's first value from a DICOM JSON object (PS3.18 F.2), or ``default``."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = item.get(tag, {}).get("Value") or []
    return values[0] if values else default


def _values(item: dict[str, Any], keyword: str) -> list[Any]:
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    return list(item.get(tag, {}).get("Value") or [])


class _Session(requests.Session):
    """A requests session whose CA bundle, when medapp's settings name one, wins over ``REQUESTS_CA_BUNDLE`` and
    ``CURL_CA_BUNDLE`` (requests otherwise lets those environment variables replace a session's ``verify``)."""

    def __init__(self, ca_bundle: Path | None) -> None:
        super().__init__()
        self.ca_bundle = str(ca_bundle) if ca_bundle else None

    def merge_environment_settings(self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca_bundle is not None:
            merged["verify"] = self.ca_bundle
        return merged


class PacsClient:
    """One PACS over DICOMweb. Methods return plain values or in-memory bytes and raise only :class:`PacsError`
    (or :class:`ConfigError` from the configuration)."""

    def __init__(self, config: PacsConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        session = _Session(config.ca_bundle)
        if config.user:
            session.auth = (config.user, config.password or "")
        self._web = DICOMwebClient(config.url, session=session, timeout=config.timeout)
        self._web.set_http_retry_params(retry=False)  # medapp retries, and only safe requests

    @property
    def url(self) -> str:
        return self.config.url

    # -- the one place requests are made and errors translated -------------------------------------------------

    def _call(self, what: str, request: Callable[[], T], *, safe: bool) -> T:
        attempts = self.config.attempts if safe else 1
        for attempt in range(1, attempts + 1):
            try:
                return request()
            except requests.exceptions.SSLError as e:
                raise PacsError(f"the TLS certificate of the PACS at {self.url} could not be verified ({what}); set "
                                "MEDAPP_PACS_CA_BUNDLE to the hospital's CA certificate file") from e
            except (requests.Timeout, requests.ConnectionError) as e:
                if attempt < attempts:
                    self._backoff(attempt, what, type(e).__name__)
                    continue
                raise self._unreachable(what, e, attempts) from e
            except requests.HTTPError as e:
                status = e.response.status_code if e.response is not None else 0
                if status in RETRY_STATUS and attempt < attempts:
                    self._backoff(attempt, what, f"HTTP {status}")
                    continue
                raise self._http_error(what, status, attempts if status in RETRY_STATUS else attempt) from e
            except (ValueError, KeyError, IndexError, TypeError, pydicom.errors.InvalidDicomError) as e:
                raise PacsError(f"the PACS at {self.url} answered {what} with something that is not valid DICOMweb "
                                f"({type(e).__name__}); ask the PACS administrator") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, what: str, why: str) -> None:
        wait = self.config.backoff * 2 ** (attempt - 1)
        log.warning("PACS %s: %s (%s); trying again in %.1f s", self.url, what, why, wait)
        self._sleep(wait)

    def _unreachable(self, what: str, e: Exception, attempts: int) -> PacsError:
        tries = f"tried {attempts} time{'s' if attempts > 1 else ''}"
        if isinstance(e, requests.Timeout) and not isinstance(e, requests.ConnectTimeout):
            return PacsError(f"the PACS at {self.url} did not answer {what} within {self.config.timeout:g} s "
                             f"({tries}); it may be overloaded: try again later, or raise MEDAPP_PACS_TIMEOUT")
        return PacsError(f"cannot reach the PACS at {self.url} ({what}; {tries}): is it running, and is the "
                         "DICOMweb URL right?")

    def _http_error(self, what: str, status: int, tries: int) -> PacsError:
        if status == 401:
            return PacsError(f"the PACS at {self.url} refused medapp's credentials (HTTP 401, {what}); check "
                             "MEDAPP_PACS_USER and MEDAPP_PACS_PASSWORD_FILE")
        if status == 403:
            return PacsError(f"the PACS at {self.url} forbids {what} to medapp's account (HTTP 403); ask the PACS "
                             "administrator for access")
        if status == 404:
            return PacsError(f"the PACS at {self.url} has nothing at the address of {what} (HTTP 404): check the "
                             "UID, and that the URL is the DICOMweb root (e.g. .../dicom-web)")
        again = f" after {tries} tries" if tries > 1 else ""
        return PacsError(f"the PACS at {self.url} answered HTTP {status} to {what}{again}; try again later, or ask "
                         "the PACS administrator")

    # -- QIDO-RS ----------------------------------------------------------------------------------------------

    def search_studies(self, *, since: dt.date | None = None, study_uid: str | None = None,
                       limit: int | None = None, patient_name: bool = False) -> list[StudySummary]:
        """Studies (all, those on or after ``since``, or the one ``study_uid``), newest first; ``patient_name``
        asks for the patient's name too (for the app's PACS page only)."""
        filters: dict[str, Any] = {}
        if since is not None:
            filters["StudyDate"] = f"{since:%Y%m%d}-"
        if study_uid is not None:
            filters["StudyInstanceUID"] = study_uid
        fields = ["ModalitiesInStudy", "NumberOfStudyRelatedInstances", "StudyDate",
                  *(["PatientName"] if patient_name else [])]
        found = self._call("a study search", lambda: self._web.search_for_studies(
            fields=fields, search_filters=filters, limit=limit, get_remaining=limit is None), safe=True)
        studies = [StudySummary(str(_value(s, "StudyInstanceUID")), str(_value(s, "StudyDate")),
                                tuple(str(m) for m in _values(s, "ModalitiesInStudy")),
                                _int_or_none(_value(s, "NumberOfStudyRelatedInstances", None)),
                                _person_name(_value(s, "PatientName", None)) if patient_name else "")
                   for s in found]
        return sorted(studies, key=lambda s: s.study_date, reverse=True)

    def search_series(self, study_uid: str) -> list[dict[str, Any]]:
        """The study's series as DICOM JSON objects (SeriesInstanceUID, Modality, SeriesDescription, ...)."""
        return self._call("a series search", lambda: self._web.search_for_series(
            study_instance_uid=study_uid, fields=["SeriesDescription", "Modality"], get_remaining=True), safe=True)

    def search_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        """Every instance of a study (or of one of its series), with its SOP class and its series' modality."""
        found = self._call("an instance search", lambda: self._web.search_for_instances(
            study_instance_uid=study_uid, series_instance_uid=series_uid, fields=["SOPClassUID", "Modality"],
            get_remaining=True), safe=True)
        # a study-level instance query returns the series' attributes too (PS3.18 Table 6.7.1-2a)
        return [InstanceRef(study_uid, str(_value(item, "SeriesInstanceUID") or series_uid or ""),
                            str(_value(item, "SOPInstanceUID")), str(_value(item, "SOPClassUID")),
                            str(_value(item, "Modality"))) for item in found]

    def instance_uids(self, study_uid: str, series_uid: str) -> set[str]:
        """SOP Instance UIDs the PACS holds in one series (empty when the series does not exist)."""
        return {ref.sop_uid for ref in self.search_instances(study_uid, series_uid)}

    # -- WADO-RS ----------------------------------------------------------------------------------------------

    def signed_sources(self, study_uid: str, series_uid: str) -> set[str]:
        """The SOP Instance UIDs that the VERIFIED SRs of one series name as evidence (from the series' metadata,
        WADO-RS, PS3.18 10.4.1.1.2): the images whose result a radiologist has signed."""
        found = self._call("a series metadata retrieval", lambda: self._web.retrieve_series_metadata(
            study_uid, series_uid), safe=True)
        sources: set[str] = set()
        for item in found:
            if _value(item, "VerificationFlag") != "VERIFIED":
                continue
            for evidence in _values(item, "CurrentRequestedProcedureEvidenceSequence"):
                for series in _values(evidence, "ReferencedSeriesSequence"):
                    sources.update(str(_value(ref, "ReferencedSOPInstanceUID"))
                                   for ref in _values(series, "ReferencedSOPSequence"))
        return sources

    def fetch_instance(self, ref: InstanceRef) -> bytes:
        """One instance as Part 10 bytes, in memory, in the transfer syntax the PACS stored it in."""
        ds = self._call("an instance retrieval", lambda: self._web.retrieve_instance(
            ref.study_uid, ref.series_uid, ref.sop_uid, media_types=(("application/dicom", "*"),)), safe=True)
        buf = io.BytesIO()
        try:
            ds.save_as(buf, enforce_file_format=True)
        except (ValueError, AttributeError, TypeError) as e:
            raise PacsError(f"the PACS at {self.url} sent an instance that cannot be written back as a DICOM file "
                            f"({type(e).__name__}); it may be damaged") from e
        return buf.getvalue()

    # -- STOW-RS ----------------------------------------------------------------------------------------------

    def store(self, datasets: Sequence[Dataset], study_uid: str) -> list[str]:
        """Store ``datasets`` in ``study_uid`` (one request, never retried); the SOP Instance UIDs the PACS
        confirmed. Raises :class:`PacsError` naming how many it refused when it refused any."""
        if not datasets:
            return []
        parts = [_as_part10(ds) for ds in datasets]
        answer = self._call("a store", lambda: self._web.store_instances(parts, study_uid), safe=False)
        stored = [str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence", [])]
        failed = answer.get("FailedSOPSequence", [])
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsError(f"the PACS at {self.url} refused {len(failed)} of {len(datasets)} objects (failure "
                            f"reason {', '.join(reasons)}, PS3.18 Table I.2-1); stored {len(stored)}")
        missing = {str(ds.SOPInstanceUID) for ds in datasets} - set(stored)
        if missing:
            raise PacsError(f"the PACS at {self.url} confirmed {len(stored)} of {len(datasets)} stored objects; "
                            "run again to store the rest (nothing is stored twice)")
        return stored


def _as_part10(ds: Dataset) -> Dataset:
    """``ds`` as a whole Part 10 file: preamble, "DICM" and complete file meta (PS3.10 7.1), which dicomweb-client's
    encoder writes only when the dataset already carries them (a PACS may store the bare stream it is sent)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def _person_name(value: Any) -> str:
    """A PN value of DICOM JSON (PS3.18 F.2.2: ``{"Alphabetic": "Family^Given"}``) as its alphabetic string."""
    if isinstance(value, dict):
        return str(value.get("Alphabetic") or "")
    return str(value or "")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
