"""
How this process authenticates to Kafka: one validated setting shared by both client stacks.

A partnership's cluster requires TLS and authentication, and every client of
the bus (confluent-kafka's producers, consumers and admin clients, and Faust's
aiokafka) must present the same identity: the component's own principal.  The
process reads it once from its environment (``SAFEBUS_KAFKA_*``, validated by
pydantic-settings so a bad value is refused with the setting's name) and every
client builds its configuration from `client_config`, so no client can be
created without it.

Each worker is its own process with its own principal, so the setting is per
process, not per call: the composition root may `use` an explicit one (tests,
``safebus config check``), otherwise the first client reads the environment.

The password is read from a file (``SAFEBUS_KAFKA_PASSWORD_FILE``), never from
an environment variable or a command line, and `describe` masks it.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from safebus.errors import ConfigError

__all__ = [
    "CREDENTIALS_DIR",
    "READER_GROUP_PREFIX",
    "VARIABLES",
    "KafkaSecurity",
    "SecurityProtocol",
    "client_config",
    "component_environment",
    "current_security",
    "load_security",
    "use",
]


class SecurityProtocol(StrEnum):
    """Kafka's names for how a client talks to a listener."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_SSL = "SASL_SSL"


class KafkaSecurity(BaseModel):
    """
    The Kafka identity and transport of this process (environment ``SAFEBUS_KAFKA_*``).

    ``PLAINTEXT`` is the local single-node broker.  ``SASL_SSL`` with
    SCRAM-SHA-512 is a partnership's cluster: `username` and `password_file`
    are the component's principal.  ``SSL`` with `cert_file` and `key_file`
    is mutual TLS (the certificate is the principal).  `ca_file` is the CA that
    signs the brokers' certificates (the system's CAs when unset).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: str = Field(default="SCRAM-SHA-512", pattern=r"^SCRAM-SHA-(256|512)$")
    username: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._@-]+$")
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        sasl = self.security_protocol is SecurityProtocol.SASL_SSL
        if sasl and (self.username is None or self.password_file is None):
            raise ValueError("SASL_SSL needs SAFEBUS_KAFKA_USERNAME and SAFEBUS_KAFKA_PASSWORD_FILE")
        if not sasl and (self.username is not None or self.password_file is not None):
            raise ValueError("SAFEBUS_KAFKA_USERNAME and SAFEBUS_KAFKA_PASSWORD_FILE are sent only over SASL_SSL, "
                             f"but SAFEBUS_KAFKA_SECURITY_PROTOCOL is {self.security_protocol}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("SAFEBUS_KAFKA_CERT_FILE and SAFEBUS_KAFKA_KEY_FILE go together")
        if self.security_protocol is SecurityProtocol.PLAINTEXT and (self.ca_file or self.cert_file):
            raise ValueError("TLS files are set but SAFEBUS_KAFKA_SECURITY_PROTOCOL is PLAINTEXT")
        for name in ("password_file", "ca_file", "cert_file", "key_file"):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"SAFEBUS_KAFKA_{name.upper()}: no file at {path}")
        return self

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self.security_protocol is not SecurityProtocol.PLAINTEXT

    def password(self) -> str:
        """The SCRAM password, read from its file now (a rotated file is picked up by the next client)."""
        if self.password_file is None:
            raise ConfigError("no SAFEBUS_KAFKA_PASSWORD_FILE")
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"SAFEBUS_KAFKA_PASSWORD_FILE: cannot read {self.password_file}: {exc}") from exc

    def librdkafka(self) -> dict[str, str]:
        """The security part of a confluent-kafka client configuration."""
        config = {"security.protocol": self.security_protocol.value}
        if self.security_protocol is SecurityProtocol.SASL_SSL:
            config |= {"sasl.mechanism": self.sasl_mechanism, "sasl.username": str(self.username),
                       "sasl.password": self.password()}
        if self.ca_file is not None:
            config["ssl.ca.location"] = str(self.ca_file)
        if self.cert_file is not None and self.key_file is not None:
            config |= {"ssl.certificate.location": str(self.cert_file), "ssl.key.location": str(self.key_file)}
        if self.tls:
            config["ssl.endpoint.identification.algorithm"] = "https"  # the broker's name is checked too
        return config

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for aiokafka (Faust): the CA's trust, host names checked, our certificate if any."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def describe(self) -> dict[str, str]:
        """What this process will use, secrets masked (for ``safebus config check`` and start-up logs)."""
        shown = {"security_protocol": self.security_protocol.value}
        if self.security_protocol is SecurityProtocol.SASL_SSL:
            shown |= {"sasl_mechanism": self.sasl_mechanism, "username": str(self.username),
                      "password": "****" if self.password_file else "(none)"}
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None:
                shown[name] = str(value)
        return shown


VARIABLES = {
    "security_protocol": "SAFEBUS_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "SAFEBUS_KAFKA_SASL_MECHANISM",
    "username": "SAFEBUS_KAFKA_USERNAME",
    "password_file": "SAFEBUS_KAFKA_PASSWORD_FILE",
    "ca_file": "SAFEBUS_KAFKA_CA_FILE",
    "cert_file": "SAFEBUS_KAFKA_CERT_FILE",
    "key_file": "SAFEBUS_KAFKA_KEY_FILE",
}
"""The environment variable of each `KafkaSecurity` field."""


class _FromEnvironment(BaseSettings):
    """The ``SAFEBUS_KAFKA_*`` variables as they are (`KafkaSecurity` validates them; an explicit one reads none)."""

    model_config = SettingsConfigDict(extra="ignore")

    security_protocol: str | None = Field(default=None, validation_alias=VARIABLES["security_protocol"])
    sasl_mechanism: str | None = Field(default=None, validation_alias=VARIABLES["sasl_mechanism"])
    username: str | None = Field(default=None, validation_alias=VARIABLES["username"])
    password_file: str | None = Field(default=None, validation_alias=VARIABLES["password_file"])
    ca_file: str | None = Field(default=None, validation_alias=VARIABLES["ca_file"])
    cert_file: str | None = Field(default=None, validation_alias=VARIABLES["cert_file"])
    key_file: str | None = Field(default=None, validation_alias=VARIABLES["key_file"])


_lock = threading.Lock()
_current: KafkaSecurity | None = None


def load_security(env: dict[str, str] | None = None) -> KafkaSecurity:
    """
    Read and validate the ``SAFEBUS_KAFKA_*`` settings (of `env`, or the process environment).

    Raises `ConfigError` naming the setting that is wrong.
    """
    try:
        if env is None:
            fields = _FromEnvironment().model_dump(exclude_none=True)
        else:
            fields = {name: env[variable] for name, variable in VARIABLES.items() if variable in env}
        return KafkaSecurity.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{VARIABLES.get(str(e['loc'][0]), e['loc'][0])}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"Kafka security settings: {problems}") from exc


def use(security: KafkaSecurity | None) -> None:
    """Make `security` this process's Kafka identity (None: read the environment again at the next client)."""
    global _current
    with _lock:
        _current = security


