"""
Crypto benchmark: what the envelope's cryptography costs per event, and where that time goes.

The thin-path benchmark reports throughput of the whole bus, but not how much of
each event's CPU time is signing, key agreement and encryption.  This one does,
for the two envelopes that carry personal data on the hot path:

- a **police incident** as `PolicePublisher` seals it for the router: a
  realistic `IncidentFactory` incident (fixed seed) naming 3-5 people, so the
  content key is derived from 3-5 subject keys;
- a **school notification** (`EncompassNotification`) as the processor seals it
  for one school: one child, so one subject key.

For each it times `seal` and `open_envelope` whole, then the primitives inside
them, called on the same inputs through the `cryptography` package exactly as
``core/envelope.py`` calls them (Ed25519 sign / verify; X25519 + HKDF-SHA256 +
AES-256-GCM key wrap / unwrap; content-key HKDF-SHA256 + AES-256-GCM
encrypt / decrypt).  Before timing anything the run proves the copies are
faithful: the mirrored open reads envelopes from the real `seal`, and an
envelope built by the mirrored seal opens with the real `open_envelope`.  For
context it also times AES-256-GCM alone on the same plaintext and the event's
``model_dump_json``.

Subject keys come from an in-memory dict, so file I/O stays out of the crypto
numbers; the cost of `FileKeyService` (one 0600 file per key) is measured on its
own, per key and per event.

Every call is timed on its own with `time.perf_counter_ns`, after a warm-up,
in several interleaved rounds (so drift on a shared machine hits every
measurement alike), with the garbage collector paused during timed blocks.
Median and p99 are over all timed calls; the per-round medians show stability.

Usage::

    python bench/crypto.py [--iterations N] [--seed S]

The last line printed is a JSON object with every number; it is also written to
``bench/results/crypto.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from safebus.b64 import b64d, b64e
from safebus.directory import PartnershipStore
from safebus.envelope import open_envelope, seal, seal_event
from safebus.jcs import canonical_json
from safebus.keys import PrivateKeys, PublicKeys
from safebus.keyservice import FileKeyService, SubjectKey, period_of
from safebus.processors.agreements import load_agreements
from safebus.processors.engine import SharingEngine
from safebus.producers.synthetic import POLICE_ID, IncidentFactory, create_partnership
from safebus.pseudonyms import Tokeniser
from safebus.publisher import subject_tokens
from safebus.schemas._base import Event
from safebus.schemas.registry import Family
from safebus.topics import TopicNames

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "crypto.json"
FIXED_NOW = datetime(2026, 11, 18, 21, 30, tzinfo=UTC)
"""Sealing time and the factory's clock: fixed, so the same seed gives the same headers and plaintexts."""
DEFAULT_SEED = 20261118
POOL_SIZE = 16
"""Events per scenario; timed calls cycle through them so no single event's sizes decide the result."""
SUBJECTS_MIN, SUBJECTS_MAX = 3, 5
"""Incidents naming this many people (subject keys) are kept: the typical household of a school alert."""
ROUNDS = 10
"""Interleaved rounds: every measurement runs once per round, so slow periods are shared, not concentrated."""
ROUND_WARMUP = 20
"""Untimed calls at the start of each measurement's block in each round (caches after the switch)."""
MAX_DRAWS = 10_000
"""Give up drawing incidents after this many (only reachable if the factory changes shape)."""

# The envelope's HKDF info strings, from docs/envelope.md.  They are private in
# core/envelope.py; `check_mirror` proves these copies match by round-tripping
# through the real seal and open.
WRAP_INFO = b"safebus-envelope/1 key-wrap"
CONTENT_INFO = b"safebus-envelope/1 content"


