"""
The audit log's store: leaves in sequence, their Merkle tree, receipts and signed checkpoints.

One sequencer owns one ledger (docs/adr/0009-audit-log.md).  It is an RFC 9162
Merkle tree whose leaves are the canonical JSON of audit facts:

- **Appending is idempotent by fact id.**  Every fact on the bus has a
  deterministic or unique id and producers are at-least-once, so a fact seen
  again (redelivery, a second reader of the same dead letter) is not a new leaf.
  Leaves, their hashes and their receipts are written in one SQLite
  transaction before the sequencer commits its Kafka offsets: a crash anywhere
  re-reads and re-skips, and never leaves a hole.
- **Every leaf gets a receipt**: the log key's Ed25519 signature over (origin,
  index, leaf hash), in the spirit of Certificate Transparency's signed
  timestamps.  Checkpoints prove the tree as a whole; receipts let a verifier
  name *which* leaf of an exported log was changed, removed, inserted or moved,
  because a receipt binds its leaf to one position and nobody without the log
  key can issue one.
- **Checkpoints** are C2SP ``tlog-checkpoint`` notes signed by the log key, made
  at least every `checkpoint_every` leaves or `checkpoint_interval` of time, and
  kept here (and published by the sequencer).  Inclusion and consistency proofs
  are answered from an in-memory tree rebuilt from the stored leaf hashes at
  start-up (a million leaves: about a second and 64 MB).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safebus.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    sign_checkpoint,
)
from safebus.errors import SafebusError
from safebus.merkle import MerkleTree, leaf_hash
from safebus.private_files import create_private

__all__ = [
    "RECEIPT_CONTEXT",
    "AuditLedger",
    "Leaf",
    "LedgerImportError",
    "LogIdentity",
    "LogKey",
    "NewFact",
    "StoredCheckpoint",
    "receipt_message",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (
    idx         INTEGER PRIMARY KEY,
    fact_id     TEXT NOT NULL UNIQUE,
    fact_type   TEXT NOT NULL,
    body        BLOB NOT NULL,
    leaf_hash   BLOB NOT NULL,
    receipt     BLOB NOT NULL,
    appended_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       BLOB NOT NULL,
    created_at TEXT NOT NULL
);
"""

RECEIPT_CONTEXT = b"safebus-leaf-receipt/1\n"


def receipt_message(origin: str, index: int, hashed: bytes) -> bytes:
    """What a leaf receipt signs: the log, the leaf's position and its hash (so it fits one place only)."""
    return RECEIPT_CONTEXT + f"{origin}\n{index}\n{hashed.hex()}\n".encode()


