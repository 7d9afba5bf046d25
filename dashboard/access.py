"""Who may open the dashboard, and who may change annotations: a password gate and two roles.

Plain local use (`make dashboard` on 127.0.0.1) configures nothing: there is no gate and everyone is a reviewer.
Sharing (`make share`) configures one of these, and `Home.py` calls `gate()` before any page or store query runs:

- Passwords, Streamlit's documented pattern for authentication without SSO: `.streamlit/secrets.toml`
  (`[passwords] reviewers = ["…"]  viewers = ["…"]`, see `.streamlit/secrets.toml.example`) or the environment
  (`PERIODEYE_REVIEWER_PASSWORD`, `PERIODEYE_VIEWER_PASSWORD`). The typed password is compared with
  `hmac.compare_digest` against every configured one, then deleted from the session's widget state; it is never
  echoed or put in the URL. A wrong one gets "Password incorrect" and nothing else.
- An identity provider (OIDC) through `st.login`, when secrets have an `[auth]` section (Streamlit's keys:
  `redirect_uri`, `cookie_secret`, `client_id`, `client_secret`, `server_metadata_url`; it needs `pip install
  Authlib`). Roles come from e-mail lists: `[roles] reviewers = ["a@museum.org"]  viewers = ["*"]` ("*": any
  account the provider signs in). An account on neither list sees that it has no access, and nothing else.

Reviewers annotate and import verdicts; viewers only read (`can_review()` is False: the Annotations page hides its
forms). A password session lasts as long as the browser tab's session: reloading the page asks again.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass

import streamlit as st

from dashboard.text import md_escape

REVIEWER, VIEWER = "reviewer", "viewer"
ENV_PASSWORDS = {REVIEWER: "PERIODEYE_REVIEWER_PASSWORD", VIEWER: "PERIODEYE_VIEWER_PASSWORD"}
ENV_NO_PASSWORD = "PERIODEYE_NO_PASSWORD"  # set by `periodeye dashboard --no-password`: serve openly on purpose
NO_PASSWORD_MESSAGE = (
    "This dashboard is served beyond this machine with no password: set PERIODEYE_REVIEWER_PASSWORD (and "
    "PERIODEYE_VIEWER_PASSWORD) or copy .streamlit/secrets.toml.example to .streamlit/secrets.toml, or pass "
    "--no-password to serve it openly.")

_ROLE, _NAME, _FAILED = "_access_role", "_access_name", "_access_failed"  # session state; the password has no key
_PASSWORD_FIELD, _NAME_FIELD = "_access_password_field", "_access_name_field"  # widget keys, deleted once checked


def _strings(value) -> tuple[str, ...]:
    """A secret given as one string or a list of them; empty ones dropped (an empty password opens nothing)."""
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else list(value)
    return tuple(str(v) for v in values if str(v))


@dataclass(frozen=True)
class Settings:
    """What is configured: passwords per role, whether an identity provider is, and its e-mails per role."""

    reviewer_passwords: tuple[str, ...] = ()
    viewer_passwords: tuple[str, ...] = ()
    oidc: bool = False
    reviewer_emails: tuple[str, ...] = ()
    viewer_emails: tuple[str, ...] = ()

    @property
    def passwords(self) -> bool:
        return bool(self.reviewer_passwords or self.viewer_passwords)

    @property
    def configured(self) -> bool:
        return self.passwords or self.oidc

    def role_for_password(self, given: str) -> str | None:
        """The role a typed password opens, or None. Every candidate is compared (no early exit), in constant time."""
        typed = given.encode()
        reviewer = [hmac.compare_digest(typed, p.encode()) for p in self.reviewer_passwords]
        viewer = [hmac.compare_digest(typed, p.encode()) for p in self.viewer_passwords]
        if not typed:
            return None
        return REVIEWER if any(reviewer) else VIEWER if any(viewer) else None

    def role_for_email(self, email: str | None) -> str | None:
        """The role of an account the identity provider signed in, by the e-mail lists ("*": anyone)."""
        if not email:
            return None
        email = email.strip().lower()

        def listed(emails: Iterable[str]) -> bool:
            return any(e.strip().lower() in ("*", email) for e in emails)

        return REVIEWER if listed(self.reviewer_emails) else VIEWER if listed(self.viewer_emails) else None


def settings() -> Settings:
    """Read now from secrets (when a secrets.toml exists) and the environment; the environment adds to secrets."""
    secrets: dict = {}
    if st.secrets.load_if_toml_exists():
        secrets = {key: st.secrets[key] for key in ("passwords", "roles", "auth") if key in st.secrets}
    passwords, roles = secrets.get("passwords") or {}, secrets.get("roles") or {}
    return Settings(
        reviewer_passwords=_strings(passwords.get("reviewers")) + _strings(os.environ.get(ENV_PASSWORDS[REVIEWER])),
        viewer_passwords=_strings(passwords.get("viewers")) + _strings(os.environ.get(ENV_PASSWORDS[VIEWER])),
        oidc=bool(secrets.get("auth")),
        reviewer_emails=_strings(roles.get("reviewers")),
        viewer_emails=_strings(roles.get("viewers")),
    )


def _signed_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # no identity provider set up, or a runtime without one (AppTest)
        return False


def role() -> str | None:
    """This session's role: REVIEWER with nothing configured; else the one its password or account opened, or None."""
    access = settings()
    if not access.configured:
        return REVIEWER
    given = st.session_state.get(_ROLE)
    if given is None and access.oidc and _signed_in():
        email = st.user.get("email")
        given = access.role_for_email(email if isinstance(email, str) else None)
    return given