def say(line: str = "") -> None:
    """Print progress immediately (output may be piped)."""
    print(line, flush=True)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Command-line choices for one run."""

    iterations: int
    seed: int

    @property
    def warmup(self) -> int:
        """Untimed calls per measurement before the first round: enough to fill caches, small next to N."""
        return max(50, self.iterations // 10)


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    """Parse the command line; the defaults are the ones results are compared at."""
    parser = argparse.ArgumentParser(
        description="Per-event cost of the safebus envelope's cryptography (sign, verify, encrypt, decrypt).")
    parser.add_argument("--iterations", type=int, default=2000,
                        help="timed calls per measurement (default 2000; median and p99 are over these)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"IncidentFactory and tokeniser seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    if args.iterations < ROUNDS:
        parser.error(f"--iterations must be at least {ROUNDS} (one per round)")
    return BenchConfig(iterations=args.iterations, seed=args.seed)


# --------------------------------------------------------------------------- the envelope's steps, mirrored


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def mirror_wrap(recipient: X25519PublicKey, aad: bytes) -> tuple[bytes, bytes]:
    """
    Sealing step 1: fresh data key, ephemeral X25519 agreement, HKDF to a key-encryption key, AES-GCM wrap.

    Returns (data key, wrapped_key field).  The data key and nonce are drawn here
    because `seal` draws them per event too.
    """
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce = os.urandom(12)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(recipient)
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + _raw(recipient),
               info=WRAP_INFO).derive(shared)
    return data_key, ephemeral_public + wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, data_key, aad)


def mirror_encrypt(data_key: bytes, secrets: Sequence[bytes], plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """Sealing steps 2-3: content key = HKDF(data key ‖ subject secrets), then AES-256-GCM; returns (nonce, ct)."""
    nonce = os.urandom(12)
    content_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=CONTENT_INFO).derive(
        data_key + b"".join(secrets))
    return nonce, AESGCM(content_key).encrypt(nonce, plaintext, aad)


def mirror_unwrap(recipient: X25519PrivateKey, recipient_public: X25519PublicKey, wrapped_key: bytes,
                  aad: bytes) -> bytes:
    """Opening step 7a: X25519 with the envelope's ephemeral key, HKDF, AES-GCM unwrap; returns the data key."""
    ephemeral_public, wrap_nonce, wrapped = wrapped_key[:32], wrapped_key[32:44], wrapped_key[44:]
    shared = recipient.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + _raw(recipient_public),
               info=WRAP_INFO).derive(shared)
    return AESGCM(kek).decrypt(wrap_nonce, wrapped, aad)


