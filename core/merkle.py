"""
The RFC 9162 (Certificate Transparency v2) Merkle tree: hashing, an append-only tree, proofs and their verifiers.

Hashing (RFC 9162 §2.1.1, unchanged from RFC 6962)::

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})         = SHA-256()                      (`EMPTY_ROOT`)
    MTH(D[n])       = node_hash(MTH(D[0:k]), MTH(D[k:n])),  k the largest power of two < n

The two prefixes keep a leaf from ever being read as an interior node (second
pre-image attacks); the split at a power of two is what makes every earlier
tree a prefix of every later one, so consistency proofs exist at all.

Design choices:

- **Packed levels.** `MerkleTree` keeps, for every level ``h``, the hashes of
  all *perfect* subtrees of ``2**h`` leaves that the log has completed so far,
  concatenated in one ``bytearray`` (32 bytes each).  Level 0 is the leaf
  hashes.  That is about 2·n hashes in total: 64 MB at a million leaves.  A
  list of ``bytes`` objects would need 73 bytes per hash (a 65-byte object
  plus its pointer), 2.3 times as much, and a dict of nodes more again.  An
  append adds one leaf and, amortised, one interior node; nothing already
  stored ever changes, which is exactly the append-only property of the log.
- **Any size ≤ the current one, in O(log n).** Every subtree that RFC 9162's
  ``PATH`` and ``SUBPROOF`` can ask for (RFC 9162 §2.1.3.1, §2.1.4.1) starts
  at a multiple of a power of two at least as large as itself, so it splits
  greedily into at most log2(n) stored perfect subtrees.  At most one hash per
  proof is of such an incomplete subtree (the one on the right border), so a
  proof costs O(log n) lookups and O(log n) hashing, for the current tree or
  for any earlier checkpoint's size.  Nothing is rebuilt.
- **Verifiers bind the leaf index and the tree size.** `verify_inclusion` and
  `verify_consistency` follow the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms
  step by step.  In them the bits of the index choose left or right at every
  level, and the size decides where the path meets the right border and
  exactly how many hashes the proof must have.  A verifier that takes its
  direction bits from anywhere else, or accepts any proof length, can be shown
  a proof for leaf 3 and accept it as a proof for leaf 5, or a proof against
  an older, smaller tree.  That is a recurring bug class: pymerkle's
  ``verify_inclusion(base, root, proof)`` takes no index or size at all, and
  reads the directions from the proof itself.  Before the RFC loop each verifier also
  checks every input's shape: 32-byte hashes, ``0 ≤ index < size < 2**64``,
  and the exact proof length (a pure function of index and size), so a wrong
  proof fails with a message that says which check failed.
- **A size is only bound together with its root.** The RFC algorithm cannot
  tell a root paired with the wrong size when both sizes give the proof the
  same shape: leaf 0's proof in a 4-leaf tree also "verifies" as leaf 0 of a
  3-leaf tree *with the 4-leaf root* (the hash of leaves 2-3 is read as leaf
  2).  Against the real 3-leaf root it fails.  So callers must take the size
  and the root from the same signed checkpoint, never from separate sources;
  tests/unit/core/test_merkle.py pins this.
- **`mth`** is the RFC's recursive definition, written out literally.  It is
  slow (O(n) per root) and exists so tests can check the fast tree against
  the specification, not against itself.

Errors: malformed calls on a tree (size beyond the tree, index beyond the
size) raise plain `ValueError`; a proof that does not verify raises
`ProofError`, which is also a `ValueError` and a `SafebusError`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from safebus.errors import SafebusError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "MerkleTree",
    "ProofError",
    "consistency_proof_length",
    "inclusion_proof_length",
    "leaf_hash",
    "mth",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1)."""

MAX_TREE_SIZE = 2**64 - 1
"""Tree sizes are uint64 on the wire (RFC 9162 §4.10); anything larger is malformed, not merely big."""

