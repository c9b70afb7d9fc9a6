"""
The SMTP relay a partnership's notices go through, and how to reach it securely.

Three ways to talk to a relay, as a partnership's mail team will name them:
``none`` (plain SMTP, loopback relays only), ``starttls`` (port 587: plain,
then upgraded before anything is sent; refused if the relay does not offer it)
and ``tls`` (port 465, "implicit TLS": TLS from the first byte, RFC 8314's
preference). Certificates are verified against the system store or a given CA
file, with the host name checked: a relay that cannot prove who it is gets no
mail. A login is only ever sent over TLS.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from safebus.errors import ConfigError

__all__ = ["SmtpRelay", "SmtpSecurity"]


class SmtpSecurity(StrEnum):
    """How the connection to the relay is protected."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True, kw_only=True)
class SmtpRelay:
    """Where and how to hand messages to the relay (``repr`` masks the password)."""

    host: str
    port: int
    security: SmtpSecurity = SmtpSecurity.NONE
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    """Trust only this CA's certificates (PEM), instead of the system's."""
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        """Refuse a setting that cannot work, or would send a password in clear, when it is made."""
        if not 0 < self.port < 65536:
            raise ConfigError(f"SMTP port {self.port} is not a TCP port")
        if (self.username is None) != (self.password is None):
            raise ConfigError("an SMTP login needs both a user name and a password")
        if self.username is not None and self.security is SmtpSecurity.NONE:
            raise ConfigError("an SMTP login is only sent over TLS: set the security to starttls or tls")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ConfigError(f"the SMTP CA file {self.ca_file} does not exist")

    def connect(self) -> smtplib.SMTP:
        """
        A connection ready to send: TLS and login done as configured.

        Raises `smtplib.SMTPException` or `OSError` (an unreachable, refusing or
        unverifiable relay), for the caller to retry later.
        """
        smtp: smtplib.SMTP
        if self.security is SmtpSecurity.TLS:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._tls())
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            if self.security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=self._tls())  # raises SMTPNotSupportedError if the relay cannot
                smtp.ehlo()
            if self.username is not None and self.password is not None:
                smtp.login(self.username, self.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
