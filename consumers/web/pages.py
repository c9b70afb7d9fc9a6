"""
What every server-rendered page of safebus shares: sessions, sign-in, CSRF, headers, error pages.

The school inbox is the first user; the information-governance dashboard will
be the second, with its own accounts and roles.  Both plug in two callables: an
*authenticator* (user id and password -> `Principal`, or None) and a *resolver*
(user id -> the `Principal` as it is now, or None).  Nothing here knows what a
Key Adult or an officer is.

Why it is built this way:

- **Server-side sessions** (`safebus.consumers.web.sessions`).  The cookie
  holds only a random id; the session row says whose it is and until when.
  Sign-out deletes the row, and so do a password reset and an account's
  removal (the account commands end the user's sessions in the same file),
  so an old cookie is refused on the very next request.  The principal is
  also re-resolved on every request and must still have the credential
  version the session was made with.  The cookie is ``HttpOnly`` (no script
  can read it), ``SameSite=Strict`` (no other site's page can make the
  browser send it) and ``Secure`` when served over TLS, or when the caller
  says a TLS proxy is in front (``secure_cookies``).
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
- **Autoescaping Jinja2 templates from the installed package**
  (`safebus.consumers.web.rendering`), with `StrictUndefined`, so a
  misspelt variable is an error rather than a blank.
- **Sign-in throttling before the password check**
  (`safebus.consumers.web.sign_in_throttle`): each attempt first reserves its
  lanes (the account, the source address) in one SQLite transaction, which
  counts it as a failure until the password proves right; a closed lane
  answers 429 with ``Retry-After`` and checks nothing.  Delays grow with
  failures and never become a lock.  A browser that has signed in to an
  account gets a long-lived *device cookie* for it (an HMAC of a random
  device id and the account), and its attempts for that account are
  throttled on their own lane, so nobody else's guessing delays it.
- **TLS served by the app itself** when given a certificate and key
  (`safebus.consumers.web.serving`), TLS 1.2 or later; ``Strict-Transport-Security`` only on
  responses that travelled over TLS.  No response names the framework or
  its version (``Server: safebus``), error pages included.
- **Logs name user ids and routes, never form contents.**  A failed sign-in is
  logged without the user id typed (people type passwords into the wrong box).
  aiohttp's access log is off (`safebus.consumers.web.serving`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web, web_response

from safebus.b64 import b64e
from safebus.consumers.web.rendering import static_files, template_environment
from safebus.consumers.web.server_secret import MIN_SECRET_BYTES, site_key
from safebus.consumers.web.sessions import Session, SessionStore, open_sessions
from safebus.consumers.web.sign_in_throttle import SignInThrottle, Throttled
from safebus.errors import ConfigError
from safebus.logs import get_logger
from safebus.settings import store_location

__all__ = [
    "CSRF_FIELD", "SERVER_NAME", "SESSION_COOKIE", "Authenticator", "Clock", "Handler", "Principal", "Resolver",
    "create_app", "csrf_token", "current_principal", "render", "require_login", "throttle_location", "throttle_path",
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
_DEVICE_COOKIE = "safebus_device"
CSRF_FIELD = "csrf_token"
"""Name of the hidden form field every POST form carries."""

_PRELOGIN_TTL = timedelta(hours=1)
_DEVICE_TTL = timedelta(days=90)
"""How long a browser stays "known" to an account for sign-in throttling after its last sign-in."""
_MAX_FORM_BYTES = 64 * 1024
"""Largest request body read: the forms here are a few fields."""
_MAX_COOKIE_CHARS = 1024

_log = get_logger("consumers.web")

SERVER_NAME = "safebus"
"""The whole ``Server`` header: no framework, no version."""
setattr(web_response, "SERVER_SOFTWARE", SERVER_NAME)  # noqa: B010 - aiohttp's own error pages read it from here


def throttle_path(app_dir: Path) -> Path:
    """Where a web app whose state lives in `app_dir` keeps its sign-in throttle (its own file)."""
    return app_dir / "sign-in-throttle.sqlite"


def throttle_location(app_dir: Path | None) -> Path | str | None:
    """
    Where the sign-in throttle lives: the shared database when one is set, else `throttle_path`; None: in memory.

    In a shared database the lanes are shared by every web app there too:
    a guess at one counts against the same account and address at the others.
    """
    return None if app_dir is None else store_location(throttle_path(app_dir))



# --------------------------------------------------------------------------- the site

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
    sessions: SessionStore
    throttle: SignInThrottle

    @property
    def csrf_key(self) -> bytes:
        return site_key(self.secret, "csrf")

    @property
    def device_key(self) -> bytes:
        return site_key(self.secret, "device")

    def csrf_for(self, kind: str, nonce: str) -> str:
        return b64e(hmac.new(self.csrf_key, f"{kind}|{nonce}".encode(), hashlib.sha256).digest())

    # device cookies ---------------------------------------------------------

    def device_cookie(self, device_id: str, user_id: str) -> str:
        """A device cookie naming `device_id`, valid for `user_id` only."""
        mac = hmac.new(self.device_key, f"device/1|{device_id}|{user_id.casefold()}".encode(), hashlib.sha256)
        return f"{device_id}.{b64e(mac.digest())}"

    def known_device(self, cookie: str | None, user_id: str) -> str | None:
        """The device id of a valid device cookie for `user_id`, or None."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        device_id = cookie.split(".", 1)[0]
        expected = self.device_cookie(device_id, user_id)
        return device_id if hmac.compare_digest(cookie.encode(), expected.encode()) else None