@dataclass(frozen=True)
class LogIdentity:
    """Who a log is: its origin line and public key (what a verifier needs, and all it needs)."""

    origin: str
    public_key: Ed25519PublicKey

    @property
    def verifier(self) -> NoteVerifier:
        """The checkpoint-note verifier for this log's key."""
        return NoteVerifier.from_public_key(self.origin, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key in the signed-note text form (``name+keyid+base64``), to publish and pin."""
        return self.verifier.text

    @classmethod
    def from_vkey(cls, vkey: str) -> LogIdentity:
        """The identity a pinned verifier key names."""
        verifier = NoteVerifier.from_text(vkey)
        return cls(origin=verifier.name, public_key=verifier.public_key)

    def check_receipt(self, index: int, hashed: bytes, receipt: bytes) -> bool:
        """Whether `receipt` is this log's signature for leaf `hashed` at `index`."""
        try:
            self.public_key.verify(receipt, receipt_message(self.origin, index, hashed))
        except InvalidSignature:
            return False
        return True

    def open(self, note: bytes) -> Checkpoint:
        """A checkpoint note's body, once its signature by this log is checked (else CheckpointError)."""
        return open_checkpoint(note, self.verifier, origin=self.origin)


@dataclass(frozen=True)
class LogKey:
    """The log's private key: signs receipts and checkpoints.  Only the sequencer holds it."""

    origin: str
    private_key: Ed25519PrivateKey

    @property
    def identity(self) -> LogIdentity:
        """The public half, for verifiers."""
        return LogIdentity(self.origin, self.private_key.public_key())

    def receipt(self, index: int, hashed: bytes) -> bytes:
        """Sign leaf `hashed` at `index`."""
        return self.private_key.sign(receipt_message(self.origin, index, hashed))

    def sign(self, checkpoint: Checkpoint) -> bytes:
        """The signed checkpoint note."""
        return sign_checkpoint(checkpoint, NoteSigner(self.origin, self.private_key))

    @classmethod
    def load_or_create(cls, path: Path, *, origin: str) -> LogKey:
        """The key at `path`, created (mode 0600) on first use."""
        fresh = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        create_private(path, fresh)  # kept only if no key is there; one that is (a racing process's) is narrowed
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(origin, loaded)


@dataclass(frozen=True, kw_only=True)
class Leaf:
    """One appended leaf as stored."""

    index: int
    fact_id: str
    fact_type: str
    body: bytes
    leaf_hash: bytes
    receipt: bytes
    appended_at: datetime


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    """A signed checkpoint as stored."""

    size: int
    root: bytes
    note: bytes
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class NewFact:
    """A fact to append: its id, type and leaf bytes."""

    fact_id: str
    fact_type: str
    body: bytes


class LedgerImportError(SafebusError, ValueError):
    """A leaf or checkpoint that cannot be imported where it claims to belong."""


class AuditLedger:
    """The audit log's leaves, tree and checkpoints in one SQLite file."""

    def __init__(self, path: Path, key: LogKey | None, *, identity: LogIdentity | None = None,
                 checkpoint_every: int = 1000, checkpoint_interval: timedelta = timedelta(seconds=10)) -> None:
        """
        Open (or create) the ledger and rebuild its tree from the stored leaf hashes.

        Without `key` the ledger is read-only (for readers such as the
        dashboard, which must not hold the log's private key): pass the log's
        public `identity` instead; appending and checkpointing then fail.
        """
        if key is None and identity is None:
            raise ValueError("a ledger needs the log key, or its public identity to open it read-only")
        self.path = path
        self._key = key
        self._identity = identity or (key.identity if key else None)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._tree = MerkleTree.from_leaf_hashes(
            bytes(row[0]) for row in self._db.execute("SELECT leaf_hash FROM leaves ORDER BY idx"))

    def set_aside(self, *, now: datetime) -> Path:
        """
        Move this ledger's file aside (kept for investigation, never deleted) and carry on empty; return where.

        For a sequencer that was fenced: it appended leaves its successor never saw, so its ledger is
        no longer a prefix of the log on the bus (`safebus.consumers.audit.leaf_follower.LedgerForked`).
        It starts again from the leaves topic; the facts of those leaves are re-read by the successor,
        whose offsets they were never committed under.
        """
        self.close()  # folds the write-ahead log in: the one file is the whole ledger
        aside = self.path.with_name(f"{self.path.stem}.set-aside-{now:%Y%m%dT%H%M%S%fZ}{self.path.suffix}")
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._open()
        return aside

    @property
    def key(self) -> LogKey:
        """The log's private key (only the sequencer's ledger has it)."""
        if self._key is None:
            raise PermissionError("this ledger is open read-only: only the sequencer holds the log key")
        return self._key

    @property
    def identity(self) -> LogIdentity:
        """The log's public identity."""
        assert self._identity is not None
        return self._identity

    @property
    def size(self) -> int:
        """How many leaves the log holds (including any another process appended since we looked)."""
        self.refresh()
        return self._tree.size

    def refresh(self) -> int:
        """Take in leaves appended by the sequencer since this ledger was opened; return how many."""
        rows = self._db.execute("SELECT leaf_hash FROM leaves WHERE idx >= ? ORDER BY idx",
                                (self._tree.size,)).fetchall()
        for (hashed,) in rows:
            self._tree.append(bytes(hashed))
        return len(rows)

    def append(self, facts: list[NewFact], *, now: datetime) -> list[int]:
        """Append the facts not already in the log, in order; return the new leaves' indexes."""
        known = self._known([f.fact_id for f in facts])
        rows, hashes, seen = [], [], set(known)
        index = self.size
        for fact in facts:
            if fact.fact_id in seen:
                continue
            seen.add(fact.fact_id)
            hashed = leaf_hash(fact.body)
            rows.append((index, fact.fact_id, fact.fact_type, fact.body, hashed, self.key.receipt(index, hashed),
                         now.isoformat()))
            hashes.append(hashed)
            index += 1
        if rows:
            with self._transaction():
                self._db.executemany("INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            for hashed in hashes:
                self._tree.append(hashed)
        return [row[0] for row in rows]

    def _known(self, fact_ids: list[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(fact_ids), 500):
            chunk = fact_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(r[0] for r in self._db.execute(f"SELECT fact_id FROM leaves WHERE fact_id IN ({marks})",  # noqa: S608
                                                        chunk))
        return known

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def root(self, size: int | None = None) -> bytes:
        """The Merkle tree hash of the first `size` leaves (all of them by default)."""
        self.refresh()
        return self._tree.root(self.size if size is None else size)

    def checkpoint_due(self, now: datetime) -> bool:
        """Whether new leaves have waited long enough, or are numerous enough, for a checkpoint."""
        latest = self.latest_checkpoint()
        covered = latest.size if latest else 0
        if self.size == covered:
            return False
        if self.size - covered >= self.checkpoint_every:
            return True
        return latest is None or now - latest.created_at >= self.checkpoint_interval

    def make_checkpoint(self, *, now: datetime) -> StoredCheckpoint | None:
        """Sign and store a checkpoint of the whole log, unless the latest one already covers it."""
        latest = self.latest_checkpoint()
        if latest is not None and latest.size == self.size:
            return None
        root = self.root()
        note = self.key.sign(Checkpoint(origin=self.key.origin, size=self.size, root_hash=root))
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?)",
                             (self.size, root, note, now.isoformat()))
        return StoredCheckpoint(size=self.size, root=root, note=note, created_at=now)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint covering the most leaves."""
        row = self._db.execute("SELECT size, root, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1"
                               ).fetchone()
        return _checkpoint(row) if row else None

    def checkpoints(self, *, larger_than: int = -1) -> list[StoredCheckpoint]:
        """Every stored checkpoint (or those of more than `larger_than` leaves), smallest first."""
        rows = self._db.execute("SELECT size, root, note, created_at FROM checkpoints WHERE size > ? ORDER BY size",
                                (larger_than,)).fetchall()
        return [_checkpoint(row) for row in rows]

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint of exactly `size` leaves, if one was made."""
        row = self._db.execute("SELECT size, root, note, created_at FROM checkpoints WHERE size = ?",
                               (size,)).fetchone()
        return _checkpoint(row) if row else None

    def index_of(self, fact_id: str) -> int | None:
        """The leaf index of fact `fact_id`, if appended."""
        row = self._db.execute("SELECT idx FROM leaves WHERE fact_id = ?", (fact_id,)).fetchone()
        return int(row[0]) if row else None

    def leaf(self, index: int) -> Leaf:
        """Leaf `index` (IndexError beyond the log)."""
        row = self._db.execute("SELECT * FROM leaves WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise IndexError(f"no leaf {index}: the log has {self.size}")
        return _leaf(row)

    def leaves(self, start: int = 0, *, batch: int = 5000) -> Iterator[Leaf]:
        """Every leaf from index `start`, in order (read in batches, so a million leaves stream)."""
        position = start
        while True:
            rows = self._db.execute("SELECT * FROM leaves WHERE idx >= ? ORDER BY idx LIMIT ?",
                                    (position, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield _leaf(row)
            position = int(rows[-1][0]) + 1

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves."""
        self.refresh()
        return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof that the tree of `new_size` extends that of `old_size`."""
        self.refresh()
        return self._tree.consistency_proof(old_size, new_size)

    def import_leaves(self, leaves: Iterable[Leaf]) -> int:
        """
        Append `leaves` exactly as another ledger stored them (a rebuild from the leaves topic); return how many.

        Each must come next (index = size), hash to its body and carry this log's receipt for its place;
        anything else raises `LedgerImportError` and none of `leaves` is stored (one transaction: the
        caller hands them over in batches).  No key is needed: the receipts are the original sequencer's.
        """
        rows: list[tuple[object, ...]] = []
        hashes: list[bytes] = []
        size = self.size
        for leaf in leaves:
            expected = size + len(rows)
            if leaf.index != expected:
                raise LedgerImportError(f"leaf {leaf.index} where leaf {expected} comes next")
            if leaf.leaf_hash != leaf_hash(leaf.body):
                raise LedgerImportError(f"leaf {leaf.index}: its hash is not its body's")
            if not self.identity.check_receipt(leaf.index, leaf.leaf_hash, leaf.receipt):
                raise LedgerImportError(f"leaf {leaf.index}: its receipt is not this log's signature")
            rows.append((leaf.index, leaf.fact_id, leaf.fact_type, leaf.body, leaf.leaf_hash, leaf.receipt,
                         leaf.appended_at.isoformat()))
            hashes.append(leaf.leaf_hash)
        if rows:
            with self._transaction():
                self._db.executemany("INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            for hashed in hashes:
                self._tree.append(hashed)
        return len(rows)

    def import_checkpoint(self, note: bytes, *, created_at: datetime) -> StoredCheckpoint:
        """
        Store a checkpoint note this log signed, once it matches the leaves held (`LedgerImportError` if not).
        """
        try:
            checkpoint = self.identity.open(note)
        except CheckpointError as exc:
            raise LedgerImportError(f"a checkpoint note this log did not sign: {exc}") from exc
        if checkpoint.size > self.size:
            raise LedgerImportError(f"checkpoint of {checkpoint.size} leaves, but only {self.size} are held")
        root = self.root(checkpoint.size)
        if checkpoint.root_hash != root:
            raise LedgerImportError(f"checkpoint of {checkpoint.size} leaves: its root is not the leaves' root")
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?)",
                             (checkpoint.size, root, note, created_at.isoformat()))
        return StoredCheckpoint(size=checkpoint.size, root=root, note=note, created_at=created_at)

    def close(self) -> None:
        """Close the database."""
        self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error): one fsync per batch, not per leaf."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _leaf(row: tuple[object, ...]) -> Leaf:
    index, fact_id, fact_type, body, hashed, receipt, appended_at = row
    return Leaf(index=int(str(index)), fact_id=str(fact_id), fact_type=str(fact_type), body=bytes(body),  # type: ignore[call-overload]
                leaf_hash=bytes(hashed), receipt=bytes(receipt),  # type: ignore[call-overload]
                appended_at=datetime.fromisoformat(str(appended_at)))


def _checkpoint(row: tuple[object, ...]) -> StoredCheckpoint:
    size, root, note, created_at = row
    return StoredCheckpoint(size=int(str(size)), root=bytes(root), note=bytes(note),  # type: ignore[call-overload]
                            created_at=datetime.fromisoformat(str(created_at)))