MAX_PROOF_HASHES = 64
"""No path in a tree of fewer than 2**64 leaves is longer; checked before looking at any element (to refuse DoS)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


class ProofError(SafebusError, ValueError):
    """An inclusion or consistency proof does not verify; the message says which check failed."""


# --------------------------------------------------------------------------- hashing (RFC 9162 §2.1.1)


def leaf_hash(data: bytes) -> bytes:
    """Hash one log entry as a leaf: SHA-256(0x00 || data)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes into their parent: SHA-256(0x01 || left || right); both must be 32 bytes."""
    if len(left) != HASH_SIZE or len(right) != HASH_SIZE:
        raise ValueError(f"node_hash takes two {HASH_SIZE}-byte hashes, got {len(left)} and {len(right)} bytes")
    return _sha256(_NODE_PREFIX + left + right).digest()


def _node(left: bytes, right: bytes) -> bytes:
    """`node_hash` without the length check, for inputs already checked."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below `n` (n ≥ 2): where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """
    The Merkle Tree Hash of RFC 9162 §2.1.1, computed by its recursive definition from the leaf hashes.

    O(n) hashing per call: a reference for tests, not for the log (use `MerkleTree.root`).
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        if len(leaf_hashes[0]) != HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf_hashes[0])} bytes, not {HASH_SIZE}")
        return bytes(leaf_hashes[0])
    k = _split(n)
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


# --------------------------------------------------------------------------- the tree


class MerkleTree:
    """
    An append-only RFC 9162 Merkle tree over leaf hashes, answering roots and proofs for any earlier size.

    Each level is one packed ``bytearray`` of the perfect subtrees completed so
    far (see the module docstring).  Not thread-safe: one writer, and readers
    on the same thread (the log's appender owns its tree).
    """

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes | bytearray | memoryview]) -> MerkleTree:
        """
        Rebuild a tree from its stored leaf hashes, in log order (start-up after a restart).

        Builds level by level, which is faster than appending one leaf at a
        time.  The hashes may be slices of a file read or mapped into memory.
        Raises `ValueError` if a leaf hash is not 32 bytes.
        """
        tree = cls()
        leaves = tree._levels[0]
        for index, value in enumerate(leaf_hashes):
            if len(value) != HASH_SIZE:
                raise ValueError(f"leaf hash {index} is {len(value)} bytes, not {HASH_SIZE}")
            leaves += value
        tree._size = len(leaves) // HASH_SIZE
        below = leaves
        while len(below) >= 2 * HASH_SIZE:
            above = bytearray()
            view = memoryview(below)
            for offset in range(0, len(below) - 2 * HASH_SIZE + 1, 2 * HASH_SIZE):
                digest = _sha256(_NODE_PREFIX)
                digest.update(view[offset:offset + 2 * HASH_SIZE])
                above += digest.digest()
            view.release()
            tree._levels.append(above)
            below = above
        return tree

    # ----------------------------------------------------------------- growing

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes of hashes held (about 64 per leaf), for capacity planning and metrics."""
        return sum(len(level) for level in self._levels)

    def __len__(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """
        Append one leaf hash (see `leaf_hash`); return its index.

        Stores the leaf and every perfect subtree it completes (one more node
        per level while the count at that level is even): amortised one
        interior hash per leaf.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}")
        index = self._size
        levels = self._levels
        levels[0] += leaf_hash
        self._size = count = index + 1
        level = 0
        while not count & 1:  # this level's last two nodes now form a complete parent
            below = levels[level]
            parent = _sha256(_NODE_PREFIX + below[-2 * HASH_SIZE:]).digest()
            level += 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += parent
            count >>= 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order."""
        for value in leaf_hashes:
            self.append(value)

    # ----------------------------------------------------------------- reading

    def leaf_hash_at(self, index: int) -> bytes:
        """The leaf hash stored at `index`."""
        if not 0 <= index < self._size:
            raise ValueError(f"leaf index {index} is outside the tree (size {self._size})")
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the tree's first `size` leaves (default: all of them); `EMPTY_ROOT` for size 0."""
        size = self._size if size is None else self._checked_size(size)
        return self._range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """
        The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1).

        Ordered from the leaf's sibling up to the child of the root, as
        `verify_inclusion` expects.  Raises `ValueError` unless
        ``0 ≤ index < size ≤ self.size``.
        """
        self._checked_size(size)
        if index < 0:
            raise ValueError(f"leaf index {index} is negative")
        if index >= size:
            raise ValueError(f"leaf index {index} is not below tree size {size}")
        # PATH(m, D[lo:hi]): descend towards the leaf; the sibling of each step is one proof hash.
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._range_hash(lo + k, hi))  # right sibling (may be incomplete)
                hi = lo + k
            else:
                path.append(self._range_hash(lo, lo + k))  # left sibling (always perfect)
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """
        The proof that the tree of `old_size` leaves is a prefix of the tree of `new_size` (RFC 9162 §2.1.4.1).

        Empty when the sizes are equal or `old_size` is 0 (every tree extends
        the empty one).  Raises `ValueError` unless
        ``0 ≤ old_size ≤ new_size ≤ self.size``.
        """
        self._checked_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size} is not between 0 and new size {new_size}")
        if old_size in (0, new_size):
            return []
        # SUBPROOF(m, D[lo:hi], complete): `m` leaves of the old tree fall in [lo, hi).
        proof: list[bytes] = []
        lo, hi, m, complete = 0, new_size, old_size, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._range_hash(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
            proof.append(self._range_hash(lo, hi))
        proof.reverse()
        return proof

    # ----------------------------------------------------------------- internals

    def _checked_size(self, size: int) -> int:
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} is outside the tree (0 to {self._size})")
        return size

    def _range_hash(self, start: int, end: int) -> bytes:
        """
        MTH(D[start:end]) for a range that is a subtree of some MTH (``start`` a multiple of a power ≥ its length).

        Greedily takes the largest stored perfect subtree that starts at
        `start` and fits, then folds right to left, which is exactly the
        recursive MTH for such ranges.  O(log n).
        """
        levels = self._levels
        length = end - start
        if not length & (length - 1):  # a perfect subtree (the common case): one lookup
            level = length.bit_length() - 1
            offset = (start >> level) * HASH_SIZE
            return bytes(levels[level][offset:offset + HASH_SIZE])
        chunks: list[bytes] = []
        while start < end:
            level = (end - start).bit_length() - 1
            if start:
                level = min(level, (start & -start).bit_length() - 1)
            offset = (start >> level) * HASH_SIZE
            chunks.append(bytes(levels[level][offset:offset + HASH_SIZE]))
            start += 1 << level
        result = chunks.pop()
        while chunks:
            result = _node(chunks.pop(), result)
        return result