def mirror_decrypt(data_key: bytes, secrets: Sequence[bytes], nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Opening step 7b: the same content-key HKDF, then AES-256-GCM decrypt."""
    content_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=CONTENT_INFO).derive(
        data_key + b"".join(secrets))
    return AESGCM(content_key).decrypt(nonce, ciphertext, aad)


# --------------------------------------------------------------------------- events to seal


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One event with everything its timings need, parsed once from an envelope the real `seal_event` made."""

    event: Event
    plaintext: bytes
    sender: PrivateKeys
    recipient: PrivateKeys
    topic: str
    subject_keys: tuple[SubjectKey, ...]
    envelope: bytes
    aad: bytes
    """The canonical header: associated data of both encryptions."""
    signed_body: bytes
    """Canonical JSON of the envelope without its signature: what Ed25519 signs."""
    signature: bytes
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes

    @property
    def key_ids(self) -> list[str]:
        """Subject key ids in header order (sorted, as `seal` writes them)."""
        return sorted({key.key_id for key in self.subject_keys})

    @property
    def secrets(self) -> list[bytes]:
        """Subject secrets in header order: the order the content-key HKDF takes them in."""
        by_id = {key.key_id: key.secret for key in self.subject_keys}
        return [by_id[key_id] for key_id in self.key_ids]

    @property
    def senders(self) -> dict[str, PublicKeys]:
        """The directory a reader checks the signature against."""
        return {self.sender.agency_id: self.sender.public()}


def make_sample(event: Event, *, sender: PrivateKeys, recipient: PrivateKeys, topic: str,
                subject_keys: Sequence[SubjectKey]) -> Sample:
    """Seal `event` once for real and keep the parts the break-down timings feed to the primitives."""
    envelope = seal_event(event, sender=sender, recipient=recipient.public(), topic=topic, now=FIXED_NOW,
                          subject_keys=subject_keys)
    parsed = json.loads(envelope)
    body = {name: parsed[name] for name in ("header", "wrapped_key", "nonce", "ciphertext")}
    return Sample(
        event=event, plaintext=event.model_dump_json().encode(), sender=sender, recipient=recipient, topic=topic,
        subject_keys=tuple(subject_keys), envelope=envelope, aad=canonical_json(parsed["header"]),
        signed_body=canonical_json(body), signature=b64d(parsed["signature"]),
        wrapped_key=b64d(parsed["wrapped_key"]), nonce=b64d(parsed["nonce"]), ciphertext=b64d(parsed["ciphertext"]),
    )


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A kind of envelope and the pool of events it is measured on."""

    key: str
    title: str
    samples: tuple[Sample, ...]


def build_scenarios(state_dir: Path, seed: int) -> tuple[list[Scenario], FileKeyService]:
    """
    Draw seeded incidents and seal them as the bus does: police → router, and router → school.

    Incidents go through `subject_tokens` and `FileKeyService.subject_key` exactly
    as `AgencyPublisher.seal` does; notifications come from `SharingEngine`
    and are keyed by the child's token as `IncidentHandler` does.  The keystore
    is real so its own cost can be measured on the same keys.
    """
    store = PartnershipStore(state_dir)
    directory = create_partnership(store)
    police_keys, router_keys = store.private_keys(POLICE_ID), store.private_keys(directory.router().id)
    rng = random.Random(seed)
    tokeniser = Tokeniser(rng.randbytes(32))
    keystore = FileKeyService(state_dir / "keys" / "subjects")
    factory = IncidentFactory(rng, now=FIXED_NOW)
    router = SharingEngine(agreements=load_agreements(), directory=directory, tokeniser=tokeniser)
    names = TopicNames()
    incident_topic = names.ingress(POLICE_ID, Family.DA_INCIDENT)

    incidents: list[Sample] = []
    notifications: list[Sample] = []
    for _ in range(MAX_DRAWS):
        if len(incidents) >= POOL_SIZE and len(notifications) >= POOL_SIZE:
            break
        incident = factory.incident()
        tokens = subject_tokens(incident, tokeniser)
        if not SUBJECTS_MIN <= len(tokens) <= SUBJECTS_MAX:
            continue
        period = period_of(incident.occurred_at)
        if len(incidents) < POOL_SIZE:
            event = incident.model_copy(update={"subjects": tokens})
            incidents.append(make_sample(event, sender=police_keys, recipient=router_keys, topic=incident_topic,
                                         subject_keys=[keystore.subject_key(token, period) for token in tokens]))
        for share in router.route(incident, decided_at=FIXED_NOW).shares:
            if len(notifications) < POOL_SIZE and share.recipient.urn:  # school notifications only
                notifications.append(make_sample(
                    share.payload, sender=router_keys, recipient=store.private_keys(share.recipient.id),
                    topic=names.egress(share.recipient.id),
                    subject_keys=[keystore.subject_key(token, period) for token in share.subject_tokens]))
    if len(incidents) < POOL_SIZE or len(notifications) < POOL_SIZE:
        raise RuntimeError(f"drew {MAX_DRAWS} incidents without filling both pools of {POOL_SIZE}")
    return [
        Scenario(key="police_incident", title=f"police incident → router ({SUBJECTS_MIN}-{SUBJECTS_MAX} subject keys)",
                 samples=tuple(incidents)),
        Scenario(key="school_notification", title="school notification → school (1 subject key)",
                 samples=tuple(notifications)),
    ], keystore


def check_mirror(sample: Sample) -> None:
    """
    Prove the mirrored steps are the envelope's, so the break-down times the same work as the total.

    The mirrored open must read the real envelope, and an envelope assembled from
    the mirrored seal steps must pass the real `open_envelope`.
    """
    recipient_public = sample.recipient.public().encryption
    data_key = mirror_unwrap(sample.recipient.encryption, recipient_public, sample.wrapped_key, sample.aad)
    if mirror_decrypt(data_key, sample.secrets, sample.nonce, sample.ciphertext, sample.aad) != sample.plaintext:
        raise RuntimeError("mirrored open does not reproduce the plaintext of a real envelope")
    sample.sender.public().signing.verify(sample.signature, sample.signed_body)

    new_key, wrapped_key = mirror_wrap(recipient_public, sample.aad)
    nonce, ciphertext = mirror_encrypt(new_key, sample.secrets, sample.plaintext, sample.aad)
    body = {"header": json.loads(sample.aad), "wrapped_key": b64e(wrapped_key), "nonce": b64e(nonce),
            "ciphertext": b64e(ciphertext)}
    rebuilt = canonical_json({**body, "signature": b64e(sample.sender.signing.sign(canonical_json(body)))})
    secrets = dict(zip(sample.key_ids, sample.secrets, strict=True))
    opened = open_envelope(rebuilt, recipient=sample.recipient, senders=sample.senders, topic=sample.topic,
                           subject_keys=secrets.get)
    if opened.plaintext != sample.plaintext:
        raise RuntimeError("an envelope built by the mirrored seal does not open to its plaintext")


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True, kw_only=True)
class Case:
    """One measurement: zero-argument calls (one per pool event, arguments bound in advance) timed in turn."""

    key: str
    label: str
    calls: tuple[Callable[[], object], ...]


def seal_calls(samples: Sequence[Sample]) -> tuple[Callable[[], object], ...]:
    """`seal` on already-serialised plaintext, with the header fields `seal_event` would pass."""
    return tuple(functools.partial(
        seal, s.plaintext, sender=s.sender, recipient=s.recipient.public(), event_id=s.event.event_id,
        event_type=s.event.event_type, schema_id=s.event.schema_id(), schema_version=s.event.schema_version,
        topic=s.topic, now=FIXED_NOW, subject_keys=s.subject_keys) for s in samples)


def open_calls(samples: Sequence[Sample], lookup: Callable[[Sample], Callable[[str], bytes | None]],
               ) -> tuple[Callable[[], object], ...]:
    """`open_envelope` as the processor and inbox call it (topic checked), with `lookup` for subject keys."""
    return tuple(functools.partial(open_envelope, s.envelope, recipient=s.recipient, senders=s.senders,
                                   topic=s.topic, subject_keys=lookup(s)) for s in samples)


def lookup_all(keystore: FileKeyService, key_ids: Sequence[str]) -> None:
    """What `open_envelope` asks the key service for one event: every subject key it names."""
    for key_id in key_ids:
        keystore.lookup(key_id)


def scenario_cases(scenario: Scenario, keystore: FileKeyService) -> list[Case]:
    """Every measurement of one scenario, in the order the table prints them."""
    samples = scenario.samples

    def in_memory(sample: Sample) -> Callable[[str], bytes | None]:
        return dict(zip(sample.key_ids, sample.secrets, strict=True)).get

    def from_file(sample: Sample) -> Callable[[str], bytes | None]:
        return keystore.lookup

    counter = itertools.count()
    aes = AESGCM(AESGCM.generate_key(bit_length=256))

    def aes_alone(plaintext: bytes) -> bytes:
        # A counter nonce keeps the one key's nonces unique without timing os.urandom.
        return aes.encrypt(next(counter).to_bytes(12, "big"), plaintext, None)

    subject_keys = [key for s in samples for key in s.subject_keys]
    k = scenario.key
    return [
        Case(key=f"{k}.seal_event", label="seal_event (model_dump_json + seal)", calls=tuple(
            functools.partial(seal_event, s.event, sender=s.sender, recipient=s.recipient.public(), topic=s.topic,
                              now=FIXED_NOW, subject_keys=s.subject_keys) for s in samples)),
        Case(key=f"{k}.seal", label="seal (total)", calls=seal_calls(samples)),
        Case(key=f"{k}.seal.sign", label="Ed25519 sign", calls=tuple(
            functools.partial(s.sender.signing.sign, s.signed_body) for s in samples)),
        Case(key=f"{k}.seal.wrap", label="X25519 ephemeral + HKDF + key wrap", calls=tuple(
            functools.partial(mirror_wrap, s.recipient.public().encryption, s.aad) for s in samples)),
        Case(key=f"{k}.seal.encrypt", label="content-key HKDF + AES-256-GCM encrypt", calls=tuple(
            functools.partial(mirror_encrypt, AESGCM.generate_key(bit_length=256), s.secrets, s.plaintext, s.aad)
            for s in samples)),
        Case(key=f"{k}.open", label="open_envelope (total)", calls=open_calls(samples, in_memory)),
        Case(key=f"{k}.open.verify", label="Ed25519 verify", calls=tuple(
            functools.partial(s.sender.public().signing.verify, s.signature, s.signed_body) for s in samples)),
        Case(key=f"{k}.open.unwrap", label="unwrap: X25519 + HKDF + AES-256-GCM", calls=tuple(
            functools.partial(mirror_unwrap, s.recipient.encryption, s.recipient.public().encryption,
                              s.wrapped_key, s.aad) for s in samples)),
        Case(key=f"{k}.open.decrypt", label="content-key HKDF + AES-256-GCM decrypt", calls=tuple(
            functools.partial(mirror_decrypt,
                              mirror_unwrap(s.recipient.encryption, s.recipient.public().encryption,
                                            s.wrapped_key, s.aad),
                              s.secrets, s.nonce, s.ciphertext, s.aad) for s in samples)),
        Case(key=f"{k}.context.aes_gcm", label="AES-256-GCM encrypt alone, same plaintext", calls=tuple(
            functools.partial(aes_alone, s.plaintext) for s in samples)),
        Case(key=f"{k}.context.model_dump_json", label="model_dump_json of the event", calls=tuple(
            s.event.model_dump_json for s in samples)),
        Case(key=f"{k}.context.canonical_json", label="canonical_json of the whole envelope", calls=tuple(
            functools.partial(canonical_json, json.loads(s.envelope)) for s in samples)),
        Case(key=f"{k}.keys.file_lookup_per_key", label="FileKeyService.lookup, per key", calls=tuple(
            functools.partial(keystore.lookup, key.key_id) for key in subject_keys)),
        Case(key=f"{k}.keys.file_subject_key_per_key", label="FileKeyService.subject_key (exists), per key",
             calls=tuple(functools.partial(keystore.subject_key, *key.key_id.split("@")) for key in subject_keys)),
        Case(key=f"{k}.keys.file_lookup_per_event", label="FileKeyService.lookup, every key of the event",
             calls=tuple(functools.partial(lookup_all, keystore, s.key_ids) for s in samples)),
        Case(key=f"{k}.open_file_keys", label="open_envelope with FileKeyService.lookup",
             calls=open_calls(samples, from_file)),
    ]


def block_sizes(total: int, rounds: int) -> list[int]:
    """Split `total` timed calls into `rounds` blocks whose sizes differ by at most one."""
    return [total * (r + 1) // rounds - total * r // rounds for r in range(rounds)]


def time_block(calls: Sequence[Callable[[], object]], start: int, count: int, out: list[int]) -> None:
    """Time `count` calls one by one, cycling through `calls` from `start`; the selection is outside the timer."""
    clock = time.perf_counter_ns
    pool = len(calls)
    for i in range(start, start + count):
        call = calls[i % pool]
        began = clock()
        call()
        out.append(clock() - began)


def measure(cases: Sequence[Case], config: BenchConfig) -> dict[str, list[list[int]]]:
    """
    Time every case `config.iterations` times, in interleaved rounds; return nanoseconds per case, per round.

    The collector is paused during the timed blocks (and run between rounds):
    a collection landing in one call would be charged to whichever primitive
    happened to allocate last, which is noise, not that primitive's cost.
    """
    for case in cases:
        for call in itertools.islice(itertools.cycle(case.calls), config.warmup):
            call()
    results: dict[str, list[list[int]]] = {case.key: [] for case in cases}
    done = dict.fromkeys(results, 0)
    for block in block_sizes(config.iterations, ROUNDS):
        gc.collect()
        gc.disable()
        try:
            for case in cases:
                for call in itertools.islice(itertools.cycle(case.calls), ROUND_WARMUP):
                    call()
                samples: list[int] = []
                time_block(case.calls, done[case.key], block, samples)
                done[case.key] += block
                results[case.key].append(samples)
        finally:
            gc.enable()
    return results


def timer_overhead_ns(count: int = 20_000) -> float:
    """Median cost of the timing itself around an empty call: included (not subtracted) in every number."""
    def nothing() -> None:
        return None

    out: list[int] = []
    time_block((nothing,), 0, count, out)
    return statistics.median(out)


# --------------------------------------------------------------------------- statistics and report


def percentile(values: Sequence[float], pct: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default), as bench/thin_path.py does."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, kw_only=True)
class Stats:
    """One case's timed calls in µs: median and p99 are the headline, round medians show stability."""

    label: str
    median_us: float
    p99_us: float
    mean_us: float
    round_medians_us: list[float]
    n: int

    @classmethod
    def of(cls, label: str, rounds: Sequence[Sequence[int]]) -> Stats:
        """Summarise nanosecond timings gathered in rounds."""
        every = [ns for block in rounds for ns in block]
        return cls(
            label=label,
            median_us=round(statistics.median(every) / 1000, 2),
            p99_us=round(percentile(every, 99) / 1000, 2),
            mean_us=round(statistics.fmean(every) / 1000, 2),
            round_medians_us=[round(statistics.median(block) / 1000, 2) for block in rounds],
            n=len(every),
        )


@dataclass(frozen=True, kw_only=True)
class Spread:
    """Min, median and max of a pool's sizes or counts."""

    min: int
    median: float
    max: int

    @classmethod
    def of(cls, values: Sequence[int]) -> Spread:
        """Summarise `values`."""
        return cls(min=min(values), median=statistics.median(values), max=max(values))


@dataclass(frozen=True, kw_only=True)
class ScenarioResult:
    """Everything measured for one scenario, plus the numbers a closing note quotes."""

    title: str
    events: int
    subject_keys: Spread
    plaintext_bytes: Spread
    envelope_bytes: Spread
    timings: dict[str, Stats]

    def median(self, name: str) -> float:
        """Median µs of one case."""
        return self.timings[name].median_us

    def derived(self) -> dict[str, float]:
        """
        Per-event sign / verify / encrypt / decrypt, and what is left outside the primitives.

        Medians do not add exactly, so the "rest" figures are estimates.
        """
        seal_parts = self.median("seal.sign") + self.median("seal.wrap") + self.median("seal.encrypt")
        open_parts = self.median("open.verify") + self.median("open.unwrap") + self.median("open.decrypt")
        return {
            "sign_us": self.median("seal.sign"),
            "verify_us": self.median("open.verify"),
            "encrypt_us": round(self.median("seal.wrap") + self.median("seal.encrypt"), 2),
            "decrypt_us": round(self.median("open.unwrap") + self.median("open.decrypt"), 2),
            "seal_crypto_us": round(seal_parts, 2),
            "seal_rest_us": round(self.median("seal") - seal_parts, 2),
            "seal_crypto_share": round(seal_parts / self.median("seal"), 3),
            "open_crypto_us": round(open_parts, 2),
            "open_rest_us": round(self.median("open") - open_parts, 2),
            "open_crypto_share": round(open_parts / self.median("open"), 3),
            "seals_per_s_one_core": round(1e6 / self.median("seal")),
            "opens_per_s_one_core": round(1e6 / self.median("open")),
        }

    def as_json(self) -> dict[str, object]:
        """The JSON form: the dataclass fields plus `derived`."""
        return {**dataclasses.asdict(self), "derived": self.derived()}


def summarise_scenario(scenario: Scenario, results: dict[str, list[list[int]]], cases: Sequence[Case],
                       ) -> ScenarioResult:
    """Describe the scenario's pool and summarise each of its cases (keys without the scenario prefix)."""
    prefix = f"{scenario.key}."
    return ScenarioResult(
        title=scenario.title,
        events=len(scenario.samples),
        subject_keys=Spread.of([len(s.key_ids) for s in scenario.samples]),
        plaintext_bytes=Spread.of([len(s.plaintext) for s in scenario.samples]),
        envelope_bytes=Spread.of([len(s.envelope) for s in scenario.samples]),
        timings={case.key.removeprefix(prefix): Stats.of(case.label, results[case.key]) for case in cases},
    )


def print_scenario(result: ScenarioResult) -> None:
    """One readable table per scenario: totals, their break-down, context, then the keystore."""
    derived = result.derived()
    keys, sizes = result.subject_keys, result.plaintext_bytes
    say()
    say(f"{result.title}: {result.events} events, subject keys {keys.min}-{keys.max} (median {keys.median}), "
        f"plaintext {sizes.min}-{sizes.max} B (median {sizes.median:.0f}), "
        f"envelope median {result.envelope_bytes.median:.0f} B")
    say(f"  {'':<58}{'median µs':>10}{'p99 µs':>10}   per-round medians µs")

    def row(name: str, indent: str = "", suffix: str = "") -> None:
        stats = result.timings[name]
        rounds = ", ".join(f"{v:.1f}" for v in stats.round_medians_us)
        say(f"  {indent + stats.label + suffix:<58}{stats.median_us:>10.1f}{stats.p99_us:>10.1f}   {rounds}")

    def rest(value: float, label: str) -> None:
        say(f"  {label:<58}{value:>10.1f}{'':>10}   (total median - parts' medians)")

    row("seal_event")
    row("seal")
    for part in ("seal.sign", "seal.wrap", "seal.encrypt"):
        row(part, "  ")
    rest(derived["seal_rest_us"], "  rest: header, canonical JSON, base64")
    row("open")
    for part in ("open.verify", "open.unwrap", "open.decrypt"):
        row(part, "  ")
    rest(derived["open_rest_us"], "  rest: parse, checks, canonical JSON, base64")
    say("  context")
    row("context.aes_gcm", "  ")
    row("context.model_dump_json", "  ")
    row("context.canonical_json", "  ", " (seal 3x, open 2x)")
    say("  key service (FileKeyService: one 0600 file per key, page cache warm)")
    for name in ("keys.file_lookup_per_key", "keys.file_subject_key_per_key", "keys.file_lookup_per_event",
                 "open_file_keys"):
        row(name, "  ")
    say(f"  => per event: sign {derived['sign_us']:.1f} µs, verify {derived['verify_us']:.1f} µs, "
        f"encrypt {derived['encrypt_us']:.1f} µs, decrypt {derived['decrypt_us']:.1f} µs; "
        f"the primitives are {derived['seal_crypto_share']:.0%} of seal, {derived['open_crypto_share']:.0%} of open")


def environment() -> dict[str, object]:
    """What the numbers depend on besides the code: interpreter, crypto library, machine."""
    return {
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": openssl_backend.openssl_version_text(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def cpu_jiffies() -> list[int] | None:
    """The aggregate CPU line of /proc/stat (Linux only; None elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    return [int(value) for value in fields[1:]] if fields and fields[0] == "cpu" else None


def host_load(before: list[int] | None, after: list[int] | None) -> dict[str, float | None]:
    """
    How busy the whole machine was during the run, and how much time the hypervisor stole.

    Other work on the machine's cores moves every number here; a share well above
    1 / cpu_count (this process alone) says the run competed for CPU.
    """
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return {"cpu_busy_share": None, "cpu_steal_share": None}
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8]) or 1
    idle = delta[3] + delta[4]
    return {"cpu_busy_share": round(1 - idle / total, 3), "cpu_steal_share": round(delta[7] / total, 3)}


# --------------------------------------------------------------------------- main


def run(config: BenchConfig) -> int:
    """Build the pools, check the mirror, measure, report; return the exit status."""
    started, jiffies = time.monotonic(), cpu_jiffies()
    env = environment()
    say(f"safebus crypto benchmark: {config.iterations} timed calls per measurement in {ROUNDS} rounds "
        f"(+{config.warmup} warm-up), seed {config.seed}")
    say(f"· Python {env['python']}, cryptography {env['cryptography']}, {env['openssl']}, "
        f"{env['cpu_count']} CPUs, load {env['loadavg_1m_at_start']}")
    with tempfile.TemporaryDirectory(prefix="safebus-bench-crypto-") as tmp:
        scenarios, keystore = build_scenarios(Path(tmp), config.seed)
        for scenario in scenarios:
            for sample in scenario.samples:
                check_mirror(sample)
        say(f"· mirrored primitives checked against seal/open_envelope on {sum(len(s.samples) for s in scenarios)} "
            f"events; keystore in {tmp}")
        overhead = timer_overhead_ns()
        cases = {scenario.key: scenario_cases(scenario, keystore) for scenario in scenarios}
        results = measure([case for per_scenario in cases.values() for case in per_scenario], config)
    summaries = {s.key: summarise_scenario(s, results, cases[s.key]) for s in scenarios}
    for result in summaries.values():
        print_scenario(result)
    elapsed, load = time.monotonic() - started, host_load(jiffies, cpu_jiffies())
    say()
    say(f"timer + call overhead {overhead:.0f} ns per timed call (included, not subtracted); run took {elapsed:.1f} s")
    say(f"machine during the run: CPU busy {load['cpu_busy_share']} of all cores (this process alone is about "
        f"{1 / (os.cpu_count() or 1):.2f}), steal {load['cpu_steal_share']}, "
        f"load {env['loadavg_1m_at_start']} -> {os.getloadavg()[0]:.2f}")
    summary: dict[str, object] = {
        "benchmark": "crypto",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "iterations": config.iterations,
        "rounds": ROUNDS,
        "warmup": config.warmup,
        "seed": config.seed,
        "pool_size": POOL_SIZE,
        "timer_overhead_ns": round(overhead),
        "gc_paused_while_timing": True,
        "seconds": round(elapsed, 1),
        **load,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        **env,
        **{key: result.as_json() for key, result in summaries.items()},
    }
    line = json.dumps(summary, sort_keys=True, ensure_ascii=False)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(line + "\n")
    print(line, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
