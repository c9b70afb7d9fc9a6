"""
What every server-rendered page of safebus shares: sessions, sign-in, CSRF, headers, templates.

The school inbox is the first user; the information-governance dashboard will
be the second, with its own accounts and roles.  Both plug in two callables: an
*authenticator* (user id and password -> `Principal`, or None) and a *resolver*
(user id -> the `Principal` as it is now, or None).  Nothing here knows what a
Key Adult or an officer is.

Why it is built this way:

- **Signed session cookies, no server-side session table.**  The cookie holds
  the user id, a credential version, an expiry and a random nonce, signed with
  HMAC-SHA256 under a key derived from the server's secret.  A forged or edited
  cookie fails the constant-time comparison; an expired one is ignored.  The
  principal is *re-resolved on every request*, so a removed account or a reset
  password (the credential version changes) ends its sessions at once, which a
  self-contained token alone could not do.  The cookie is ``HttpOnly`` (no
  script can read it), ``SameSite=Strict`` (no other site's page can make the
  browser send it) and ``Secure`` unless the caller serves plain HTTP on
  loopback for tests.
- **A CSRF token on every POST form, and a same-origin check.**  SameSite is a
  browser promise, not ours.  Every unsafe request must carry a token that only
  a page of this server could have put in the form: an HMAC of the session's
  nonce (or, before sign-in, of a short-lived pre-login cookie's nonce, so that
  nobody can sign a victim into the attacker's account).  A request whose
  ``Origin`` names another host is refused too (with ``no-referrer`` browsers
  send ``Origin: null`` for our own forms, so the token is what counts).
- **A strict Content Security Policy.**  ``default-src 'none'`` with only the
  site's own stylesheet allowed: no script of any kind runs, inline or not, so
  an escaping bug in a template cannot become script execution.  The pages need
  none: they are plain forms and links.  ``frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY`` stop clickjacking; ``Referrer-Policy: no-referrer``
  keeps alert and child URLs out of other sites' logs; ``Cache-Control:
  no-store`` on every dynamic response keeps safeguarding data out of shared
  and back-button caches (only the stylesheet may be cached).
- **Autoescaping Jinja2 templates from the installed package**, with
  `StrictUndefined`, so a misspelt variable is an error rather than a blank.
- **Sign-in throttling.**  After `_MAX_FAILURES` wrong passwords for one user
  id within `_FAILURE_WINDOW`, further attempts for it are refused without
  being checked, with the same message as a wrong password.
- **Logs name user ids and routes, never form contents.**  A failed sign-in is
  logged without the user id typed (people type passwords into the wrong box).
  aiohttp's access log is off: URLs carry alert ids, and one log policy is
  easier to keep than two.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import mimetypes
import os
import secrets
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from safebus.errors import ConfigError
from safebus.logs import get_logger

__all__ = [
    "CSRF_FIELD", "SESSION_COOKIE", "Authenticator", "Clock", "Handler", "Principal", "Resolver", "ServedApp",
    "create_app", "csrf_token", "current_principal", "derived_key", "load_or_create_secret", "render",
    "require_login", "run_app", "serve_in_thread",
]

Clock = Callable[[], datetime]
"""Returns the current, timezone-aware time (injected so tests control expiry)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler."""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """
    A signed-in person as the pages see them.

    `scope` bounds what they may see (a setting URN for a Key Adult; an agency
    or the partnership for an officer); each app interprets it.  The session
    stays valid only while `session_version` is what the resolver returns.
    """

    user_id: str
    display_name: str
    roles: frozenset[str]
    scope: str
    session_version: str = ""


Authenticator = Callable[[str, str], Principal | None]
"""(user id, password) -> the principal, or None.  Blocking (it runs a password KDF); called in a thread."""

Resolver = Callable[[str], Principal | None]
"""user id -> the principal as it is now, or None if the account no longer exists.  Called on every request."""

SESSION_COOKIE = "safebus_session"
_PRELOGIN_COOKIE = "safebus_prelogin"
CSRF_FIELD = "csrf_token"
"""Name of the hidden form field every POST form carries."""

_MIN_SECRET_BYTES = 32
_PRELOGIN_TTL = timedelta(hours=1)
_MAX_FAILURES, _FAILURE_WINDOW = 10, timedelta(minutes=15)
_MAX_FORM_BYTES = 64 * 1024
"""Largest request body read: the forms here are a few fields."""
_MAX_COOKIE_CHARS = 1024

_log = get_logger("consumers.web")


# --------------------------------------------------------------------------- secrets and keys

def load_or_create_secret(path: Path) -> bytes:
    """
    The server secret stored at `path`, created (32 random bytes, mode 0600) if missing.

    Keeping it in a file lets sessions survive a restart; deleting the file
    ends every session.  Raises ConfigError if the file is open to other users
    or too short.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(f"web secret {path} is open to other users (mode {mode & 0o777:o}); chmod 600") from None
        secret = path.read_bytes()
        if len(secret) < _MIN_SECRET_BYTES:
            raise ConfigError(f"web secret {path} is shorter than {_MIN_SECRET_BYTES} bytes") from None
        return secret
    secret = secrets.token_bytes(_MIN_SECRET_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


def _derive(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"safebus-web|{purpose}".encode(), hashlib.sha256).digest()


def derived_key(secret: bytes, purpose: str) -> bytes:
    """
    A key for an app's own `purpose` derived from the server secret.

    Each purpose gets its own key, and none equals the session or CSRF keys,
    so a value made for one use can never stand in for another.
    """
    return _derive(secret, f"app|{purpose}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- the site

@dataclass(frozen=True, kw_only=True)
class _Session:
    user_id: str
    version: str
    expires: int
    nonce: str


@dataclass(kw_only=True)
class _Site:
    title: str
    home: str
    footer: str
    user_label: str
    secret: bytes
    authenticate: Authenticator
    resolve: Resolver
    clock: Clock
    session_ttl: timedelta
    secure_cookies: bool
    templates: jinja2.Environment
    static: Mapping[str, tuple[bytes, str]]
    failures: dict[str, deque[datetime]] = field(default_factory=dict)
    failures_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def session_key(self) -> bytes:
        return _derive(self.secret, "session")

    @property
    def csrf_key(self) -> bytes:
        return _derive(self.secret, "csrf")

    def now_epoch(self) -> int:
        return int(self.clock().timestamp())

    # sessions ---------------------------------------------------------------

    def sign(self, session: _Session) -> str:
        body = _b64(json.dumps({"sub": session.user_id, "ver": session.version, "exp": session.expires,
                                "nonce": session.nonce}, separators=(",", ":")).encode())
        mac = hmac.new(self.session_key, f"session/1|{body}".encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def verify(self, cookie: str | None) -> _Session | None:
        """The session a cookie proves, or None (missing, forged, malformed or expired: all the same)."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        expected = hmac.new(self.session_key, f"session/1|{body}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(mac), expected):
                return None
            fields = json.loads(_unb64(body))
            session = _Session(user_id=str(fields["sub"]), version=str(fields["ver"]), expires=int(fields["exp"]),
                               nonce=str(fields["nonce"]))
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        return session if session.expires > self.now_epoch() else None

    def csrf_for(self, kind: str, nonce: str) -> str:
        return _b64(hmac.new(self.csrf_key, f"{kind}|{nonce}".encode(), hashlib.sha256).digest())

    # sign-in throttling ----------------------------------------------------------

    def throttled(self, user_id: str) -> bool:
        key, cutoff = user_id.casefold(), self.clock() - _FAILURE_WINDOW
        with self.failures_lock:
            recent = self.failures.get(key)
            while recent and recent[0] < cutoff:
                recent.popleft()
            return recent is not None and len(recent) >= _MAX_FAILURES

    def failed(self, user_id: str) -> None:
        key, now = user_id.casefold(), self.clock()
        with self.failures_lock:
            if len(self.failures) > 10_000:  # bounded memory under a spray of made-up ids
                cutoff = now - _FAILURE_WINDOW
                self.failures = {k: v for k, v in self.failures.items() if v and v[-1] >= cutoff}
            self.failures.setdefault(key, deque(maxlen=_MAX_FAILURES)).append(now)

    def succeeded(self, user_id: str) -> None:
        with self.failures_lock:
            self.failures.pop(user_id.casefold(), None)


_SITE = web.AppKey("safebus_site", _Site)
_PRINCIPAL = web.RequestKey("safebus_principal", Principal)
_SESSION = web.RequestKey("safebus_session", _Session)
_NEW_PRELOGIN = web.RequestKey("safebus_new_prelogin", str)


def _templates(display_zone: ZoneInfo) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("safebus.consumers.web", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )

    def when(moment: datetime | None) -> str:
        """A moment in the reader's time zone, e.g. ``Wed 18 Nov 2026, 21:30 GMT``."""
        if moment is None:
            return ""
        local = moment.astimezone(display_zone)
        return f"{local:%a} {local.day} {local:%b %Y, %H:%M %Z}"

    def day(value: date) -> str:
        """A calendar date, e.g. ``4 March 2016``."""
        return f"{value.day} {value:%B %Y}"

    env.filters["when"] = when
    env.filters["day"] = day
    return env


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = files("safebus.consumers.web").joinpath("static")
    found: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            found[entry.name] = (entry.read_bytes(), kind)
    return found


# --------------------------------------------------------------------------- headers, errors, sessions, CSRF

_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = _CSP
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if request.app[_SITE].secure_cookies:  # served over TLS (behind the proxy): browsers must never fall back
        headers["Strict-Transport-Security"] = "max-age=31536000"
    if request.path.startswith("/static/") and response.status == 200:
        headers["Cache-Control"] = "public, max-age=3600"
    else:
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"


def _set_cookie(response: web.StreamResponse, site: _Site, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=site.secure_cookies)


_MESSAGES = {
    400: ("Something was wrong with that request", "Go back and try again."),
    403: ("That did not work", "The page may have been open for a long time. Go back, reload the page and try again."),
    404: ("Page not found", "There is nothing here, or you do not have access to it."),
    405: ("That did not work", "Go back and try again."),
    413: ("That was too large", "Go back and try again."),
    500: ("Sorry, something went wrong", "Nothing you did caused this. Try again in a few minutes."),
}


def _error_page(request: web.Request, status: int) -> web.Response:
    heading, advice = _MESSAGES.get(status, _MESSAGES[400] if status < 500 else _MESSAGES[500])
    return render(request, "common/error.html", status=status, heading=heading, advice=advice)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render 4xx and 5xx as pages in the site's style; never show a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_page(request, exc.status)
    except Exception:  # noqa: BLE001 - any bug becomes a plain 500 page; the traceback goes to our log only
        _log.exception("web.unhandled", path=request.path, method=request.method)
        return _error_page(request, 500)


@web.middleware
async def _sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the signed-in principal, if the cookie is valid and the account still matches it."""
    site = request.app[_SITE]
    session = site.verify(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        principal = await asyncio.to_thread(site.resolve, session.user_id)
        if principal is not None and hmac.compare_digest(principal.session_version.encode(), session.version.encode()):
            request[_PRINCIPAL] = principal
            request[_SESSION] = session
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    """
    False only when the browser says the request came from a page of another host.

    Our own pages send ``Referrer-Policy: no-referrer``, under which browsers
    send ``Origin: null`` even for same-origin form posts; so "null" and a
    missing header prove nothing either way and the CSRF token decides.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    return urlsplit(origin).netloc == request.host


@web.middleware
async def _csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse an unsafe request without this site's CSRF token for the current session (or pre-login cookie)."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return await handler(request)
    site = request.app[_SITE]
    if not _same_origin(request):
        _log.warning("web.csrf_refused", path=request.path, reason="cross-origin")
        raise web.HTTPForbidden
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    session = request.get(_SESSION)
    prelogin = request.cookies.get(_PRELOGIN_COOKIE)
    expected: str | None = None
    if session is not None:
        expected = site.csrf_for("session", session.nonce)
    elif prelogin:
        expected = site.csrf_for("prelogin", prelogin)
    if not isinstance(sent, str) or expected is None or not hmac.compare_digest(sent.encode(), expected.encode()):
        _log.warning("web.csrf_refused", path=request.path, reason="token")
        raise web.HTTPForbidden
    return await handler(request)


# --------------------------------------------------------------------------- what handlers use

def current_principal(request: web.Request) -> Principal:
    """The signed-in principal; only call it from a handler wrapped in `require_login`."""
    return request[_PRINCIPAL]


def csrf_token(request: web.Request) -> str:
    """The token a POST form on this page must carry in its `CSRF_FIELD` field."""
    site = request.app[_SITE]
    session = request.get(_SESSION)
    if session is not None:
        return site.csrf_for("session", session.nonce)
    nonce = request.get(_NEW_PRELOGIN) or request.cookies.get(_PRELOGIN_COOKIE)
    if not nonce or len(nonce) > 64:
        nonce = secrets.token_urlsafe(24)
        request[_NEW_PRELOGIN] = nonce  # `render` sets the cookie on its response
    return site.csrf_for("prelogin", nonce)


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """
    Render `template` with `context` plus the site title, the principal and the CSRF token.

    Before sign-in this also sets the pre-login cookie the page's token is bound to.
    """
    site = request.app[_SITE]
    text = site.templates.get_template(template).render(
        site_title=site.title, home=site.home, footer=site.footer, principal=request.get(_PRINCIPAL),
        csrf_field=CSRF_FIELD, csrf_token=csrf_token(request), **context,
    )
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    prelogin = request.get(_NEW_PRELOGIN)
    if prelogin is not None:
        _set_cookie(response, site, _PRELOGIN_COOKIE, prelogin, max_age=int(_PRELOGIN_TTL.total_seconds()))
    return response


def require_login(*, roles: Iterable[str] | None = None) -> Callable[[Handler], Handler]:
    """
    Wrap a handler so it runs only for a signed-in principal (holding one of `roles`, when given).

    Someone not signed in is sent to the sign-in page, which brings them back
    afterwards; a signed-in principal without the role gets 403.
    """
    allowed = frozenset(roles) if roles is not None else None

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = request.get(_PRINCIPAL)
            if principal is None:
                target = request.path_qs if request.method == "GET" else request.app[_SITE].home
                raise web.HTTPSeeOther(f"/login?{urlencode({'next': target})}")
            if allowed is not None and not (principal.roles & allowed):
                _log.warning("web.role_refused", user_id=principal.user_id, path=request.path)
                raise web.HTTPForbidden
            return await handler(request)

        return guarded

    return decorate


def _safe_next(candidate: object, home: str) -> str:
    """A local path to return to after sign-in; anything else (another site, a scheme) becomes `home`."""
    if not isinstance(candidate, str) or not candidate.startswith("/") or candidate.startswith("//"):
        return home
    if "\\" in candidate or any(ord(c) < 32 for c in candidate) or urlsplit(candidate).netloc:
        return home
    return candidate


# --------------------------------------------------------------------------- sign-in and sign-out

async def _login_page(request: web.Request) -> web.StreamResponse:
    site = request.app[_SITE]
    if request.get(_PRINCIPAL) is not None:
        raise web.HTTPSeeOther(site.home)
    return render(request, "common/login.html", user_label=site.user_label, error=None, user_id="",
                  next=_safe_next(request.query.get("next"), site.home))


async def _login(request: web.Request) -> web.StreamResponse:
    site = request.app[_SITE]
    form = await request.post()
    user_id, password = form.get("user_id"), form.get("password")
    target = _safe_next(form.get("next"), site.home)
    principal: Principal | None = None
    if isinstance(user_id, str) and isinstance(password, str) and user_id and password and len(user_id) <= 100:
        if site.throttled(user_id):
            _log.warning("web.login_throttled")
        else:
            principal = await asyncio.to_thread(site.authenticate, user_id, password)
            if principal is None:
                site.failed(user_id)
    if principal is None:
        _log.info("web.login_refused")  # no user id: people type passwords into the wrong box
        return render(request, "common/login.html", status=401, user_label=site.user_label,
                      error="The details you entered are not right. Check them and try again.",
                      user_id=user_id if isinstance(user_id, str) else "", next=target)
    site.succeeded(user_id if isinstance(user_id, str) else "")
    session = _Session(user_id=principal.user_id, version=principal.session_version,
                       expires=site.now_epoch() + int(site.session_ttl.total_seconds()),
                       nonce=secrets.token_urlsafe(24))  # fresh nonce: a pre-login token never works afterwards
    _log.info("web.login", user_id=principal.user_id)
    response = web.Response(status=303, headers={"Location": target})
    _set_cookie(response, site, SESSION_COOKIE, site.sign(session), max_age=int(site.session_ttl.total_seconds()))
    response.del_cookie(_PRELOGIN_COOKIE, path="/")
    return response


async def _logout_page(request: web.Request) -> web.StreamResponse:
    if request.get(_PRINCIPAL) is None:
        raise web.HTTPSeeOther("/login")
    return render(request, "common/logout.html")


async def _logout(request: web.Request) -> web.StreamResponse:
    principal = request.get(_PRINCIPAL)
    if principal is not None:
        _log.info("web.logout", user_id=principal.user_id)
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def _static(request: web.Request) -> web.StreamResponse:
    found = request.app[_SITE].static.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound
    body, kind = found
    return web.Response(body=body, content_type=kind)


# --------------------------------------------------------------------------- the app factory

def create_app(
    *,
    title: str,
    secret: bytes,
    authenticate: Authenticator,
    resolve: Resolver,
    clock: Clock,
    home: str = "/",
    footer: str = "This service holds safeguarding information. Record what you need in your child-protection file.",
    user_label: str = "Staff ID",
    session_ttl: timedelta = timedelta(hours=8),
    secure_cookies: bool = True,
    display_zone: str = "Europe/London",
) -> web.Application:
    """
    An aiohttp app with sign-in, sign-out, sessions, CSRF, security headers, error pages and ``/static/``.

    Add the app's own routes to the result and wrap each handler that shows
    anything personal in `require_login`.  `secret` must be at least 32 bytes
    (see `load_or_create_secret`); `secure_cookies=False` is only for plain
    HTTP on loopback (tests, a local demo).  Raises ConfigError on a short
    secret or an unknown `display_zone`.
    """
    if len(secret) < _MIN_SECRET_BYTES:
        raise ConfigError(f"the web secret must be at least {_MIN_SECRET_BYTES} bytes")
    try:
        zone = ZoneInfo(display_zone)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"unknown time zone {display_zone!r}") from exc
    app = web.Application(middlewares=[_errors, _sessions, _csrf], client_max_size=_MAX_FORM_BYTES)
    app[_SITE] = _Site(title=title, home=home, footer=footer, user_label=user_label, secret=secret,
                       authenticate=authenticate, resolve=resolve, clock=clock, session_ttl=session_ttl,
                       secure_cookies=secure_cookies, templates=_templates(zone), static=_static_files())
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/login", _login_page)
    app.router.add_post("/login", _login)
    app.router.add_get("/logout", _logout_page)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/static/{name}", _static)
    return app


# --------------------------------------------------------------------------- running

def run_app(app: web.Application, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve `app` until interrupted (for a CLI).  Put a TLS-terminating reverse proxy in front of it."""
    web.run_app(app, host=host, port=port, access_log=None, print=None)


class ServedApp(NamedTuple):
    """An app served from a background thread: where it is, and how to stop it."""

    base_url: str
    stop: Callable[[], None]


def serve_in_thread(app: web.Application, *, host: str = "127.0.0.1") -> ServedApp:
    """
    Serve `app` on `host` at a free port from a background thread (tests, the demo) and return once it listens.

    `stop()` shuts it down and waits for the thread.  Raises whatever the app
    raised while starting.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    ready = threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            ready.set()
            await stopping.wait()
        finally:
            await runner.cleanup()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, which re-raises it
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=main, name=f"web-{port}", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        raise failure[0]

    def stop() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has already closed: the server is down
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)

    return ServedApp(base_url=f"http://{host}:{port}", stop=stop)
