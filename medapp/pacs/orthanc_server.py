"""A real PACS for development and tests: Orthanc with its DICOMweb plugin, from Debian's packages.

:func:`write_config` writes an Orthanc configuration into a work folder (storage beside it), locked down as a
hospital would want a test archive: HTTP only, on a local port; remote access refused (Orthanc 1.10 has no bind
address, so ``RemoteAccessAllowed: false`` is what keeps other machines out: it refuses them, credentials or not,
with HTTP 401); HTTP basic
authentication on, with a generated user and password; the DICOM port off; no Lua, no WebDAV, no Explorer.
:class:`OrthancServer` runs ``Orthanc CONFIG.json`` as a child process in its own process group, waits until the
REST API answers, and stops it cleanly (SIGTERM, then SIGKILL). ``python -m medapp pacs serve`` (``make pacs``)
uses it for people trying medapp; the tests start one per session.

Debian's ``orthanc`` package also installs a system service; medapp never uses it (it is started on its own
configuration with its own storage).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import requests

from ..errors import PacsError

log = logging.getLogger(__name__)

CONFIG_NAME = "orthanc.json"
PASSWORD_NAME = "pacs_password"
LOG_NAME = "orthanc.log"
PID_NAME = "orthanc.pid"
DEFAULT_USER = "medapp"
# Where Debian's orthanc-dicomweb package puts the plugin (`dpkg -L orthanc-dicomweb`).
DICOMWEB_PLUGIN_CANDIDATES = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)
ORTHANC_CANDIDATES = (Path("/usr/sbin/Orthanc"), Path("/usr/bin/Orthanc"))
DICOMWEB_ROOT = "/dicom-web/"


def find_orthanc() -> Path | None:
    """The Orthanc executable (Debian installs it in /usr/sbin, often not on a user's PATH), or None."""
    found = shutil.which("Orthanc")
    if found:
        return Path(found)
    return next((p for p in ORTHANC_CANDIDATES if p.is_file() and os.access(p, os.X_OK)), None)


def find_dicomweb_plugin() -> Path | None:
    """The DICOMweb plugin's shared library (any versioned name under /usr/lib/orthanc too), or None."""
    for path in DICOMWEB_PLUGIN_CANDIDATES:
        if path.is_file():
            return path
    return next(iter(sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))), None) \
        if Path("/usr/lib/orthanc").is_dir() else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process could still take it before Orthanc does)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class OrthancConfig:
    """Where one Orthanc lives: its folder (config, storage, log), HTTP port and credentials."""

    work_dir: Path
    http_port: int
    user: str
    password: str = field(repr=False)

    @property
    def config_path(self) -> Path:
        return self.work_dir / CONFIG_NAME

    @property
    def password_path(self) -> Path:
        """The password alone, owner-only: what ``MEDAPP_PACS_PASSWORD_FILE`` points at."""
        return self.work_dir / PASSWORD_NAME

    @property
    def log_path(self) -> Path:
        return self.work_dir / LOG_NAME

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + DICOMWEB_ROOT.rstrip("/")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (it holds a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def write_config(work_dir: str | Path, *, port: int | None = None, user: str = DEFAULT_USER,
                 password: str | None = None, plugin: Path | None = None) -> OrthancConfig:
    """Write ``orthanc.json`` and ``pacs_password`` into ``work_dir`` (created) and return the configuration.

    ``port`` None picks a free one; ``password`` None reuses the one already in the folder, else generates one, so
    restarting on the same folder keeps the same credentials and the stored studies. HTTP only: a hospital puts
    its PACS behind TLS (the tests put a TLS relay in front; Debian 12's Orthanc 1.10.1 segfaulted on the first connection to its own
    HTTPS server when we tried it).
    """
    plugin = plugin or find_dicomweb_plugin()
    if plugin is None:
        raise PacsError("the Orthanc DICOMweb plugin is not installed; install Debian's orthanc-dicomweb package "
                        "(apt-get install orthanc orthanc-dicomweb)")
    work = Path(work_dir).resolve()
    (work / "storage").mkdir(parents=True, exist_ok=True)
    password_file = work / PASSWORD_NAME
    if password is None:
        password = password_file.read_text().strip() if password_file.is_file() else secrets.token_urlsafe(24)
    config = OrthancConfig(work, port or free_port(), user, password)
    settings = {
        "Name": "medapp-dev-pacs",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "storage"),
        "Plugins": [str(plugin)],
        "HttpServerEnabled": True,
        "HttpPort": config.http_port,
        "RemoteAccessAllowed": False,  # only clients on this machine (Orthanc refuses others)
        "AuthenticationEnabled": True,
        "RegisteredUsers": {user: password},
        "SslEnabled": False,
        "DicomServerEnabled": False,  # DICOMweb only; no DIMSE port open
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "HttpDescribeErrors": True,
        "HttpThreadsCount": 8,
        "ConcurrentJobs": 1,
        "OverwriteInstances": False,  # a second copy of a stored SOP Instance UID is ignored, never duplicated
        "DeidentifyLogs": True,
        "SaveJobs": False,
        "DicomWeb": {"Enable": True, "Root": DICOMWEB_ROOT, "EnableWado": False, "Ssl": False,
                     "Host": f"127.0.0.1:{config.http_port}"},
    }
    _write_private(config.config_path, json.dumps(settings, indent=2))
    _write_private(password_file, password + "\n")
    return config


class OrthancServer:
    """``Orthanc CONFIG.json`` as a child process; a context manager that starts it and waits until it answers."""

    def __init__(self, config: OrthancConfig, *, executable: Path | None = None, start_timeout: float = 60.0):
        self.config = config
        self.executable = executable or find_orthanc()
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        if self.executable is None:
            raise PacsError("Orthanc is not installed; install Debian's orthanc and orthanc-dicomweb packages "
                            "(apt-get install orthanc orthanc-dicomweb)")
        if self.running:
            return self
        with self.config.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen([str(self.executable), str(self.config.config_path)], stdout=log_file,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.config.work_dir)
        (self.config.work_dir / PID_NAME).write_text(f"{self.proc.pid}\n")  # for whoever must stop an orphan
        self._wait_ready()
        log.info("Orthanc answers on %s (pid %d)", self.config.url, self.proc.pid)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        auth = (self.config.user, self.config.password)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PacsError(f"Orthanc exited with status {self.proc.returncode} while starting; see "
                                f"{self.config.log_path}")
            try:
                if requests.get(f"{self.config.url}/system", auth=auth, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise PacsError(f"Orthanc did not answer on {self.config.url} within {self.start_timeout:.0f} s; see "
                        f"{self.config.log_path}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group (Orthanc closes its index cleanly), SIGKILL if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        (self.config.work_dir / PID_NAME).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
