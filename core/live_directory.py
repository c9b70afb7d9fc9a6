"""
The directory a running worker reads, kept current from the signed directory topic.

Why: a worker that loads the directory once at start-up keeps sealing for,
opening with and routing to the agencies it saw then.  After a key rotation it
dead-letters what was sealed for the new key (``wrong-recipient``); a school
added while it runs receives nothing; a retired agency keeps receiving.  A
`LiveDirectory` follows ``<prefix>.reference.agencies`` (the compacted topic
`safebus.app.agency_admin.publish_entries` writes) and this machine's directory
file, and swaps in a new `Directory` whenever either brings a change.

How each entry is admitted: exactly as the start-up load does
(`PartnershipStore.load_directory`): `verify_entry` against this machine's
trust anchor (the partnership root key) and its expiry, else refused and
logged.  Per agency the entry with the latest ``issued_at`` wins, whichever
source it came from; so a replayed older entry on the topic cannot undo a
rotation, and an entry can only be replaced by one the root key signed later.
Every signed entry carries all of an agency's key generations, so superseded
keys stay in the directory for reading what was sealed or signed before a
rotation (until an administrator retires them).

Reading is lock-free: the current `Directory` (a frozen model) is replaced by
one attribute assignment, so a reader sees the old or the new directory,
never a mixture.  `version` counts the swaps; a worker compares it in its own
loop to know when to refresh what it derived from the directory (hosted
agencies, keyrings, subscriptions) on its own thread, where its Kafka
consumer lives.

The reader is confluent-kafka with manual assignment from the beginning of
the topic (no consumer group, no commits: every worker reads the whole
compacted topic, and reading changes nothing for anyone else).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from safebus.clock import utc_now
from safebus.directory import Agency, Directory, PartnershipStore, SignedAgency, verify_entry
from safebus.errors import ConfigError
from safebus.kafka_security import READER_GROUP_PREFIX, client_config
from safebus.logs import get_logger

__all__ = ["DerivedMapping", "LiveDirectory", "Refresher", "WatchTiming", "follow", "following"]

_log = get_logger("live_directory")
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, kw_only=True)
class WatchTiming:
    """How often the watcher looks; one stated place for the delays a directory change can take to arrive."""

    poll: timedelta = timedelta(milliseconds=200)
    """Longest wait for a record on the topic before the file and expiries are checked again."""
    catch_up: timedelta = timedelta(seconds=10)
    """How long `start` waits for the topic's existing entries before returning with what it has."""
    missing_topic_retry: timedelta = timedelta(seconds=2)
    """How often a watcher whose topic does not exist yet looks for it again."""


