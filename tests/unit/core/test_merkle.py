"""
The RFC 9162 Merkle tree: published vectors, the RFC's recursive definitions, and verifiers that refuse corruptions.

Three independent references check `MerkleTree`: the transparency-dev/merkle
vectors (tests/vectors/merkle/), RFC 9162's recursive MTH / PATH / SUBPROOF
written out literally below, and our own verifiers.  The verifiers in turn
must refuse every corruption transparency-dev's tests try, on the published
proofs and on generated ones.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safebus.merkle import (
    EMPTY_ROOT,
    MAX_PROOF_HASHES,
    MerkleTree,
    ProofError,
    consistency_proof_length,
    inclusion_proof_length,
    leaf_hash,
    mth,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "merkle"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def _hexes(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(value) for value in values]


TREE = _load("tree.json")
LEAF_INPUTS = _hexes(TREE["leaf_inputs"])
NODE_HASHES = [_hexes(level) for level in TREE["node_hashes"]]
ROOTS = _hexes(TREE["roots"])
INCLUSION = _load("inclusion.json")["proofs"]
CONSISTENCY = _load("consistency.json")["proofs"]
PROOF_NODES = _load("proof_nodes.json")

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
"""transparency-dev's sha256SomeHash: 32 bytes that are no node of any test tree."""

# A 300-leaf tree for the generated checks: every size up to 300 is answered by this one tree.
BIG = 300
BIG_HASHES = [leaf_hash(f"audit-leaf-{i}".encode()) for i in range(BIG)]
BIG_TREE = MerkleTree.from_leaf_hashes(BIG_HASHES)
BIG_ROOTS = [mth(BIG_HASHES[:size]) for size in range(BIG + 1)]


def _vector_tree() -> MerkleTree:
    tree = MerkleTree()
    for data in LEAF_INPUTS:
        tree.append(leaf_hash(data))
    return tree


# --------------------------------------------------------------------------- RFC 9162 written out literally


def _k(n: int) -> int:
    """The largest power of two strictly smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]) over leaf hashes."""
    n = len(hashes)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, hashes[:k]), mth(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), mth(hashes[:k])]


