"""
Serving a web app: its TLS context, in the foreground for a command, or from a thread for tests and the demo.

Apart from `safebus.consumers.web.pages` because how an app is served (a port,
a certificate, an event loop in a thread) is not what it serves: the commands
and tests that start an app need this, the handlers never do.  aiohttp's
access log is off here: URLs carry alert ids, and one log policy is easier to
keep than two.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from safebus.errors import ConfigError

__all__ = ["ServedApp", "run_app", "serve_in_thread", "tls_context"]


def tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """
    A server TLS context (TLS 1.2 or later) for the PEM `certificate` chain and its `key`.

    Raises ConfigError naming the file when either cannot be read or they do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=certificate, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the TLS certificate {certificate} with the key {key}: {exc}") from exc
    return context


def run_app(app: web.Application, *, host: str = "127.0.0.1", port: int = 8080,
            tls: ssl.SSLContext | None = None) -> None:
    """Serve `app` until interrupted (for a CLI): over TLS with `tls`, else plain HTTP behind a TLS proxy."""
    web.run_app(app, host=host, port=port, access_log=None, print=None, ssl_context=tls)


class ServedApp(NamedTuple):
    """An app served from a background thread: where it is, and how to stop it."""

    base_url: str
    stop: Callable[[], None]


def serve_in_thread(app: web.Application, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                    port: int = 0, reuse_port: bool = False) -> ServedApp:
    """
    Serve `app` on `host` at `port` (0: a free one) from a background thread (tests, the demo); return once it listens.

    With `tls` it serves HTTPS and `base_url` says so.  With `reuse_port`
    the socket is bound with ``SO_REUSEPORT``, so several instances of one
    app (each with its own process or thread) listen on one address and the
    kernel shares the connections out between them: how instances that keep
    their state in one shared database stand behind one address.

    `stop()` shuts it down and waits for the thread.  Raises whatever the app
    raised while starting.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    ready = threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=tls).start()
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

    return ServedApp(base_url=f"{'https' if tls else 'http'}://{host}:{port}", stop=stop)