def current_security() -> KafkaSecurity:
    """This process's Kafka identity: the one given to `use`, else the environment's (read once)."""
    global _current
    with _lock:
        if _current is None:
            _current = load_security()
        return _current


READER_GROUP_PREFIX = "safebus-reader"
"""
The consumer groups of readers that assign partitions themselves and never commit (`safebus.kafka_io.read_topic`,
the live directory).  librdkafka still asks for a group's coordinator when a group id is set (and
confluent-kafka requires one), which a secured cluster refuses without a group ACL; so every
principal may use groups with this prefix (`safebus.deploy.acls`), and no reader of ours ever joins one.
"""


def client_config(bootstrap: str, **settings: Any) -> dict[str, Any]:
    """A confluent-kafka client configuration for `bootstrap` as this process's principal, plus `settings`."""
    return {"bootstrap.servers": bootstrap, **current_security().librdkafka(), **settings}



CREDENTIALS_DIR = "SAFEBUS_KAFKA_CREDENTIALS_DIR"
"""
A directory of ``<principal>.password`` files, one per component: with it, ``safebus up`` runs each
supervised worker as its own principal (`component_environment`) instead of the operator's.
"""


def component_environment(principal: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    The settings that make a supervised component `principal` on the cluster: its username and password file.

    Why a directory rather than a variable per component: the same operator's
    shell starts every worker (``safebus up``), and each must still present
    only its own identity, which the ACLs (`safebus.deploy.acls.COMPONENTS`)
    grant exactly what that component needs.  Empty when `CREDENTIALS_DIR` is
    unset (every worker is then the operator's principal, as on the local
    plaintext broker).  Raises `ConfigError` naming the setting when the
    directory or the component's file is missing, or the transport is not
    ``SASL_SSL``.
    """
    variables = os.environ if env is None else env
    directory = variables.get(CREDENTIALS_DIR)
    if not directory:
        return {}
    protocol = variables.get(VARIABLES["security_protocol"], SecurityProtocol.PLAINTEXT.value)
    if protocol != SecurityProtocol.SASL_SSL.value:
        raise ConfigError(f"{CREDENTIALS_DIR} holds SCRAM passwords, sent only over SASL_SSL, but "
                          f"{VARIABLES['security_protocol']} is {protocol}")
    password_file = Path(directory) / f"{principal}.password"
    if not password_file.is_file():
        raise ConfigError(f"{CREDENTIALS_DIR}: no password file for component {principal!r} at {password_file}")
    return {VARIABLES["username"]: principal, VARIABLES["password_file"]: str(password_file)}