def can_review() -> bool:
    """May this session save, edit, withdraw or import annotations? True in plain local use and for reviewers."""
    return role() == REVIEWER


def reviewer_name() -> str | None:
    """The name this session signs verdicts with: typed once at the password, or the identity provider's."""
    name = st.session_state.get(_NAME)
    if not name and settings().oidc and _signed_in():
        name = st.user.get("name") or st.user.get("email")
    return name if isinstance(name, str) and name else None


def exposed() -> bool:
    """Is the server set to listen beyond this machine? Only an explicit non-loopback `server.address` counts (an
    unset one is how `streamlit run` and AppTest start; `periodeye dashboard` always sets it)."""
    address = st.get_option("server.address")
    if not address or address == "localhost":
        return False
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: assume it is reachable from elsewhere
        return True


def _check_password() -> None:
    """The login form's callback: the typed password is removed from the session's state before anything else."""
    given = st.session_state.pop(_PASSWORD_FIELD, "") or ""
    name = (st.session_state.pop(_NAME_FIELD, "") or "").strip()
    opened = settings().role_for_password(given)
    if opened is None:
        st.session_state[_FAILED] = True
        return
    st.session_state.pop(_FAILED, None)
    st.session_state[_ROLE] = opened
    st.session_state[_NAME] = name or None


def _log_out() -> None:
    for key in (_ROLE, _NAME, _FAILED):
        st.session_state.pop(key, None)


def _login_form(access: Settings) -> None:
    with st.form("period-eye-login"):
        st.text_input("Password", type="password", key=_PASSWORD_FIELD)
        if access.reviewer_passwords:
            st.text_input("Name (reviewers: signs your verdicts)", key=_NAME_FIELD)
        st.form_submit_button("Enter", type="primary", on_click=_check_password)
    if st.session_state.get(_FAILED):
        st.error("Password incorrect")


def _provider_login(access: Settings) -> None:
    if _signed_in():
        st.warning("This account has no access to this dashboard. Ask whoever shared it to add your e-mail.")
        st.button("Log out", on_click=st.logout)
    else:
        st.button("Log in with your account", type="primary", on_click=st.login)


def gate() -> None:
    """Return when this session may see the store; otherwise draw the login and stop the script, so nothing from
    the store reaches the page. Served beyond this machine with nothing configured: refuse, unless asked not to."""
    access = settings()
    if not access.configured:
        if exposed() and os.environ.get(ENV_NO_PASSWORD) != "1":
            st.error(NO_PASSWORD_MESSAGE)
            st.stop()
        return
    if role() is not None:
        _session_box(access)
        return
    st.title("Period Eye")
    st.caption("This dashboard is shared with a password. A link you were sent opens once you are in.")
    if access.oidc:
        _provider_login(access)
    if access.passwords:
        _login_form(access)
    st.stop()


def _session_box(access: Settings) -> None:
    """Who is in, and the way out, in the sidebar under the menu."""
    name = reviewer_name()
    who = f"{name} ({role()})" if name else (role() or "")
    with st.sidebar:
        st.caption(f"Signed in: {md_escape(who)}")
        if st.session_state.get(_ROLE):
            st.button("Log out", on_click=_log_out, key="_access_log_out")
        elif access.oidc and _signed_in():
            st.button("Log out", on_click=st.logout, key="_access_log_out")