def ref_subproof(m: int, hashes: Sequence[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b) over leaf hashes."""
    n = len(hashes)
    if m == n:
        return [] if complete else [mth(hashes)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], complete), mth(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), mth(hashes[:k])]


def _fails(check: Callable[..., None], *args: Any) -> bool:
    try:
        check(*args)
    except ProofError:
        return True
    return False


def _flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# --------------------------------------------------------------------------- transparency-dev's corruption probes


def inclusion_probes(index: int, size: int, proof: list[bytes], root: bytes,
                     leaf: bytes) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """transparency-dev proof/verify_test.go corruptInclusionProof: (desc, index, size, proof, root, leaf)."""
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size // 2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, b"WrongLeaf"),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing garbage", index, size, [*proof, b""], root, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding garbage", index, size, [b"", *proof], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = _flip(wrong[position], 3)
        probes.append((f"proof[{position}] bit 3", index, size, wrong, root, leaf))
    if proof:
        probes.append(("removed component", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, [proof[0], SOME_HASH, *proof[1:]], root, leaf))
    return [probe for probe in probes if probe[1] >= 0]


def consistency_probes(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: list[bytes]) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """transparency-dev proof/verify_test.go corruptConsistencyProof: (desc, old, new, old_root, new_root, proof)."""
    probes = [
        ("old - 1", old - 1, new, old_root, new_root, proof),
        ("old + 1", old + 1, new, old_root, new_root, proof),
        ("old ^ 2", old ^ 2, new, old_root, new_root, proof),
        ("new * 2", old, new * 2, old_root, new_root, proof),
        ("new // 2", old, new // 2, old_root, new_root, proof),
        ("wrong old root", old, new, b"WrongRoot", new_root, proof),
        ("wrong new root", old, new, old_root, b"WrongRoot", proof),
        ("swapped roots", old, new, new_root, old_root, proof),
        ("empty proof", old, new, old_root, new_root, []),
        ("trailing garbage", old, new, old_root, new_root, [*proof, b""]),
        ("trailing old root", old, new, old_root, new_root, [*proof, old_root]),
        ("trailing new root", old, new, old_root, new_root, [*proof, new_root]),
        ("preceding garbage", old, new, old_root, new_root, [b"", *proof]),
        ("preceding old root", old, new, old_root, new_root, [old_root, *proof]),
        ("preceding new root", old, new, old_root, new_root, [new_root, *proof]),
        ("preceding proof[0]", old, new, old_root, new_root, [proof[0], *proof]),
        ("truncated", old, new, old_root, new_root, proof[:-1]),
    ]
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = _flip(wrong[position], 4)
        probes.append((f"proof[{position}] bit 4", old, new, old_root, new_root, wrong))
    return probes


def _accepted_inclusion_probes(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes) -> list[str]:
    return [desc for desc, i, n, p, r, h in inclusion_probes(index, size, proof, root, leaf)
            if not _fails(verify_inclusion, h, i, n, p, r)]


def _accepted_consistency_probes(old: int, new: int, old_root: bytes, new_root: bytes,
                                 proof: list[bytes]) -> list[str]:
    return [desc for desc, m, n, r1, r2, p in consistency_probes(old, new, old_root, new_root, proof)
            if not _fails(verify_consistency, m, n, r1, r2, p)]


# --------------------------------------------------------------------------- hashing


class TestHashing:
    def test_leaf_hashes_match_the_vectors(self) -> None:
        """SHA-256(0x00 || d) of each test input is the published level-0 hash."""
        assert [leaf_hash(data) for data in LEAF_INPUTS] == NODE_HASHES[0]

    def test_node_hashes_match_the_vectors(self) -> None:
        """SHA-256(0x01 || l || r) of each pair is the published parent, at every level."""
        for below, above in itertools.pairwise(NODE_HASHES):
            assert [node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)] == above

    def test_empty_root_is_the_hash_of_nothing(self) -> None:
        """The empty tree's root is SHA-256 of the empty string."""
        assert EMPTY_ROOT == ROOTS[0] == bytes.fromhex(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

    def test_mth_matches_the_published_roots(self) -> None:
        """The literal recursive MTH gives the published root at every size 0-8."""
        hashes = [leaf_hash(data) for data in LEAF_INPUTS]
        assert [mth(hashes[:size]) for size in range(9)] == ROOTS

    def test_node_hash_takes_only_hashes(self) -> None:
        """A child that is not 32 bytes is a programming error, refused rather than hashed."""
        with pytest.raises(ValueError, match="two 32-byte hashes"):
            node_hash(b"short", EMPTY_ROOT)


# --------------------------------------------------------------------------- the tree against published vectors


class TestTreeVectors:
    def test_roots_at_every_size_while_growing(self) -> None:
        """After each append, the root of every size up to the current one is the published one."""
        tree = MerkleTree()
        assert tree.root() == ROOTS[0]
        for count, data in enumerate(LEAF_INPUTS, start=1):
            assert tree.append(leaf_hash(data)) == count - 1
            assert tree.size == len(tree) == count
            assert [tree.root(size) for size in range(count + 1)] == ROOTS[:count + 1]

    def test_rebuilt_tree_equals_appended_tree(self) -> None:
        """from_leaf_hashes (start-up) answers every root and proof exactly like a tree built by appends."""
        appended = _vector_tree()
        rebuilt = MerkleTree.from_leaf_hashes(leaf_hash(data) for data in LEAF_INPUTS)
        for size in range(9):
            assert rebuilt.root(size) == appended.root(size)
            for index in range(size):
                assert rebuilt.inclusion_proof(index, size) == appended.inclusion_proof(index, size)
            for old in range(size + 1):
                assert rebuilt.consistency_proof(old, size) == appended.consistency_proof(old, size)

    @pytest.mark.parametrize("vector", INCLUSION, ids=lambda v: f"{v['index']}:{v['size']}")
    def test_generates_the_published_inclusion_proofs(self, vector: dict[str, Any]) -> None:
        """The tree's inclusion proof is byte for byte the published one."""
        assert _vector_tree().inclusion_proof(vector["index"], vector["size"]) == _hexes(vector["proof"])

    @pytest.mark.parametrize("vector", CONSISTENCY, ids=lambda v: f"{v['old_size']}:{v['new_size']}")
    def test_generates_the_published_consistency_proofs(self, vector: dict[str, Any]) -> None:
        """The tree's consistency proof is byte for byte the published one."""
        proof = _vector_tree().consistency_proof(vector["old_size"], vector["new_size"])
        assert proof == _hexes(vector["proof"])

    @pytest.mark.parametrize("vector", PROOF_NODES["inclusion"], ids=lambda v: f"{v['index']}:{v['size']}")
    def test_inclusion_proofs_are_made_of_the_published_nodes(self, vector: dict[str, Any]) -> None:
        """Up to 95 leaves, each inclusion proof hash is the subtree transparency-dev says it is."""
        assert BIG_TREE.inclusion_proof(vector["index"], vector["size"]) == _expected_nodes(vector)

    @pytest.mark.parametrize("vector", PROOF_NODES["consistency"],
                             ids=lambda v: f"{v['old_size']}:{v['new_size']}")
    def test_consistency_proofs_are_made_of_the_published_nodes(self, vector: dict[str, Any]) -> None:
        """Up to 95 leaves, each consistency proof hash is the subtree transparency-dev says it is."""
        assert BIG_TREE.consistency_proof(vector["old_size"], vector["new_size"]) == _expected_nodes(vector)

    @pytest.mark.parametrize("vector", PROOF_NODES["inclusion_errors"], ids=lambda v: f"{v['index']}:{v['size']}")
    def test_refuses_inclusion_proofs_outside_the_tree(self, vector: dict[str, Any]) -> None:
        """An index at or beyond the size is refused, never answered with some other leaf's path."""
        with pytest.raises(ValueError, match="not below tree size"):
            _vector_tree().inclusion_proof(vector["index"], vector["size"])

    @pytest.mark.parametrize("vector", PROOF_NODES["consistency_errors"],
                             ids=lambda v: f"{v['old_size']}:{v['new_size']}")
    def test_refuses_consistency_proofs_backwards(self, vector: dict[str, Any]) -> None:
        """A consistency proof to a smaller tree does not exist."""
        with pytest.raises(ValueError, match="not between 0 and new size"):
            _vector_tree().consistency_proof(vector["old_size"], vector["new_size"])


def _expected_nodes(vector: dict[str, Any]) -> list[bytes]:
    """The proof hashes a proof_nodes.json entry describes, folding its rehash range as Nodes.Rehash does."""
    hashes = [mth(BIG_HASHES[index << level:(index + 1) << level]) for level, index in vector["nodes"]]
    if vector["rehash"] is None:
        return hashes
    begin, end = vector["rehash"]
    folded = hashes[begin]
    for node in hashes[begin + 1:end]:
        folded = node_hash(node, folded)
    return [*hashes[:begin], folded, *hashes[end:]]


# --------------------------------------------------------------------------- verifiers against published vectors


class TestVerifierVectors:
    @pytest.mark.parametrize("vector", INCLUSION, ids=lambda v: f"{v['index']}:{v['size']}")
    def test_published_inclusion_proofs_verify_and_no_corruption_does(self, vector: dict[str, Any]) -> None:
        """Each published inclusion proof verifies; each of transparency-dev's corruptions of it fails."""
        index, size, proof = vector["index"], vector["size"], _hexes(vector["proof"])
        leaf = leaf_hash(LEAF_INPUTS[index])
        assert root_from_inclusion_proof(leaf, index, size, proof) == ROOTS[size]
        verify_inclusion(leaf, index, size, proof, ROOTS[size])
        assert _accepted_inclusion_probes(index, size, proof, ROOTS[size], leaf) == []

    @pytest.mark.parametrize("vector", CONSISTENCY, ids=lambda v: f"{v['old_size']}:{v['new_size']}")
    def test_published_consistency_proofs_verify_and_no_corruption_does(self, vector: dict[str, Any]) -> None:
        """Each published consistency proof verifies; each of transparency-dev's corruptions of it fails."""
        old, new, proof = vector["old_size"], vector["new_size"], _hexes(vector["proof"])
        verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)
        if proof:
            assert _accepted_consistency_probes(old, new, ROOTS[old], ROOTS[new], proof) == []

    def test_single_leaf_tree(self) -> None:
        """In a one-leaf tree the root is the leaf hash and the proof is empty; anything else fails."""
        leaf = leaf_hash(b"data")
        verify_inclusion(leaf, 0, 1, [], leaf)
        with pytest.raises(ProofError, match="leaf hash must be 32 bytes"):
            verify_inclusion(b"", 0, 1, [], leaf)
        with pytest.raises(ProofError, match="root must be 32 bytes"):
            verify_inclusion(leaf, 0, 1, [], b"")
        with pytest.raises(ProofError, match="leads to root"):
            verify_inclusion(leaf, 0, 1, [], SOME_HASH)

    @pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1)])
    def test_index_outside_the_tree(self, index: int, size: int) -> None:
        """An index at or beyond the size never verifies, whatever the hashes."""
        for leaf, root in [(SOME_HASH, EMPTY_ROOT), (EMPTY_ROOT, SOME_HASH), (SOME_HASH, SOME_HASH)]:
            with pytest.raises(ProofError, match="not below tree size"):
                verify_inclusion(leaf, index, size, [], root)

    @pytest.mark.parametrize(("old", "new", "old_root", "new_root", "proof", "message"), [
        (0, 0, EMPTY_ROOT, SOME_HASH, [], "different roots"),
        (1, 1, SOME_HASH, EMPTY_ROOT, [], "different roots"),
        (1, 1, SOME_HASH, SOME_HASH, [EMPTY_ROOT], "must be empty"),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], "must be empty"),
        (0, 1, EMPTY_ROOT, SOME_HASH, [EMPTY_ROOT], "from the empty tree must be empty"),
        (0, 5, SOME_HASH, SOME_HASH, [], "not the empty-tree hash"),
        (1, 0, SOME_HASH, SOME_HASH, [], "never shrinks"),
        (2, 1, SOME_HASH, SOME_HASH, [], "never shrinks"),
        (1, 2, SOME_HASH, EMPTY_ROOT, [], "has 0 hashes, expected 1"),
        (1, 2, b"don't care", EMPTY_ROOT, [SOME_HASH], "old root must be 32 bytes"),
        (-1, 2, SOME_HASH, EMPTY_ROOT, [SOME_HASH], "between 0 and 2\\*\\*64-1"),
        (1, 2**64, SOME_HASH, EMPTY_ROOT, [SOME_HASH], "between 0 and 2\\*\\*64-1"),
    ])
    def test_consistency_edge_cases(self, old: int, new: int, old_root: bytes, new_root: bytes,
                                    proof: list[bytes], message: str) -> None:
        """Equal sizes need equal roots and no proof; the empty tree needs its own root; logs never shrink."""
        with pytest.raises(ProofError, match=message):
            verify_consistency(old, new, old_root, new_root, proof)

    def test_trivially_consistent_pairs(self) -> None:
        """Same size and same root, or the empty tree to any tree, are consistent with an empty proof."""
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
        verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
        verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])

    def test_proof_length_is_capped_before_anything_else(self) -> None:
        """A proof of more than 64 hashes is refused at once (no tree below 2**64 leaves needs more)."""
        with pytest.raises(ProofError, match="no tree of fewer than 2\\*\\*64 leaves"):
            verify_inclusion(SOME_HASH, 0, 2**63, [SOME_HASH] * (MAX_PROOF_HASHES + 1), SOME_HASH)
        with pytest.raises(ProofError, match="no tree of fewer than 2\\*\\*64 leaves"):
            verify_consistency(1, 2**63, SOME_HASH, SOME_HASH, [SOME_HASH] * (MAX_PROOF_HASHES + 1))

    def test_wrong_length_says_so(self) -> None:
        """A proof of the wrong length fails on its length, with both numbers in the message."""
        proof = _vector_tree().inclusion_proof(2, 5)
        with pytest.raises(ProofError, match="leaf 2 in a tree of 5 has 2 hashes, expected 3"):
            verify_inclusion(leaf_hash(LEAF_INPUTS[2]), 2, 5, proof[:2], ROOTS[5])

    def test_roots_need_the_size_they_were_signed_with(self) -> None:
        """
        RFC 9162 proofs bind a root to a size only together: take both from one signed checkpoint.

        Leaf 0's proof in the 4-leaf tree is also a well-formed proof for "leaf 0 of
        3" (the RFC algorithm reads the hash of leaves 2-3 as leaf 2), so against the
        4-leaf *root* it verifies.  Against the real 3-leaf root it fails.  Callers
        must never pair a root with a size from anywhere but the same checkpoint.
        """
        proof = _vector_tree().inclusion_proof(0, 4)
        leaf = leaf_hash(LEAF_INPUTS[0])
        verify_inclusion(leaf, 0, 3, proof, ROOTS[4])  # a mismatched (size, root) pair: not detectable
        with pytest.raises(ProofError, match="leads to root"):
            verify_inclusion(leaf, 0, 3, proof, ROOTS[3])


