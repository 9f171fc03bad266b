"""Log-in for people: /login and /logout, sessions, CSRF protection and the session secret.

People log in with an account made by ``mutt users create`` (there is no default one); the API
(``/api/``) keeps using ``X-API-Key`` and is neither session-authenticated nor CSRF-checked.

- Sessions are Flask's signed cookie, marked HttpOnly, SameSite=Lax and Secure (unless
  WEBUI_COOKIE_SECURE is false, as on ``mutt run``'s plain-HTTP local stack).
- The signing key is WEBUI_SECRET_KEY or, when unset, a random key generated once and kept in
  ``MUTT_DATA_DIR/webui_secret_key`` (mode 0600), so sessions survive restarts.
- Every non-API POST/PUT/PATCH/DELETE needs a CSRF token (Flask-WTF), the log-in form included.
- Failed log-ins are throttled in Redis (:mod:`mutt_app.web.throttle`), per account and client IP
  (WEBUI_LOGIN_MAX_FAILURES within WEBUI_LOGIN_LOCKOUT_SECONDS) and per client IP
  (WEBUI_AUTH_IP_MAX_FAILURES within WEBUI_AUTH_IP_WINDOW_SECONDS); either answers 429 without
  checking the password. No one can lock an account for its owner, who logs in from elsewhere.
- The user is loaded from the database on every request, so a disabled account is out at once.
- Sessions can be ended: each one holds the user's ``session_generation`` (Flask-Login's user id is
  ``"<id>:<generation>"``), and a session whose generation is no longer the user's is refused. Log-out,
  a password or role change and disabling the account bump it, ending every session of that user,
  copies of the cookie included. Sessions made before generations existed are refused too.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response as BaseResponse
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from mutt_app.commands import users as accounts
from mutt_app.config import Settings
from mutt_app.db.models import ROLES, User
from mutt_app.web import throttle
from mutt_app.web.api.blueprint import API_PREFIXES
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)

SECRET_KEY_FILE = "webui_secret_key"

bp = Blueprint("auth", __name__, template_folder="templates")
login_manager = LoginManager()
csrf = CSRFProtect()


@dataclass(frozen=True)
class WebUser:
    """The logged-in person as Flask-Login sees it (a plain copy, not a live ORM row)."""

    id: int
    username: str
    role: str
    generation: int
    is_active: bool = True
    is_authenticated: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        """What the session keeps: the user's id and session generation (see :func:`_load_user`)."""
        return f"{self.id}:{self.generation}"

    def has_role(self, role: str) -> bool:
        """Whether this user's role is ``role`` or a more privileged one."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @classmethod
    def of(cls, user: User) -> WebUser:
        return cls(
            id=user.id,
            username=user.username,
            role=user.role,
            generation=user.session_generation,
            is_active=user.is_active,
        )


@login_manager.user_loader
def _load_user(session_id: str) -> WebUser | None:
    """The session's user, or None (logged out) if disabled or the session was ended since."""
    user_id, _, generation = session_id.partition(":")
    try:
        key, issued = int(user_id), int(generation)
    except ValueError:  # a session from before generations, or not ours
        return None
    with runtime().sessions() as session:
        user = session.get(User, key)
        if user is None or not user.is_active or user.session_generation != issued:
            return None
        return WebUser.of(user)


class LoginForm(FlaskForm):
    """Username and password (with the CSRF token Flask-WTF adds)."""

    username = StringField("Username", validators=[DataRequired(), Length(max=150)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)]
    )


def _safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the dashboard (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and "\\" not in target:
            return target
    return url_for("admin.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse:
    """The log-in form; on success, back to where the person was going."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if request.method == "POST" and (wait := throttle.retry_after(throttle.LOGIN)) is not None:
        # Checked before the password, so a throttled address learns nothing from its guesses.
        log.warning("log-in from %s throttled for %ss", request.remote_addr, wait)
        return _throttled(form, "Too many failed log-ins from your address", wait)
    if form.validate_on_submit():
        username = (form.username.data or "").strip()
        if (wait := throttle.retry_after(throttle.ACCOUNT, username)) is not None:
            log.warning(
                "log-in for %r from %s throttled for %ss", username, request.remote_addr, wait
            )
            return _throttled(form, "Too many failed log-ins for this account", wait)
        with runtime().sessions.begin() as session:
            result = accounts.authenticate(session, username, form.password.data or "")
            web_user = WebUser.of(result.user) if result.user is not None else None
        if web_user is not None:
            throttle.forget_failures(username)
            login_user(web_user)
            log.info("user %s logged in", web_user.username)
            return redirect(_safe_next(request.args.get("next")))
        log.warning(
            "failed log-in for %r from %s: %s",
            username,
            request.remote_addr,
            result.outcome.value,
        )
        throttle.record_failure(throttle.LOGIN, username)
        # One message for every failure: the form must not tell which usernames exist.
        flash("Invalid username or password.", "error")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("auth/login.html", form=form), status


def _throttled(form: LoginForm, why: str, wait: int) -> Response:
    flash(f"{why} from your address; try again in {wait} seconds.", "error")
    response = make_response(render_template("auth/login.html", form=form), 429)
    response.headers["Retry-After"] = str(wait)
    return response


@bp.route("/logout", methods=["POST"])
def logout() -> BaseResponse:
    """End every session of this user (POST, so that a link on another site cannot log anyone out).

    Every one, not just this browser's: a copy of the cookie (or a session left open elsewhere)
    would otherwise stay valid until it expires.
    """
    if current_user.is_authenticated:
        with runtime().sessions.begin() as session:
            accounts.end_sessions(session, current_user.id)
        log.info("user %s logged out; their sessions are ended", current_user.username)
    logout_user()
    return redirect(url_for("auth.login"))


def _unauthorized() -> Response | BaseResponse:
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def secret_key(config: Settings) -> str:
    """WEBUI_SECRET_KEY, or the key kept in MUTT_DATA_DIR (generated there on first use).

    The file is created exclusively, so concurrent web processes starting together agree on one key.
    """
    if config.webui_secret_key is not None:
        return config.webui_secret_key.get_secret_value()
    path = Path(config.mutt_data_dir) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if not key:
            raise SystemExit(f"mutt: {path} is empty; delete it or set WEBUI_SECRET_KEY") from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    log.info("generated the web UI's session key in %s", path)
    return key


def _check_csrf() -> None:
    # The API authenticates every request with a header, which a browser never sends across
    # sites; everything else (forms) needs the token.
    if not request.path.startswith(API_PREFIXES):
        csrf.protect()


def init_auth(app: Flask, config: Settings) -> None:
    """Sessions, CSRF and log-in for ``app``, with /login and /logout."""
    app.config.update(
        SECRET_KEY=secret_key(config),
        SESSION_COOKIE_NAME="mutt_session",
        SESSION_COOKIE_SECURE=config.webui_cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=config.webui_cookie_secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # Checked by _check_csrf instead, which leaves the API (and its JSON 404/405s) alone.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    csrf.init_app(app)
    app.before_request(_check_csrf)
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    login_manager.unauthorized_handler(_unauthorized)
    app.register_blueprint(bp)
