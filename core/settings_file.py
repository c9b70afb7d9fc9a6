"""
An optional settings file: the same ``SAFEBUS_*`` settings as the environment, kept in one place.

Why a file at all: a partnership's machine runs a dozen commands and six
supervised workers, and an operator who must export fifteen variables in every
shell (and in cron, and in the service unit) will one day start a worker
without one.  ``SAFEBUS_SETTINGS_FILE`` names a dotenv file (``NAME=value``
lines, ``#`` comments, read with python-dotenv, the parser pydantic-settings
itself uses); `load_settings_file` puts its values into this process's
environment at start, before any component reads a setting, so every reader
(both Kafka client stacks, the SMTP relay, the gateway's limits, the workers
``safebus up`` starts) sees the same values without knowing a file exists.

What it will not do, each refused with the file's name and the line's key:

- hold a name that is not a setting (`KNOWN_SETTINGS`): a misspelt
  ``SAFEBUS_SMPT`` would otherwise be a silent no-op;
- hold a secret's value: passwords stay in their own files
  (``*_PASSWORD_FILE``), so the settings file can be shown and backed up;
- override the environment: a variable already set wins, so one command can
  still be run with one setting changed.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from dotenv import dotenv_values

from safebus.errors import ConfigError

__all__ = ["KNOWN_SETTINGS", "SETTINGS_FILE", "load_settings_file"]

SETTINGS_FILE = "SAFEBUS_SETTINGS_FILE"
"""The variable naming the optional settings file."""

KNOWN_SETTINGS = frozenset({
    "KAFKA_BOOTSTRAP_SERVERS",
    "SAFEBUS_HOME", "SAFEBUS_CACHE", "SAFEBUS_TOPIC_PREFIX", "SAFEBUS_LOG_LEVEL", "SAFEBUS_HEALTH_PORT_BASE",
    "SAFEBUS_MAX_EVENT_AGE_HOURS", "SAFEBUS_MAX_CLOCK_SKEW_SECONDS", "SAFEBUS_MAX_INCIDENT_AGE_DAYS",
    "SAFEBUS_KAFKA_SECURITY_PROTOCOL", "SAFEBUS_KAFKA_SASL_MECHANISM", "SAFEBUS_KAFKA_USERNAME",
    "SAFEBUS_KAFKA_PASSWORD_FILE", "SAFEBUS_KAFKA_CA_FILE", "SAFEBUS_KAFKA_CERT_FILE", "SAFEBUS_KAFKA_KEY_FILE",
    "SAFEBUS_KAFKA_CREDENTIALS_DIR", "SAFEBUS_REPLICATION_FACTOR", "SAFEBUS_MIN_INSYNC_REPLICAS",
    "SAFEBUS_CHECKPOINT_EVERY", "SAFEBUS_CHECKPOINT_SECONDS",
    "SAFEBUS_CALENDARS", "SAFEBUS_ENCOMPASS_POLICY", "SAFEBUS_DATABASE_URL",
    "SAFEBUS_SMTP", "SAFEBUS_MAIL_FROM", "SAFEBUS_INBOX_URL", "SAFEBUS_SMTP_SECURITY",
    "SAFEBUS_SMTP_USER", "SAFEBUS_SMTP_PASSWORD_FILE", "SAFEBUS_SMTP_CA",
    "SAFEBUS_WEB_TLS_CERT", "SAFEBUS_WEB_TLS_KEY",
    "SAFEBUS_GATEWAY_MAX_CONNECTIONS", "SAFEBUS_GATEWAY_MAX_CONNECTIONS_PER_SOURCE",
    "SAFEBUS_GATEWAY_REQUEST_TIMEOUT_S", "SAFEBUS_GATEWAY_KEEPALIVE_S", "SAFEBUS_GATEWAY_MAX_REQUESTS_PER_CONNECTION",
    "SAFEBUS_GATEWAY_RATE_PER_S", "SAFEBUS_GATEWAY_BURST",
})
"""
Every setting a file may hold (tests/unit/behaviours keeps it equal to what the package reads and
README documents).  Not here: the settings file's own name, and the one-off secrets
``SAFEBUS_DEMO_PASSWORD`` and ``SAFEBUS_NEW_PASSWORD``.
"""


def load_settings_file(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """
    Put the settings file's values into `environ` (default: this process's) where not already set.

    Returns the file read, or None when `SETTINGS_FILE` is unset.  Raises `ConfigError` naming the file
    and the offending key for an unreadable file, an unknown name, a line without a value, or a password.
    """
    env = os.environ if environ is None else environ
    named = env.get(SETTINGS_FILE)
    if not named:
        return None
    path = Path(named).expanduser()
    if not path.is_file():
        raise ConfigError(f"{SETTINGS_FILE}: no file at {path}")
    try:
        values = dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{SETTINGS_FILE}: cannot read {path}: {exc}") from exc
    for name, value in values.items():
        if name not in KNOWN_SETTINGS:
            hint = " (passwords go in their own files: *_PASSWORD_FILE)" if "PASSWORD" in name else ""
            raise ConfigError(f"{path}: {name} is not a safebus setting{hint}")
        if value is None:
            raise ConfigError(f"{path}: {name} has no value (write {name}=...)")
    for name, value in values.items():
        if value is not None:
            env.setdefault(name, value)
    return path
