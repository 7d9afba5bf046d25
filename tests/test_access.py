"""The password gate and roles (dashboard/access.py) in AppTest, and the CLI's refusal to serve openly.

The store path points at a file that does not exist: what a page says about it ("No runs in the store yet") shows
that the script got past the gate; before the gate lets a session in, nothing about the store may be shown.
"""

from __future__ import annotations

from dashboard.access import Settings
from pipeline.__main__ import access_configured, loopback, main
from tests.conftest import REPO_ROOT

PASSWORDS = {"passwords": {"reviewers": ["rev-1", "rev-2"], "viewers": "look-only"}}
STORE_SAID = "No runs in the store yet"


def home(tmp_path, monkeypatch, secrets: dict, user: dict | None = None):
    """Home.py in AppTest with these secrets (never a developer's own secrets.toml) and no password in the env."""
    from streamlit.testing.v1 import AppTest

    for name in ("PERIODEYE_REVIEWER_PASSWORD", "PERIODEYE_VIEWER_PASSWORD", "PERIODEYE_NO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERIODEYE_STORE", str(tmp_path / "absent.duckdb"))
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=60)
    at.secrets = {"unrelated": "x", **secrets}  # non-empty: AppTest then uses these and not .streamlit/secrets.toml
    if user is not None:
        at.user = user
    return at.run()


def texts(at) -> str:
    return "\n".join(e.value for e in [*at.markdown, *at.info, *at.error, *at.warning, *at.caption])


def password_kept(at, password: str) -> bool:
    """Is the typed password anywhere in the session's state (the form is drawn again, empty, after a failure)?"""
    return any(password in str(at.session_state[k]) for k in ("_access_password_field", "_access_name_field",
                                                                "_access_role", "_access_name")
               if k in at.session_state)


def log_in(at, password: str, name: str | None = None):
    at.text_input(key="_access_password_field").input(password)
    if name is not None:
        at.text_input(key="_access_name_field").input(name)
    return at.button[0].click().run()


def test_every_candidate_is_compared_and_the_role_follows_the_list():
    s = Settings(reviewer_passwords=("rev-1", "rev-2"), viewer_passwords=("look",))
    assert [s.role_for_password(p) for p in ("rev-2", "look", "rev", "rev-1 ", "")] == \
        ["reviewer", "viewer", None, None, None]
    assert Settings(viewer_passwords=("",)).role_for_password("") is None  # an empty password opens nothing
    emails = Settings(oidc=True, reviewer_emails=("Curator@Museum.org",), viewer_emails=("*",))
    assert [emails.role_for_email(e) for e in ("curator@museum.org", "someone@else.org", None)] == \
        ["reviewer", "viewer", None]
    assert Settings(oidc=True, viewer_emails=("a@b.org",)).role_for_email("c@d.org") is None


def test_nothing_configured_means_no_gate(tmp_path, monkeypatch):
    at = home(tmp_path, monkeypatch, {})
    assert STORE_SAID in texts(at)
    assert not at.text_input  # no password field


def test_a_wrong_password_sees_only_the_gate(tmp_path, monkeypatch):
    at = home(tmp_path, monkeypatch, PASSWORDS)
    assert STORE_SAID not in texts(at) and at.text_input(key="_access_password_field") is not None
    at = log_in(at, "rev-3")
    assert not at.exception
    assert [e.value for e in at.error] == ["Password incorrect"]
    assert STORE_SAID not in texts(at)
    assert not password_kept(at, "rev-3")


def test_a_reviewer_password_opens_the_dashboard_and_signs_with_the_name(tmp_path, monkeypatch):
    at = log_in(home(tmp_path, monkeypatch, PASSWORDS), "rev-2", "A. Historian")
    assert not at.exception and not at.error
    assert STORE_SAID in texts(at)
    assert not password_kept(at, "rev-2")
    assert at.session_state["_access_role"] == "reviewer"
    assert at.session_state["_access_name"] == "A. Historian"
    assert any("A. Historian \\(reviewer\\)" in c.value for c in at.sidebar.caption)  # Markdown-escaped


def test_a_viewer_password_opens_read_only_and_log_out_closes(tmp_path, monkeypatch):
    at = log_in(home(tmp_path, monkeypatch, PASSWORDS), "look-only", "ignored")
    assert STORE_SAID in texts(at) and at.session_state["_access_role"] == "viewer"
    at.sidebar.button[0].click().run()  # Log out
    assert STORE_SAID not in texts(at) and at.text_input(key="_access_password_field") is not None


def test_an_environment_password_works_without_secrets(tmp_path, monkeypatch):
    at = home(tmp_path, monkeypatch, {"passwords": {"reviewers": [""]}})
    monkeypatch.setenv("PERIODEYE_VIEWER_PASSWORD", "")
    assert STORE_SAID in texts(at.run())  # empty passwords are no passwords: nothing is configured
    monkeypatch.setenv("PERIODEYE_VIEWER_PASSWORD", "from-env")
    at = at.run()
    assert STORE_SAID not in texts(at)
    at = log_in(at, "from-env")
    assert STORE_SAID in texts(at) and at.session_state["_access_role"] == "viewer"


AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s", "client_id": "c",
                 "client_secret": "c", "server_metadata_url": "https://id.example/.well-known/openid-configuration"},
        "roles": {"reviewers": ["curator@museum.org"]}}


def test_an_identity_provider_offers_its_login_button_and_roles_follow_the_email(tmp_path, monkeypatch):
    at = home(tmp_path, monkeypatch, AUTH)
    assert [b.label for b in at.button] == ["Log in with your account"]  # clicking it needs the provider: not run
    assert STORE_SAID not in texts(at) and not at.text_input
    at = home(tmp_path, monkeypatch, AUTH, user={"is_logged_in": True, "email": "curator@museum.org", "name": "C"})
    assert STORE_SAID in texts(at)
    at = home(tmp_path, monkeypatch, AUTH, user={"is_logged_in": True, "email": "stranger@else.org"})
    assert STORE_SAID not in texts(at) and "no access" in texts(at)


def test_loopback_addresses():
    assert [loopback(a) for a in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "192.168.1.5", "example.org")] == \
        [True, True, True, False, False, False]


def test_the_cli_refuses_to_serve_beyond_this_machine_without_a_password(tmp_path, monkeypatch, capsys):
    for name in ("PERIODEYE_REVIEWER_PASSWORD", "PERIODEYE_VIEWER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert access_configured() is False
    assert main(["dashboard", "--share", "--store", str(tmp_path / "s.duckdb")]) == 2
    error = capsys.readouterr().err
    assert "0.0.0.0" in error and "PERIODEYE_REVIEWER_PASSWORD" in error and error.count("\n") == 1
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[passwords]\nviewers = [""]\n')
    assert access_configured() is False  # an empty password is no password
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[passwords]\nviewers = ["look"]\n')
    assert access_configured() is True
    monkeypatch.setenv("PERIODEYE_REVIEWER_PASSWORD", "x")
    (tmp_path / ".streamlit" / "secrets.toml").unlink()
    assert access_configured() is True


def test_the_secrets_example_is_valid_toml_and_the_real_file_is_ignored():
    import subprocess
    import tomllib

    example = tomllib.loads((REPO_ROOT / ".streamlit" / "secrets.toml.example").read_text())
    assert set(example["passwords"]) == {"reviewers", "viewers"}
    ignored = subprocess.run(["git", "check-ignore", ".streamlit/secrets.toml"], cwd=REPO_ROOT, capture_output=True)
    assert ignored.returncode == 0