# --------------------------------------------------------------------------- generated trees


class TestAgainstTheRfcDefinitions:
    def test_every_proof_up_to_40_leaves_is_the_rfc_one(self) -> None:
        """For every size ≤ 40, every inclusion and consistency proof equals the literal RFC PATH / PROOF."""
        for size in range(1, 41):
            hashes = BIG_HASHES[:size]
            assert BIG_TREE.root(size) == mth(hashes)
            for index in range(size):
                proof = BIG_TREE.inclusion_proof(index, size)
                assert proof == ref_path(index, hashes)
                assert len(proof) == inclusion_proof_length(index, size)
            for old in range(1, size):
                proof = BIG_TREE.consistency_proof(old, size)
                assert proof == ref_subproof(old, hashes, True)
                assert len(proof) == consistency_proof_length(old, size)

    def test_a_larger_tree_at_old_sizes(self) -> None:
        """Past a few thousand leaves, roots and proofs for earlier sizes still match MTH and verify."""
        hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(4099)]
        tree = MerkleTree()
        tree.extend(hashes)
        for size in (1, 2, 1024, 2048, 2049, 3000, 4096, 4099):
            root = mth(hashes[:size])
            assert tree.root(size) == root
            for index in {0, size // 2, size - 1}:
                verify_inclusion(hashes[index], index, size, tree.inclusion_proof(index, size), root)
        verify_consistency(3000, 4099, tree.root(3000), tree.root(), tree.consistency_proof(3000, 4099))

    @given(size=st.integers(1, BIG), data=st.data())
    @settings(max_examples=100, deadline=None)
    def test_every_proof_at_a_random_size_verifies(self, size: int, data: st.DataObject) -> None:
        """At any size ≤ 300, the root is MTH, every inclusion and consistency proof verifies, and one is the RFC's."""
        root = BIG_TREE.root(size)
        assert root == BIG_ROOTS[size]
        for index in range(size):
            verify_inclusion(BIG_HASHES[index], index, size, BIG_TREE.inclusion_proof(index, size), root)
        for old in range(size + 1):
            verify_consistency(old, size, BIG_ROOTS[old], root, BIG_TREE.consistency_proof(old, size))
        index = data.draw(st.integers(0, size - 1), label="index")
        assert BIG_TREE.inclusion_proof(index, size) == ref_path(index, BIG_HASHES[:size])
        old = data.draw(st.integers(1, size), label="old size")
        assert BIG_TREE.consistency_proof(old, size) == ref_subproof(old, BIG_HASHES[:size], True)


class TestCorruptionIsDetected:
    @given(size=st.integers(1, BIG), data=st.data())
    @settings(max_examples=150, deadline=None)
    def test_inclusion(self, size: int, data: st.DataObject) -> None:
        """Flip any bit of the leaf, the root or any proof hash, or claim another index or size: it fails."""
        index = data.draw(st.integers(0, size - 1), label="index")
        proof, root, leaf = BIG_TREE.inclusion_proof(index, size), BIG_ROOTS[size], BIG_HASHES[index]
        bit = data.draw(st.integers(0, 255), label="bit")
        assert _fails(verify_inclusion, _flip(leaf, bit), index, size, proof, root)
        assert _fails(verify_inclusion, leaf, index, size, proof, _flip(root, bit))
        if proof:
            position = data.draw(st.integers(0, len(proof) - 1), label="position")
            wrong = list(proof)
            wrong[position] = _flip(wrong[position], bit)
            assert _fails(verify_inclusion, leaf, index, size, wrong, root)
        other_index = data.draw(st.integers(0, size + 3).filter(lambda i: i != index), label="other index")
        assert _fails(verify_inclusion, leaf, other_index, size, proof, root)
        # Another size, with that size's own root (the pair a checkpoint would sign).
        other_size = data.draw(st.integers(index + 1, BIG).filter(lambda n: n != size), label="other size")
        assert _fails(verify_inclusion, leaf, index, other_size, proof, BIG_ROOTS[other_size])
        assert _accepted_inclusion_probes(index, size, proof, root, leaf) == []

    @given(size=st.integers(2, BIG), data=st.data())
    @settings(max_examples=150, deadline=None)
    def test_consistency(self, size: int, data: st.DataObject) -> None:
        """Flip any bit of either root or any proof hash, or claim other sizes: it fails."""
        old = data.draw(st.integers(1, size - 1), label="old size")
        proof = BIG_TREE.consistency_proof(old, size)
        old_root, new_root = BIG_ROOTS[old], BIG_ROOTS[size]
        bit = data.draw(st.integers(0, 255), label="bit")
        assert _fails(verify_consistency, old, size, _flip(old_root, bit), new_root, proof)
        assert _fails(verify_consistency, old, size, old_root, _flip(new_root, bit), proof)
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        wrong = list(proof)
        wrong[position] = _flip(wrong[position], bit)
        assert _fails(verify_consistency, old, size, old_root, new_root, wrong)
        other_old = data.draw(st.integers(0, BIG), label="other old size")
        other_new = data.draw(st.integers(other_old, BIG), label="other new size")
        if (other_old, other_new) != (old, size):
            assert _fails(verify_consistency, other_old, other_new, BIG_ROOTS[other_old], BIG_ROOTS[other_new],
                          proof)
        assert _accepted_consistency_probes(old, size, old_root, new_root, proof) == []


class TestTreeErrors:
    def test_sizes_beyond_the_tree_are_refused(self) -> None:
        """Roots and proofs exist only for sizes the tree has reached."""
        tree = _vector_tree()
        with pytest.raises(ValueError, match="outside the tree"):
            tree.root(9)
        with pytest.raises(ValueError, match="outside the tree"):
            tree.inclusion_proof(0, 9)
        with pytest.raises(ValueError, match="outside the tree"):
            tree.consistency_proof(1, 9)
        with pytest.raises(ValueError, match="outside the tree"):
            tree.root(-1)

    def test_leaf_hashes_must_be_32_bytes(self) -> None:
        """Appending or rebuilding from something that is not a SHA-256 hash is refused."""
        with pytest.raises(ValueError, match="leaf hash is 31 bytes"):
            MerkleTree().append(bytes(31))
        with pytest.raises(ValueError, match="leaf hash 1 is 33 bytes"):
            MerkleTree.from_leaf_hashes([bytes(32), bytes(33)])

    def test_leaf_hash_at(self) -> None:
        """Stored leaf hashes read back unchanged, and only inside the tree."""
        tree = _vector_tree()
        assert [tree.leaf_hash_at(i) for i in range(8)] == NODE_HASHES[0]
        with pytest.raises(ValueError, match="outside the tree"):
            tree.leaf_hash_at(8)

    def test_storage_is_one_packed_hash_per_perfect_subtree(self) -> None:
        """The tree holds exactly the completed perfect subtrees: 32 bytes each, under 64 bytes per leaf."""
        assert BIG_TREE.nbytes == 32 * sum(BIG >> level for level in range(BIG.bit_length()))
        assert BIG_TREE.nbytes < 64 * BIG

    def test_empty_and_equal_size_consistency_proofs_are_empty(self) -> None:
        """From the empty tree, or between equal sizes, there is nothing to prove."""
        tree = _vector_tree()
        assert tree.consistency_proof(0, 8) == []
        assert tree.consistency_proof(5, 5) == []