# --------------------------------------------------------------------------- verifiers


def inclusion_proof_length(index: int, size: int) -> int:
    """
    How many hashes the inclusion proof of leaf `index` in a tree of `size` has (0 ≤ index < size).

    The hashes below the point where the paths to `index` and to the last leaf
    diverge (one per level), plus one per left subtree on the right border
    above it.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """How many hashes the consistency proof from `old_size` to `new_size` has (0 < old_size < new_size)."""
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits: the old tree's last perfect subtree
    seed = 0 if old_size == 1 << shift else 1  # a power-of-two old tree is its own first hash, omitted
    return seed + inclusion_proof_length(old_size - 1, new_size) - shift


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """
    The root that `proof` implies for leaf `leaf_hash` at `index` in a tree of `size` (RFC 9162 §2.1.3.2 1-4).

    Raises `ProofError` if any input is malformed (hash lengths, index not
    below size, wrong proof length).  A root is returned only for a
    well-formed proof; comparing it with a trusted root is the caller's job
    (`verify_inclusion` does both).
    """
    # (1): shapes.  The index must lie in the tree; every hash is 32 bytes;
    # the proof length is fixed by index and size.
    _check_size("tree size", size)
    _check_size("leaf index", index)
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    path = _check_proof(proof)
    expected = inclusion_proof_length(index, size)
    if len(path) != expected:
        raise ProofError(f"inclusion proof for leaf {index} in a tree of {size} has {len(path)} hashes, "
                         f"expected {expected}")
    # (2): fn is the leaf's index, sn the last leaf's index; (3): r starts as the leaf hash.
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    # (4): climb.  Where fn is a right child, or on the right border (fn == sn)
    # where the sibling is on the left, hash p || r; else r || p.
    for p in path:
        if sn == 0:  # (4a): more hashes than levels; unreachable after the length check
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            # On the right border with no right sibling: skip the levels
            # where the node is promoted unchanged.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    # (5, first half): all levels consumed.
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """
    Check that `proof` shows leaf `leaf_hash` at `index` in the tree of `size` leaves whose root is `root`.

    RFC 9162 §2.1.3.2, with the index and size both bound: a proof for another
    index or size does not verify.  Returns nothing on success; raises
    `ProofError` saying which check failed.
    """
    _check_hash("root", root)
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    # (5, second half): the computed root must be the trusted one.
    if not hmac.compare_digest(computed, bytes(root)):
        raise ProofError(f"inclusion proof for leaf {index} in a tree of {size} leads to root "
                         f"{computed.hex()[:16]}…, not the expected {bytes(root).hex()[:16]}…")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """
    Check that the tree of `old_size` leaves with `old_root` is a prefix of the tree of `new_size` with `new_root`.

    RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``.  The edge cases the RFC
    leaves out are decided strictly: equal sizes need an empty proof and equal
    roots; ``old_size == 0`` needs an empty proof and `old_root` equal to
    `EMPTY_ROOT` (the empty tree is a prefix of every tree).  Returns nothing
    on success; raises `ProofError` saying which check failed.
    """
    # (0): shapes.  Sizes in range and ordered, 32-byte roots and proof hashes.
    _check_size("old size", old_size)
    _check_size("new size", new_size)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}: a log never shrinks")
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    path = _check_proof(proof)
    if old_size == new_size:
        if path:
            raise ProofError(f"consistency proof between equal sizes ({old_size}) must be empty, has {len(path)}")
        if not hmac.compare_digest(bytes(old_root), bytes(new_root)):
            raise ProofError(f"trees of the same size {old_size} have different roots: the log forked")
        return
    if old_size == 0:
        if path:
            raise ProofError(f"consistency proof from the empty tree must be empty, has {len(path)}")
        if not hmac.compare_digest(bytes(old_root), EMPTY_ROOT):
            raise ProofError("old root of an empty tree is not the empty-tree hash")
        return
    expected = consistency_proof_length(old_size, new_size)
    if len(path) != expected:
        raise ProofError(f"consistency proof from {old_size} to {new_size} has {len(path)} hashes, "
                         f"expected {expected}")
    # (1): an empty proof proves nothing (unreachable after the length check).
    if not path:
        raise ProofError("consistency proof is empty")
    # (2): if the old tree is a perfect subtree, its root is the first node of the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    # (3)
    fn, sn = old_size - 1, new_size - 1
    # (4): skip the levels where the old tree's last node is a right child
    # (its left siblings are inside the seed hash).
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # (5): fr rebuilds the old root, sr the new one, from the same seed.
    fr = sr = path[0]
    # (6)
    for c in path[1:]:
        if sn == 0:  # (6a)
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # (6b): c is a left sibling: in both trees
            fr = _node(c, fr)
            sr = _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:  # c is a right sibling: only in the new tree
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    # (7): every level consumed, and both roots reproduced.
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if not hmac.compare_digest(fr, bytes(old_root)):
        raise ProofError(f"consistency proof from {old_size} to {new_size} does not reproduce the old root "
                         f"(got {fr.hex()[:16]}…, expected {bytes(old_root).hex()[:16]}…)")
    if not hmac.compare_digest(sr, bytes(new_root)):
        raise ProofError(f"consistency proof from {old_size} to {new_size} does not reproduce the new root "
                         f"(got {sr.hex()[:16]}…, expected {bytes(new_root).hex()[:16]}…)")


def _check_size(what: str, size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise ProofError(f"{what} {size!r} is not an integer between 0 and 2**64-1")


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        length = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {length}")


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    """The proof as a list of 32-byte `bytes`, after the length cap; raises `ProofError`."""
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError(f"proof has {len(proof)} hashes; no tree of fewer than 2**64 leaves needs more than "
                         f"{MAX_PROOF_HASHES}")
    for position, value in enumerate(proof):
        _check_hash(f"proof hash {position}", value)
    return [bytes(value) for value in proof]
