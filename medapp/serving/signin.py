"""Who is using medapp: sign-in settings read from Streamlit's ``[auth]`` secrets, and the name the audit log records.

The app signs people in with Streamlit's own OpenID Connect support (``st.login``), configured by the hospital in
``.streamlit/secrets.toml``; this module holds what is not a widget: whether that configuration turns sign-in on
(and is complete: a half-written ``[auth]`` section keeps the app closed rather than open to everyone), and the
identity the audit log keeps for a session or a command-line run. Nothing here imports streamlit: the page glue
hands over the ``[auth]`` mapping and ``st.user``'s claims as plain mappings.

A clinician's identity is not patient information: the audit log names the user, never the patient.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# Streamlit's [auth] keys (streamlit.auth_util.validate_auth_credentials): shared ones, then one provider's.
SHARED_KEYS = ("redirect_uri", "cookie_secret")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
CALLBACK_PATH = "/oauth2callback"  # the path Streamlit serves the provider's answer on
DEFAULT_PROVIDER_TABLES = frozenset({"client_kwargs"})  # tables inside [auth] that belong to the unnamed provider

LOCAL_USER = "local (sign-in off)"
SINGLE_USER_NOTICE = ("Sign-in is off: no identity provider configured (single-user mode on this computer); "
                      "see the README, Sign-in.")
MAX_USER_CHARS = 200  # an identity claim longer than this is cut in the audit log


@dataclass(frozen=True)
class SignInConfig:
    """Sign-in as configured: ``providers`` are the names to pass to ``st.login`` (None is the unnamed ``[auth]``
    provider); empty when no identity provider is configured and the app runs for one user on this computer."""

    providers: tuple[str | None, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.providers)


@dataclass(frozen=True)
class Identity:
    """Who uses this session: ``user`` is what the audit log records; ``signed_in`` is False in single-user mode."""

    user: str
    signed_in: bool


def read_signin_config(auth: Mapping[str, Any] | None, unreadable: Sequence[str | Path] = ()) -> SignInConfig:
    """Sign-in settings from the ``[auth]`` section of Streamlit's secrets (None or empty: sign-in off).

    ``unreadable`` lists secrets files that exist but could not be loaded (a TOML syntax error): they may hold the
    ``[auth]`` section, so the app refuses to open rather than run without sign-in. Raises :class:`ConfigError`
    naming what is missing when ``[auth]`` is present but incomplete, for the same reason.
    """
    if unreadable:
        names = ", ".join(str(p) for p in unreadable)
        raise ConfigError(f"the secrets file {names} exists but could not be read (a TOML syntax error?); it may "
                          "configure sign-in, so the app stays closed until the file is fixed or removed")
    if not auth:
        return SignInConfig()
    missing = [k for k in SHARED_KEYS if not _text(auth.get(k))]
    if missing:
        raise ConfigError(f"[auth] in .streamlit/secrets.toml lacks {', '.join(missing)}; sign-in needs "
                          f"{', '.join(SHARED_KEYS)} and an identity provider's {', '.join(PROVIDER_KEYS)}")
    redirect = str(auth["redirect_uri"])
    if not redirect.rstrip("/").endswith(CALLBACK_PATH) or not redirect.startswith(("http://", "https://")):
        raise ConfigError(f"[auth] redirect_uri is {redirect!r}; it must be the app's absolute address ending in "
                          f"{CALLBACK_PATH}, e.g. https://medapp.hospital.example{CALLBACK_PATH}")
    providers: list[str | None] = []
    if any(k in auth for k in PROVIDER_KEYS):
        providers.append(_complete(auth, None))
    for name, section in auth.items():
        if isinstance(section, Mapping) and name not in DEFAULT_PROVIDER_TABLES:
            if "_" in name:  # Streamlit refuses provider names with underscores
                raise ConfigError(f"[auth.{name}]: a provider name may not contain '_'; rename the section")
            providers.append(_complete(section, name))
    if not providers:
        raise ConfigError("[auth] in .streamlit/secrets.toml names no identity provider; add "
                          f"{', '.join(PROVIDER_KEYS)} to [auth] (or to an [auth.NAME] section per provider)")
    return SignInConfig(tuple(providers))


def _complete(section: Mapping[str, Any], name: str | None) -> str | None:
    missing = [k for k in PROVIDER_KEYS if not _text(section.get(k))]
    if missing:
        where = "[auth]" if name is None else f"[auth.{name}]"
        raise ConfigError(f"{where} in .streamlit/secrets.toml lacks {', '.join(missing)}; ask the identity "
                          "provider's administrator for the client's values")
    return name


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def signed_in_user(claims: Mapping[str, Any]) -> str:
    """The audit log's name for a signed-in user, from the ID token's claims (``st.user``): the e-mail address,
    else the subject with its issuer (a subject is unique only within one provider, OIDC Core 1.0 section 2).
    Raises :class:`ConfigError` when the token names nobody, so no result is ever logged anonymously."""
    email, subject = _one_line(claims.get("email")), _one_line(claims.get("sub"))
    if email:
        return email
    if subject:
        issuer = _one_line(claims.get("iss"))
        return f"{subject} (issuer {issuer})" if issuer else subject
    raise ConfigError("the identity provider's token has neither an email nor a sub claim; ask its administrator "
                      "to release the 'email' or 'openid' scope to this app")


def cli_user() -> str:
    """The audit log's name for a command-line run: the operating-system account that ran it."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        name = f"uid {os.getuid()}"
    return f"{_one_line(name)} (OS user, command line)"


def _one_line(value: Any) -> str:
    """A claim as one bounded line (an identity provider is outside the process: no control characters)."""
    if not isinstance(value, str):
        return ""
    text = "".join(c if c.isprintable() else " " for c in value).strip()
    return text[:MAX_USER_CHARS]
