"""
What the two web apps' commands share: serving TLS themselves (``--tls-cert``/``--tls-key``).

The inbox (``safebus inbox web``) and the dashboard (``safebus audit web``)
serve HTTPS when given a PEM certificate chain and its private key, on the
command line or in ``SAFEBUS_WEB_TLS_CERT``/``SAFEBUS_WEB_TLS_KEY``; without
them they serve plain HTTP for a TLS-terminating proxy in front (and send no
``Strict-Transport-Security``, which only a TLS response may carry).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from safebus.errors import ConfigError

if TYPE_CHECKING:
    import ssl

__all__ = ["CERT_ENV", "KEY_ENV", "add_tls_arguments", "tls_from_args"]

CERT_ENV, KEY_ENV = "SAFEBUS_WEB_TLS_CERT", "SAFEBUS_WEB_TLS_KEY"


def add_tls_arguments(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """Add ``--tls-cert`` and ``--tls-key`` to a web command's parser (`prefix` starts their help, e.g. "web: ")."""
    parser.add_argument("--tls-cert", type=Path, metavar="PEM",
                        help=f"{prefix}serve HTTPS with this certificate chain (PEM; default ${CERT_ENV}); "
                             "HSTS is sent only then")
    parser.add_argument("--tls-key", type=Path, metavar="PEM",
                        help=f"{prefix}the certificate's private key (PEM; default ${KEY_ENV})")


def tls_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context the options (or environment) ask for, or None for plain HTTP. ConfigError if half given."""
    from safebus.consumers.web.serving import tls_context

    cert = args.tls_cert or (Path(os.environ[CERT_ENV]) if os.environ.get(CERT_ENV) else None)
    key = args.tls_key or (Path(os.environ[KEY_ENV]) if os.environ.get(KEY_ENV) else None)
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both --tls-cert and --tls-key (or SAFEBUS_WEB_TLS_CERT and SAFEBUS_WEB_TLS_KEY)")
    return tls_context(cert, key)
