"""
Errors raised by safebus, one base and a subclass per failure domain.

The hierarchy::

    SafebusError
    ├── ConfigError          a setting, key file or agreement file is wrong
    ├── BrokerError          the local Kafka broker could not be fetched, started or reached
    ├── EnvelopeError        an envelope could not be built
    │   └── InvalidEnvelope  an envelope failed verification or decryption (one opaque error)
    └── RoutingError         an event could not be routed (bad payload for its type)

`InvalidEnvelope` deliberately carries only a short *reason code*: a sender that
forges or tampers learns nothing from the error beyond "rejected", while our own
dead-letter record keeps the code so an operator can see which check failed.
"""

from __future__ import annotations


class SafebusError(Exception):
    """Base of every error safebus raises on purpose."""

    def diagnostics(self) -> str:
        """Return a human-readable explanation for a command-line user."""
        return str(self)


class ConfigError(SafebusError):
    """A setting, key file or agreement file is missing or malformed."""


class BrokerError(SafebusError):
    """The local Kafka broker could not be fetched, started, stopped or reached."""


class EnvelopeError(SafebusError):
    """An envelope could not be sealed (for example, no key for the recipient)."""


class InvalidEnvelope(EnvelopeError):
    """
    An envelope failed one of the opening checks.

    `reason` is one of a small set of codes (``malformed``, ``unknown-sender``,
    ``bad-signature``, ``wrong-recipient``, ``undecryptable``) suitable for a
    dead-letter header; it never contains payload content.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid envelope: {reason}")
        self.reason = reason


class RoutingError(SafebusError):
    """A decrypted payload could not be validated or routed."""