_SITE = web.AppKey("safebus_site", _Site)
_PRINCIPAL = web.RequestKey("safebus_principal", Principal)
_SESSION = web.RequestKey("safebus_session", Session)
_NEW_PRELOGIN = web.RequestKey("safebus_new_prelogin", str)


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
    headers["Server"] = SERVER_NAME
    if request.secure:  # this response travelled over our own TLS: browsers must never fall back to plain HTTP
        headers["Strict-Transport-Security"] = "max-age=31536000"
    if request.path.startswith("/static/") and response.status == 200:
        headers["Cache-Control"] = "public, max-age=3600"
    else:
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=request.app[_SITE].secure_cookies or request.secure)


_MESSAGES = {
    400: ("Something was wrong with that request", "Go back and try again."),
    403: ("That did not work", "The page may have been open for a long time. Go back, reload the page and try again."),
    404: ("Page not found", "There is nothing here, or you do not have access to it."),
    405: ("That did not work", "Go back and try again."),
    413: ("That was too large", "Go back and try again."),
    429: ("Please wait", "There have been too many attempts. Wait a minute, then try again."),
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
    """Attach the signed-in principal, if the cookie names a live session and the account still matches it."""
    site = request.app[_SITE]
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await asyncio.to_thread(site.sessions.find, cookie) if cookie else None
    if session is not None:
        principal = await asyncio.to_thread(site.resolve, session.user_id)
        if principal is not None and hmac.compare_digest(principal.session_version.encode(), session.version.encode()):
            request[_PRINCIPAL] = principal
            request[_SESSION] = session
        else:  # removed or re-credentialled since: this session is over for good
            await asyncio.to_thread(site.sessions.end, session)
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
        expected = site.csrf_for("session", session.handle)
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
        return site.csrf_for("session", session.handle)
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
        _set_cookie(request, response, _PRELOGIN_COOKIE, prelogin, max_age=int(_PRELOGIN_TTL.total_seconds()))
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
    """
    Check a sign-in: reserve the attempt with the throttle first, then (only if admitted) the password.

    Every refusal looks the same (401, one message) whether the id exists or
    not; a throttled attempt is a 429 with ``Retry-After`` and is not checked.
    """
    site = request.app[_SITE]
    form = await request.post()
    user_id, password = form.get("user_id"), form.get("password")
    target = _safe_next(form.get("next"), site.home)
    typed = user_id if isinstance(user_id, str) else ""
    principal: Principal | None = None
    if isinstance(user_id, str) and isinstance(password, str) and user_id and password and len(user_id) <= 100:
        device = site.known_device(request.cookies.get(_DEVICE_COOKIE), user_id)
        try:
            reservation = await asyncio.to_thread(site.throttle.reserve, account=user_id, source=request.remote,
                                                  device=device)
        except Throttled as throttled:
            wait = max(1, math.ceil(throttled.retry_after_s))
            _log.warning("web.login_throttled", retry_after_s=wait, known_device=device is not None)
            response = render(request, "common/login.html", status=429, user_label=site.user_label,
                              error=f"There have been too many attempts to sign in. Wait {_duration(wait)}, "
                                    "then try again.", user_id=typed, next=target)
            response.headers["Retry-After"] = str(wait)
            return response
        principal = await asyncio.to_thread(site.authenticate, user_id, password)
        if principal is not None:
            await asyncio.to_thread(site.throttle.succeeded, reservation)
    if principal is None:
        _log.info("web.login_refused")  # no user id: people type passwords into the wrong box
        return render(request, "common/login.html", status=401, user_label=site.user_label,
                      error="The details you entered are not right. Check them and try again.",
                      user_id=typed, next=target)
    session_id, _ = await asyncio.to_thread(site.sessions.start, user_id=principal.user_id,
                                            version=principal.session_version, ttl=site.session_ttl)
    _log.info("web.login", user_id=principal.user_id)
    response = web.Response(status=303, headers={"Location": target})
    _set_cookie(request, response, SESSION_COOKIE, session_id, max_age=int(site.session_ttl.total_seconds()))
    device_id = site.known_device(request.cookies.get(_DEVICE_COOKIE), typed) or secrets.token_urlsafe(16)
    _set_cookie(request, response, _DEVICE_COOKIE, site.device_cookie(device_id, typed),
                max_age=int(_DEVICE_TTL.total_seconds()))
    response.del_cookie(_PRELOGIN_COOKIE, path="/")
    return response


def _duration(seconds: int) -> str:
    """``1 second``, ``40 seconds``, ``3 minutes`` (rounded up): how long to wait, as a person says it."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


async def _logout_page(request: web.Request) -> web.StreamResponse:
    if request.get(_PRINCIPAL) is None:
        raise web.HTTPSeeOther("/login")
    return render(request, "common/logout.html")


async def _logout(request: web.Request) -> web.StreamResponse:
    principal, session = request.get(_PRINCIPAL), request.get(_SESSION)
    if session is not None:
        await asyncio.to_thread(request.app[_SITE].sessions.end, session)  # the cookie is worthless from now on
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
    state_dir: Path | None = None,
) -> web.Application:
    """
    An aiohttp app with sign-in, sign-out, sessions, CSRF, security headers, error pages and ``/static/``.

    Add the app's own routes to the result and wrap each handler that shows
    anything personal in `require_login`.  `secret` must be at least 32 bytes
    (see `safebus.consumers.web.server_secret`); `secure_cookies=False` is only for plain
    HTTP on loopback (tests, a local demo); over TLS cookies are always
    ``Secure``.  Sessions and the sign-in throttle live in SQLite files in
    `state_dir` (the account commands end sessions there), in the shared
    database when ``SAFEBUS_DATABASE_URL`` names one (so instances behind one
    address share them), or in memory when `state_dir` is None (tests).
    Raises ConfigError on a short secret or an unknown `display_zone`.
    """
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"the web secret must be at least {MIN_SECRET_BYTES} bytes")
    try:
        zone = ZoneInfo(display_zone)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"unknown time zone {display_zone!r}") from exc
    app = web.Application(middlewares=[_errors, _sessions, _csrf], client_max_size=_MAX_FORM_BYTES)
    app[_SITE] = _Site(title=title, home=home, footer=footer, user_label=user_label, secret=secret,
                       authenticate=authenticate, resolve=resolve, clock=clock, session_ttl=session_ttl,
                       secure_cookies=secure_cookies, templates=template_environment(zone), static=static_files(),
                       sessions=open_sessions(state_dir, clock=clock),
                       throttle=SignInThrottle(throttle_location(state_dir), clock=clock))
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/login", _login_page)
    app.router.add_post("/login", _login)
    app.router.add_get("/logout", _logout_page)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/static/{name}", _static)
    return app
