"""Verifying Merkle sum tree proofs (docs/spec.md §10; RFC 9162 §2.1.3.2 and §2.1.4.2 with sums).

Pure functions: no I/O. They return None on success and raise a typed error otherwise, never a
bare False: ``RootMismatchError`` carries the expected and the calculated root.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from poe.merkle.hasher import _NODE, EMPTY, NODE_SIZE, U128 as _U128, Node, Root, Sums, leaf, node, parent_level
from poe.errors import (
    ConsistencyProofError,
    EncodingError,
    InclusionProofError,
    RangeProofError,
    RootMismatchError,
    SumOverflowError,
)

__all__ = ["InclusionProof", "ConsistencyProof", "RangeProof", "verify_inclusion", "verify_consistency", "verify_range", "verify_partition", "range_left_sums", "left_sums",
           "MAX_PROOF_BYTES"]

PROOF_VERSION = 1
_KIND_INCLUSION, _KIND_CONSISTENCY, _KIND_RANGE = 1, 2, 3
_HEADER = struct.Struct("<BBQQB")
MAX_PATH = 64
#: the longest encoded proof a decoder takes
MAX_PROOF_BYTES = _HEADER.size + MAX_PATH * NODE_SIZE


def _decode(raw: bytes, kind: int, what: str, max_path: int = MAX_PATH) -> tuple[int, int, tuple[Node, ...]]:
    if len(raw) < _HEADER.size:
        raise EncodingError(f"{what} is truncated: {len(raw)} bytes")
    version, k, a, b, count = _HEADER.unpack_from(raw)
    if version != PROOF_VERSION:
        raise EncodingError(f"{what} version {version} is not supported", expected=PROOF_VERSION, observed=version)
    if k != kind:
        raise EncodingError(f"this is not an {what} (kind {k})")
    if count > max_path:
        raise EncodingError(f"{what} path of {count} entries is longer than any tree needs")
    if len(raw) != _HEADER.size + count * NODE_SIZE:
        raise EncodingError(
            f"{what} should be {_HEADER.size + count * NODE_SIZE} bytes for {count} entries, got {len(raw)}",
        )
    path = tuple(Node.decode(raw[i : i + NODE_SIZE]) for i in range(_HEADER.size, len(raw), NODE_SIZE))
    return a, b, path


def _encode(kind: int, a: int, b: int, path: tuple[Node, ...]) -> bytes:
    return _HEADER.pack(PROOF_VERSION, kind, a, b, len(path)) + b"".join(p.encode() for p in path)


@dataclass(frozen=True)
class InclusionProof:
    index: int
    size: int
    path: tuple[Node, ...]

    def encode(self) -> bytes:
        return _encode(_KIND_INCLUSION, self.index, self.size, self.path)

    @classmethod
    def decode(cls, raw: bytes) -> InclusionProof:
        index, size, path = _decode(bytes(raw), _KIND_INCLUSION, "inclusion proof")
        return cls(index, size, path)


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    path: tuple[Node, ...]

    def encode(self) -> bytes:
        return _encode(_KIND_CONSISTENCY, self.old_size, self.new_size, self.path)

    @classmethod
    def decode(cls, raw: bytes) -> ConsistencyProof:
        old, new, path = _decode(bytes(raw), _KIND_CONSISTENCY, "consistency proof")
        return cls(old, new, path)


@dataclass(frozen=True)
class RangeProof:
    """Leaves start..end-1 of a tree: the subtrees around them, left to right (spec §10)."""

    start: int
    end: int
    path: tuple[Node, ...]

    def encode(self) -> bytes:
        return _encode(_KIND_RANGE, self.start, self.end, self.path)

    @classmethod
    def decode(cls, raw: bytes) -> RangeProof:
        start, end, path = _decode(bytes(raw), _KIND_RANGE, "range proof", 2 * MAX_PATH)
        return cls(start, end, path)


def _check_root(calculated: Node, root: Root, what: str) -> None:
    if calculated.hash != root.hash or calculated.sums != root.sums:
        raise RootMismatchError(
            f"{what} leads to a different root" + (" (same hash, other totals)" if calculated.hash == root.hash else ""),
            expected=Root(root.size, root.hash, root.sums).to_json(),
            calculated=Root(root.size, calculated.hash, calculated.sums).to_json(),
        )


def root_from_inclusion(entry: Node, proof: InclusionProof) -> Node:
    """The root an inclusion proof leads to from `entry` (raises if the path does not fit).

    Works on raw bytes and ints rather than Node objects: verification is the auditor's hot
    loop. tests/test_tree.py checks it against the builder on every tree shape it tries.
    """
    index, size = proof.index, proof.size
    if index >= size:
        raise InclusionProofError(f"leaf index {index} is outside a tree of {size}", expected=f"< {size}", observed=index)
    fn, sn = index, size - 1
    digest = entry.hash
    fuel, mem, io = entry.sums.fuel, entry.sums.mem, entry.sums.io
    enc = entry.sums.encode()
    for p in proof.path:
        if sn == 0:
            raise InclusionProofError(
                f"inclusion proof is longer than a tree of {size} needs for leaf {index}",
                expected="shorter path", observed=len(proof.path),
            )
        ps = p.sums
        h = _NODE.copy()
        if fn & 1 or fn == sn:
            h.update(p.hash + ps.encode() + digest + enc)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            h.update(digest + enc + p.hash + ps.encode())
        digest = h.digest()
        fuel, mem, io = fuel + ps.fuel, mem + ps.mem, io + ps.io
        if fuel >= _U128 or mem >= _U128 or io >= _U128:
            raise InclusionProofError("inclusion proof sums overflow 2^128")
        enc = fuel.to_bytes(16, "little") + mem.to_bytes(16, "little") + io.to_bytes(16, "little")
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError(
            f"inclusion proof is too short for leaf {index} of a tree of {size}", expected="longer path", observed=len(proof.path)
        )
    return Node(digest, Sums(fuel, mem, io))


def verify_inclusion(record: bytes, proof: InclusionProof, root: Root) -> None:
    """Check that `record` is leaf `proof.index` of the tree whose head is `root`."""
    if proof.size != root.size:
        raise InclusionProofError(f"proof is for a tree of {proof.size}, the root is of {root.size}", expected=root.size, observed=proof.size)
    _check_root(root_from_inclusion(leaf(record), proof), root, f"inclusion proof for leaf {proof.index}")


def verify_range(leaves: Sequence[Node], proof: RangeProof, root: Root) -> Sums:
    """Check that `leaves` are leaves proof.start..proof.end-1 of the tree whose head is `root`,
    and return their sums: what a contiguous range (one customer's bill, say) adds up to, with
    nothing left out or added inside it."""
    start, end, size = proof.start, proof.end, root.size
    if not 0 <= start < end <= size or len(leaves) != end - start:
        raise RangeProofError(f"a range proof of leaves {start}..{end} with {len(leaves)} leaves does not fit a tree of {size}",
                              expected=[0, size], observed=[start, end, len(leaves)])
    path = iter(proof.path)

    def rebuild(lo: int, hi: int) -> Node:
        if end <= lo or hi <= start:
            taken = next(path, None)
            if taken is None:
                raise RangeProofError(f"the range proof is too short for leaves {start}..{end} of {size}")
            return taken
        if start <= lo and hi <= end:
            level = list(leaves[lo - start : hi - start])
            while len(level) > 1:
                level = parent_level(level)
            return level[0]
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return node(rebuild(lo, lo + k), rebuild(lo + k, hi))

    try:
        calculated = rebuild(0, size)
    except SumOverflowError:
        raise RangeProofError("range proof sums overflow 2^128") from None
    if next(path, None) is not None:
        raise RangeProofError(f"the range proof is longer than leaves {start}..{end} of {size} need")
    _check_root(calculated, root, f"range proof of leaves {start}..{end}")
    total = Sums()
    for entry in leaves:
        total = total + entry.sums
    return total


def range_left_sums(proof: RangeProof, size: int) -> Sums:
    """Sums of every leaf before `proof.start`: the subtrees the proof carries left of its range.

    Once the proof verifies (verify_range), those sums are committed in the root, so this is the
    range's true offset in every metered quantity, as left_sums is for an inclusion proof.
    """
    start, end = proof.start, proof.end
    path = iter(proof.path)
    total = Sums()

    def walk(lo: int, hi: int) -> None:
        nonlocal total
        if end <= lo or hi <= start:
            taken = next(path, None)
            if taken is None:
                raise RangeProofError(f"the range proof is too short for leaves {start}..{end} of {size}")
            if hi <= start:
                total = total + taken.sums
            return
        if start <= lo and hi <= end:
            return
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        walk(lo, lo + k)
        walk(lo + k, hi)

    if not 0 <= start < end <= size:
        raise RangeProofError(f"a range proof of leaves {start}..{end} does not fit a tree of {size}")
    try:
        walk(0, size)
    except SumOverflowError:
        raise RangeProofError("range proof sums overflow 2^128") from None
    return total


def verify_partition(parts: Sequence[tuple[int, int, Sequence[Node]]], root: Root) -> list[Sums]:
    """Check that `parts` — (start, end, covering nodes) for ranges that partition the tree's
    leaves in order — rebuild the tree whose head is `root`, and return each range's sums.

    A range's covering nodes are the maximal subtrees of the RFC 9162 recursion inside it, left
    to right (`Tree.cover`), so a partition of n leaves into m ranges needs O(m log n) nodes and
    no leaf. The root commits every node's sums, so each range's sums are fixed by it; which
    leaves a range holds is not (a customer's own bill pins its range)."""
    size = root.size
    starts = [p[0] for p in parts]
    if not parts or starts[0] != 0 or parts[-1][1] != size or any(a[1] != b[0] for a, b in zip(parts, parts[1:])) \
            or any(start >= end for start, end, _ in parts):
        raise RangeProofError(f"the ranges do not partition the {size} leaves in order", expected=[0, size])
    taken = [iter(nodes) for _, _, nodes in parts]
    sums = [Sums() for _ in parts]

    def rebuild(lo: int, hi: int) -> Node:
        i = bisect_right(starts, lo) - 1
        if hi <= parts[i][1]:
            got = next(taken[i], None)
            if got is None:
                raise RangeProofError(f"range {parts[i][0]}..{parts[i][1]} has too few covering nodes")
            sums[i] = sums[i] + got.sums
            return got
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return node(rebuild(lo, lo + k), rebuild(lo + k, hi))

    try:
        calculated = rebuild(0, size)
    except SumOverflowError:
        raise RangeProofError("partition sums overflow 2^128") from None
    if any(next(t, None) is not None for t in taken):
        raise RangeProofError("a range carries more covering nodes than it needs")
    _check_root(calculated, root, "the partition's covering nodes")
    return sums


def verify_consistency(old: Root, new: Root, proof: ConsistencyProof) -> None:
    """Check that the tree with head `new` extends the tree with head `old` (RFC 9162 §2.1.4.2)."""
    if (proof.old_size, proof.new_size) != (old.size, new.size):
        raise ConsistencyProofError(
            f"proof is from size {proof.old_size} to {proof.new_size}, the roots are of {old.size} and {new.size}",
            expected=[old.size, new.size], observed=[proof.old_size, proof.new_size],
        )
    m, n, path = old.size, new.size, list(proof.path)
    if m > n:
        raise ConsistencyProofError(f"old size {m} is larger than new size {n}", expected=f"<= {n}", observed=m)
    if m == n:
        if path:
            raise ConsistencyProofError("equal sizes need an empty proof", expected=0, observed=len(path))
        _check_root(old.node, new, "consistency of equal-size trees")
        return
    if m == 0:
        if path:
            raise ConsistencyProofError("a proof from the empty tree must be empty", expected=0, observed=len(path))
        if old.hash != EMPTY.hash or old.sums != EMPTY.sums:
            raise RootMismatchError("a head of size 0 must be the empty tree", expected=Root(0, EMPTY.hash, EMPTY.sums).to_json(), calculated=old.to_json())
        return  # every tree extends the empty one
    if m & (m - 1) == 0:
        path.insert(0, old.node)
    if not path:
        raise ConsistencyProofError("consistency proof is empty", expected="entries", observed=0)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    try:
        for c in path[1:]:
            if sn == 0:
                raise ConsistencyProofError("consistency proof is longer than needed", expected="shorter path", observed=len(proof.path))
            if fn & 1 or fn == sn:
                fr = node(c, fr)
                sr = node(c, sr)
                if not fn & 1:
                    while not fn & 1 and fn != 0:
                        fn >>= 1
                        sn >>= 1
            else:
                sr = node(sr, c)
            fn >>= 1
            sn >>= 1
    except SumOverflowError as exc:
        raise ConsistencyProofError(f"consistency proof sums overflow: {exc.message}") from None
    if sn != 0:
        raise ConsistencyProofError("consistency proof is too short", expected="longer path", observed=len(proof.path))
    _check_root(fr, old, "consistency proof (old root)")
    _check_root(sr, new, "consistency proof (new root)")


def left_sums(proof: InclusionProof) -> Sums:
    """Sums of every leaf before `proof.index`: the left siblings along the path.

    Their sums are committed in the nodes the proof climbs through, so once the proof verifies,
    this is the leaf's true offset in every metered quantity; a weighted sample checks that its
    target falls inside [offset, offset + leaf) without trusting the provider's descent.
    """
    fn, sn = proof.index, proof.size - 1
    fuel = mem = io = 0
    for p in proof.path:
        if sn == 0:
            raise InclusionProofError("inclusion proof is longer than its tree needs")
        if fn & 1 or fn == sn:  # the verifier computes Node(p, r): p is the left sibling
            fuel, mem, io = fuel + p.sums.fuel, mem + p.sums.mem, io + p.sums.io
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        fn >>= 1
        sn >>= 1
    return Sums(fuel, mem, io)