class LiveDirectory:
    """
    The current verified directory of one worker, swapped atomically when the signed directory changes.

    Construct with the directory loaded at start-up (or use `start`), then feed
    it signed entries (`offer`, `offer_file`) or let `watch` read them from the
    topic in a background thread.  Call the object (or `current`) to read.
    """

    def __init__(self, *, store: PartnershipStore, initial: Directory, clock: Callable[[], datetime] = utc_now,
                 root: Ed25519PublicKey | None = None) -> None:
        """Start from `initial` (already verified, e.g. `store.load_directory()`); `clock` dates expiry checks."""
        self.store = store
        self.clock = clock
        self._root = root or store.trust_anchor()
        self._partnership = initial.partnership
        self._entries: dict[str, Agency] = {a.id: a for a in initial.agencies}
        self._directory = initial
        self._next_expiry = min((a.expires_at for a in initial.agencies), default=datetime.max.replace(tzinfo=UTC))
        self._version = 0
        self._lock = threading.Lock()  # serialises writers; readers never take it
        self._file_stamp: tuple[int, int, int] | None = self._stamp()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._caught_up = threading.Event()

    # ------------------------------------------------------------------ reading

    def current(self) -> Directory:
        """
        The directory as of now (a frozen object: keep it for one record, ask again for the next).

        Each call also looks at this machine's directory file (one ``stat``), so
        a local administrator's change applies at the next record, with or
        without a broker; the topic is read by the watcher thread.
        """
        self.offer_file()
        return self._directory

    @property
    def watching(self) -> bool:
        """Whether a background reader follows the directory topic."""
        return self._thread is not None

    @property
    def caught_up(self) -> bool:
        """Whether the watcher has read what the topic held when it started (or found nothing to read)."""
        return self._caught_up.is_set()

    __call__ = current

    @property
    def version(self) -> int:
        """How many times the directory has changed since start-up (compare to notice a change)."""
        return self._version

    # ------------------------------------------------------------------ feeding

    def offer(self, signed: Iterable[SignedAgency]) -> list[str]:
        """
        Take signed entries (from the topic); return the ids of agencies whose entry changed.

        Each entry is verified as the start-up load verifies it; refused ones are
        logged and ignored.  An entry not newer (``issued_at``) than the one held
        changes nothing.
        """
        now = self.clock()
        admitted: list[Agency] = []
        for entry in signed:
            try:
                admitted.append(verify_entry(entry, self._root, now=now))
            except ConfigError as exc:
                _log.warning("directory_entry_refused", agency=entry.entry.id, reason=str(exc))
        return self._merge(admitted, now=now)

    def offer_raw(self, values: Iterable[bytes]) -> list[str]:
        """As `offer`, for record values as they are on the topic (what does not parse is logged and skipped)."""
        parsed = []
        for value in values:
            try:
                parsed.append(SignedAgency.model_validate_json(value))
            except (ValidationError, ValueError):
                _log.warning("directory_record_unreadable", size=len(value))
        return self.offer(parsed)

    def offer_file(self) -> list[str]:
        """Fold in this machine's directory file if it was rewritten since last looked at; return changed ids."""
        stamp = self._stamp()
        if stamp is None or stamp == self._file_stamp:
            now = self.clock()
            return self._merge([], now=now) if now >= self._next_expiry else []  # still drop what expired
        self._file_stamp = stamp
        try:
            loaded = self.store.load_directory(now=self.clock())
        except ConfigError as exc:
            _log.warning("directory_file_unreadable", reason=str(exc))
            return []
        return self._merge(list(loaded.agencies), now=self.clock(), newer_only=False)

    def _stamp(self) -> tuple[int, int, int] | None:
        # Every write replaces the file (a new inode), so a change is seen even within one timestamp tick.
        try:
            info = self.store.directory_path.stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns

    def _merge(self, agencies: list[Agency], *, now: datetime, newer_only: bool = True) -> list[str]:
        """
        Take `agencies` into the directory; swap it if anything changed.

        From the topic (`newer_only`) an entry replaces the one held only if
        the root key signed it later.  From this machine's file (rewritten by
        its administrator or by ``agency sync``) every changed entry is taken:
        the file is this machine's own latest word.
        """
        with self._lock:
            entries = dict(self._entries)
            changed = []
            for agency in agencies:
                held = entries.get(agency.id)
                if held is not None and (held == agency or (newer_only and held.issued_at > agency.issued_at)):
                    continue
                entries[agency.id] = agency
                changed.append(agency.id)
            expired = [i for i, a in entries.items() if a.expires_at <= now]
            for agency_id in expired:
                _log.warning("directory_entry_expired", agency=agency_id)
                del entries[agency_id]
            self._next_expiry = min((a.expires_at for a in entries.values()),
                                    default=datetime.max.replace(tzinfo=UTC))
            if not changed and not expired:
                return []
            self._entries = entries
            self._directory = Directory(partnership=self._partnership, agencies=tuple(entries.values()))
            self._version += 1
        _log.info("directory_changed", version=self._version, changed=changed, expired=expired,
                  agencies=len(entries))
        return [*changed, *expired]

    # ------------------------------------------------------------------ watching

    @classmethod
    def start(cls, store: PartnershipStore, *, bootstrap: str, topic: str,
              clock: Callable[[], datetime] = utc_now, timing: WatchTiming | None = None) -> LiveDirectory:
        """
        Load the directory as every worker does at start-up, then follow `topic` in a daemon thread.

        Returns once the topic's existing entries have been read (or after
        ``timing.catch_up``, with what was read by then: the directory file
        already gave a verified directory to start from).  Raises ConfigError
        when the local directory or trust anchor is missing or invalid.
        """
        live = cls(store=store, initial=store.load_directory(now=clock()), clock=clock)
        live.watch(bootstrap=bootstrap, topic=topic, timing=timing)
        return live

    def watch(self, *, bootstrap: str, topic: str, timing: WatchTiming | None = None, wait: bool = True) -> None:
        """Follow `topic` (and the directory file) in a daemon thread until `close`; `wait` for the catch-up."""
        chosen = timing or WatchTiming()
        self._thread = threading.Thread(target=self._follow, args=(bootstrap, topic, chosen),
                                        name="live-directory", daemon=True)
        self._thread.start()
        if wait and not self._caught_up.wait(chosen.catch_up.total_seconds()):
            _log.warning("directory_catch_up_slow", topic=topic, waited_s=chosen.catch_up.total_seconds())

    def close(self) -> None:
        """Stop following (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=0.5)  # a daemon: one stuck in a broker call ends with the process

    def _follow(self, bootstrap: str, topic: str, timing: WatchTiming) -> None:
        consumer = Consumer(client_config(
            bootstrap,
            **{"group.id": f"{READER_GROUP_PREFIX}-live-directory-{uuid.uuid4().hex}",  # required; never joined
               "enable.auto.commit": False,
               "enable.partition.eof": True,
               "isolation.level": "read_committed",
               "logger": logging.getLogger("safebus.librdkafka")},
        ))
        try:
            pending = self._assign(consumer, topic, timing)
            while not self._stop.is_set():
                if pending is None:
                    self.offer_file()
                    self._serve_events(consumer, timing)
                    pending = self._assign(consumer, topic, timing)
                    continue
                values = []
                for message in consumer.consume(num_messages=500, timeout=timing.poll.total_seconds()):
                    error = message.error()
                    if error is None:
                        values.append(message.value() or b"")
                    elif error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition() or 0)
                    else:
                        _log.warning("directory_topic_error", topic=topic, error=str(error))
                if values:
                    self.offer_raw(values)
                self.offer_file()
                if not pending:
                    self._caught_up.set()
        except Exception:  # noqa: BLE001 - the worker keeps its last directory; say so loudly
            _log.exception("directory_watch_failed", topic=topic)
        finally:
            self._caught_up.set()
            consumer.close()

    def _serve_events(self, consumer: Consumer, timing: WatchTiming) -> None:
        """
        Wait out `missing_topic_retry` polling the consumer, not sleeping beside it.

        librdkafka queues its errors and log lines (a broker that refuses
        connections gives a steady stream) until the client is polled; a
        watcher that only slept grew the gateway's memory ~17 KB a second while
        the broker was away (bench/README.md, gateway soak). Nothing is
        assigned, so the polls return no records.
        """
        deadline = time.monotonic() + timing.missing_topic_retry.total_seconds()
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            consumer.poll(min(left, timing.poll.total_seconds()))

    def _assign(self, consumer: Consumer, topic: str, timing: WatchTiming) -> set[int] | None:
        """Assign every partition of `topic` from the beginning; None (and caught up) while it does not exist."""
        try:
            info = consumer.list_topics(topic, timeout=timing.missing_topic_retry.total_seconds()).topics.get(topic)
        except KafkaException as exc:
            _log.warning("directory_topic_unavailable", topic=topic, error=str(exc))
            info = None
        if info is None or info.error is not None or not info.partitions:
            self._caught_up.set()  # nothing to catch up with: the file is the directory for now
            return None
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions])
        return set(info.partitions)


def follow(directory: Callable[[], Directory], *, bootstrap: str, topic: str, wait: bool = False) -> None:
    """
    Start following the directory topic if `directory` is a `LiveDirectory` not yet watching it.

    Each worker's ``run`` calls this, so every running worker follows the
    topic while building one (tests, commands that only read) needs no broker.
    The worker starts from the directory file at once (`wait` to first read
    what the topic already holds).
    """
    if isinstance(directory, LiveDirectory) and not directory.watching:
        directory.watch(bootstrap=bootstrap, topic=topic, wait=wait)


@contextlib.contextmanager
def following(directory: Callable[[], Directory], *, bootstrap: str, topic: str) -> Iterator[None]:
    """`follow` for the duration of a worker's run: a watcher started here is stopped when the run ends."""
    started = isinstance(directory, LiveDirectory) and not directory.watching
    follow(directory, bootstrap=bootstrap, topic=topic)
    try:
        yield
    finally:
        if started and isinstance(directory, LiveDirectory):
            directory.close()


