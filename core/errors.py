"""
Errors raised by safebus, one base and a subclass per failure domain.

The hierarchy (each public error class in the package, where it lives, and any builtin it also is,
so an ``except ValueError`` written before it joined the tree still catches it)::

    SafebusError
    ├── ConfigError                  a setting, key file or agreement file is wrong
    │   └── CalendarError            consumers.encompass.calendars: a calendar file or calendar is invalid
    │       └── CalendarHorizonError   a date lies outside what the loaded calendar knows
    ├── BrokerError                  the local Kafka broker could not be fetched, started or reached
    ├── SupervisionError             supervisord (the workers' supervisor) could not be configured, started or stopped
    ├── WriterFenced                 fenced_producer: another instance of a single writer has taken over
    ├── EnvelopeError                an envelope could not be built
    │   └── InvalidEnvelope          an envelope failed verification or decryption (one opaque error)
    ├── RoutingError                 an event could not be routed (bad payload for its type)
    ├── JsonRefused                  bounded_json, also ValueError: bytes that are not acceptable JSON
    ├── CheckpointError              checkpoint, also ValueError: a checkpoint, note or key is bad
    ├── ProofError                   merkle, also ValueError: an inclusion or consistency proof fails
    ├── UnattributedFact             fact_signing, also ValueError: an audit record's author cannot be told
    ├── NotAFact                     consumers.audit.facts, also ValueError: a record that is not a fact
    ├── NotALeaf                     consumers.audit.leaf_records, also ValueError: a record that is not a leaf
    ├── LedgerImportError            consumers.audit.ledger, also ValueError: a leaf or checkpoint out of place
    ├── LedgerForked                 consumers.audit.leaf_follower: a ledger the leaves topic contradicts
    ├── QueryError                   consumers.audit, also ValueError: an audit query's parameters are bad
    ├── MigrationError               migrations: a store's schema could not be read or brought up to date
    ├── NotInQueue                   consumers.queues.store: a referral id not in this recipient's queue
    └── Throttled                    consumers.web.sign_in_throttle: a sign-in refused before its check

tests/architecture/test_error_tree.py holds the package to this drawing: every public exception
class it defines is a `SafebusError`, and the names drawn here are exactly the ones that exist, so
a new error class fails until it is drawn. Private exceptions (a leading underscore: `_Refused` in
jcs, the gateway's `_Refusal`, the audit web's `_BadRequest`, the calendars' `_Problems`) are
control flow inside one module, caught there and never seen by a caller; they may stay outside.

`InvalidEnvelope` deliberately carries only a short *reason code*: a sender that
forges or tampers learns nothing from the error beyond "rejected", while our own
dead-letter record keeps the code so an operator can see which check failed.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ConfigError",
    "EnvelopeError",
    "InvalidEnvelope",
    "RoutingError",
    "SafebusError",
    "SupervisionError",
]


class SafebusError(Exception):
    """Base of every error safebus raises on purpose."""

    def diagnostics(self) -> str:
        """Return a human-readable explanation for a command-line user."""
        return str(self)


class ConfigError(SafebusError):
    """A setting, key file or agreement file is missing or malformed."""


class BrokerError(SafebusError):
    """The local Kafka broker could not be fetched, started, stopped or reached."""


class SupervisionError(SafebusError):
    """supervisord, which runs the long-running workers, could not be configured, started, reached or stopped."""


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
