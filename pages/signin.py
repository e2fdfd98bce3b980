"""Sign-in glue: Streamlit's own OpenID Connect (``st.login``, ``st.user``, ``st.logout``) in front of every page.

Not a page itself (app.py calls :func:`require_signin` before its navigation). A hospital configures its identity
provider in ``.streamlit/secrets.toml`` (``[auth]``, see the README); without one, the app runs for one user on
this computer and says so in the sidebar. medapp.serving.signin decides what the configuration means.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from medapp.errors import MedAppError
from medapp.markup import plain
from medapp.serving.signin import (
    LOCAL_USER,
    SINGLE_USER_NOTICE,
    Identity,
    SignInConfig,
    read_signin_config,
    signed_in_user,
)


def signin_config() -> SignInConfig:
    """The ``[auth]`` section of the secrets files Streamlit reads; raises ConfigError when it cannot be used."""
    loaded = st.secrets.load_if_toml_exists()
    unreadable = [] if loaded else [p for p in st.get_option("secrets.files") if Path(p).is_file()]
    return read_signin_config(st.secrets.get("auth") if loaded else None, unreadable)


def current_identity() -> Identity | None:
    """Who uses this session; None while sign-in is on and nobody is signed in."""
    if not signin_config().enabled:
        return Identity(LOCAL_USER, signed_in=False)
    if st.user.get("is_logged_in"):
        return Identity(signed_in_user(st.user.to_dict()), signed_in=True)
    return None


def require_signin() -> Identity:
    """app.py's gate, called before its navigation: who uses this session. While nobody is signed in (or the
    sign-in configuration is broken), the sign-in screen is the app's only page and the run stops there."""
    try:
        identity = current_identity()
    except MedAppError:
        identity = None  # the sign-in page says what is wrong
    if identity is None:
        st.navigation([st.Page(signin_page, title="Sign in", url_path="signin")]).run()
        st.stop()
    return identity


def signin_page() -> None:
    """The only thing shown before sign-in: what this is, and the button to the hospital's identity provider."""
    st.title("Sign in to medapp")
    try:
        providers = signin_config().providers
        if st.user.get("is_logged_in"):
            signed_in_user(st.user.to_dict())  # raises: the provider's token names nobody
    except MedAppError as e:
        st.error(f"Sign-in cannot work as configured, so the app stays closed: {plain(e)}")
        return
    st.write("medapp gives this hospital's clinicians a second opinion on breast ultrasound images. Sign in with "
             "your hospital account; each analysis is recorded in the audit log under your name.")
    for provider in providers:
        label = "Sign in" if provider is None else f"Sign in with {provider}"
        if st.button(label, type="primary", key=f"signin_{provider}", icon=":material/login:"):
            st.login(provider)


def signin_status(identity: Identity) -> None:
    """In the sidebar: who is signed in and the sign-out button, or that sign-in is off."""
    if identity.signed_in:
        st.text(f"Signed in as {identity.user}")  # literal text: Markdown would turn an e-mail address into a link
        if st.button("Sign out", icon=":material/logout:"):
            st.logout()
    else:
        st.caption(SINGLE_USER_NOTICE)