class Refresher:
    """
    Tells a worker, on its own thread, when the live directory changed since it last asked.

    Workers derive state from the directory (the agencies they host, their
    keyrings, their subscriptions); `changed()` is the cheap check in their
    loop that says it is time to derive it again.
    """

    def __init__(self, directory: Callable[[], Directory]) -> None:
        """Follow `directory`: a `LiveDirectory` notices swaps by version; any other callable by identity."""
        self.directory = directory
        self._seen: object = self._mark()

    def _mark(self) -> object:
        current = self.directory()  # a LiveDirectory looks at its file here
        return self.directory.version if isinstance(self.directory, LiveDirectory) else id(current)

    def changed(self) -> bool:
        """True once after each change of the directory."""
        mark = self._mark()
        if mark == self._seen:
            return False
        self._seen = mark
        return True


class DerivedMapping(Mapping[K, V]):
    """
    A mapping derived from the directory (URN by school id, settings by URN), derived again after each change.

    For components that take a plain mapping and look things up in it per
    record: given this instead, they see agencies published after they started.
    """

    def __init__(self, directory: Callable[[], Directory], derive: Callable[[Directory], Mapping[K, V]]) -> None:
        """Derive from `directory` with `derive` now and whenever it has changed since the last look-up."""
        self.directory = directory
        self.derive = derive
        self._from = directory()
        self._mapping = derive(self._from)

    def _now(self) -> Mapping[K, V]:
        current = self.directory()
        if current is not self._from:
            self._from, self._mapping = current, self.derive(current)
        return self._mapping

    def __getitem__(self, key: K) -> V:
        """The value for `key` in the current directory's mapping."""
        return self._now()[key]

    def __iter__(self) -> Iterator[K]:
        """The keys of the current directory's mapping."""
        return iter(self._now())

    def __len__(self) -> int:
        """How many keys the current directory's mapping has."""
        return len(self._now())
