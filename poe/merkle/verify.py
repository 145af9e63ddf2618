"""Verifying Merkle sum tree proofs (docs/spec.md §10; RFC 9162 §2.1.3.2 and §2.1.4.2 with sums).

Pure functions: no I/O. They return None on success and raise a typed error otherwise, never a
bare False: ``RootMismatchError`` carries the expected and the calculated root.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import Any
from dataclasses import dataclass

from poe.merkle.hasher import _BILL_NODE, _NODE, BILL_NODE_SIZE, EMPTY, KEY_SIZE, NODE_SIZE, U128 as _U128, BillNode, Node, Root, Sums, leaf, node
from poe.errors import (
    ConsistencyProofError,
    EncodingError,
    InclusionProofError,
    BillOrderError,
    RangeProofError,
    RootMismatchError,
    SumOverflowError,
)

__all__ = ["InclusionProof", "ConsistencyProof", "RangeProof", "verify_inclusion", "verify_consistency", "verify_range", "verify_partition", "verify_encoded_inclusion", "verify_bill_range", "encode_bill_range", "MAX_BILL_PROOF_BYTES", "left_sums",
           "MAX_PROOF_BYTES"]

PROOF_VERSION = 1
_KIND_INCLUSION, _KIND_CONSISTENCY, _KIND_RANGE, _KIND_BILL_RANGE = 1, 2, 3, 4
_HEADER = struct.Struct("<BBQQB")
MAX_PATH = 64
#: the longest encoded proof a decoder takes
MAX_PROOF_BYTES = _HEADER.size + MAX_PATH * NODE_SIZE
#: the longest encoded bill range proof a decoder takes (two entries a level at most)
MAX_BILL_PROOF_BYTES = _HEADER.size + 2 * MAX_PATH * BILL_NODE_SIZE


def _header(raw: bytes, kind: int, what: str, max_path: int = MAX_PATH, width: int = NODE_SIZE) -> tuple[int, int, int]:
    """The two numbers and the path length of an encoded proof of `kind`, once its version,
    kind, path length and total length are checked: what decoders and in-place readers share."""
    if len(raw) < _HEADER.size:
        raise EncodingError(f"{what} is truncated: {len(raw)} bytes")
    version, k, a, b, count = _HEADER.unpack_from(raw)
    if version != PROOF_VERSION:
        raise EncodingError(f"{what} version {version} is not supported", expected=PROOF_VERSION, observed=version)
    if k != kind:
        raise EncodingError(f"this is not an {what} (kind {k})")
    if count > max_path:
        raise EncodingError(f"{what} path of {count} entries is longer than any tree needs")
    if len(raw) != _HEADER.size + count * width:
        raise EncodingError(f"{what} should be {_HEADER.size + count * width} bytes for {count} entries, got {len(raw)}")
    return a, b, count


def _decode(raw: bytes, kind: int, what: str, max_path: int = MAX_PATH) -> tuple[int, int, tuple[Node, ...]]:
    a, b, _ = _header(raw, kind, what, max_path)
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
    tests/test_tree.py checks it against the builder on every tree shape it tries."""
    return _climb(entry, proof.index, proof.size, len(proof.path), (_step(p) for p in proof.path))


def _climb(entry: Node, index: int, size: int, length: int, steps: Iterator[tuple[bytes, int, int, int]]) -> Node:
    """The inclusion-proof walk of spec §10 over (encoded node, fuel, mem, io) steps. Works on
    bytes and ints rather than Node objects: verification is the auditor's and the customer's
    hot loop."""
    if index >= size:
        raise InclusionProofError(f"leaf index {index} is outside a tree of {size}", expected=f"< {size}", observed=index)
    fn, sn = index, size - 1
    digest = entry.hash
    fuel, mem, io = entry.sums.fuel, entry.sums.mem, entry.sums.io
    enc = entry.sums.encode()
    for blob, pf, pm, pi in steps:
        if sn == 0:
            raise InclusionProofError(
                f"inclusion proof is longer than a tree of {size} needs for leaf {index}", expected="shorter path", observed=length,
            )
        h = _NODE.copy()
        if fn & 1 or fn == sn:
            h.update(blob + digest + enc)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            h.update(digest + enc + blob)
        digest = h.digest()
        fuel, mem, io = fuel + pf, mem + pm, io + pi
        if fuel >= _U128 or mem >= _U128 or io >= _U128:
            raise InclusionProofError("inclusion proof sums overflow 2^128")
        enc = fuel.to_bytes(16, "little") + mem.to_bytes(16, "little") + io.to_bytes(16, "little")
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InclusionProofError(f"inclusion proof is too short for leaf {index} of a tree of {size}", expected="longer path", observed=length)
    return Node(digest, Sums(fuel, mem, io))


def verify_encoded_inclusion(record: bytes, raw: bytes, root: Root) -> int:
    """verify_inclusion for an encoded inclusion proof, read in place rather than decoded into
    nodes (the same checks: version, kind, length, path): returns the leaf index it proves."""
    raw = bytes(raw)
    index, size, count = _header(raw, _KIND_INCLUSION, "inclusion proof")
    if size != root.size:
        raise InclusionProofError(f"proof is for a tree of {size}, the root is of {root.size}", expected=root.size, observed=size)
    _check_root(_climb(leaf(record), index, size, count, _steps_of(raw, _HEADER.size)), root, f"inclusion proof for leaf {index}")
    return index


def verify_inclusion(record: bytes, proof: InclusionProof, root: Root) -> None:
    """Check that `record` is leaf `proof.index` of the tree whose head is `root`."""
    if proof.size != root.size:
        raise InclusionProofError(f"proof is for a tree of {proof.size}, the root is of {root.size}", expected=root.size, observed=proof.size)
    _check_root(root_from_inclusion(leaf(record), proof), root, f"inclusion proof for leaf {proof.index}")


_Step = tuple  # (encoded node: 32-byte hash and 48-byte sums, fuel, mem, io): what the fast walks carry


def _step(n: Node) -> _Step:
    return (n.hash + n.sums.encode(), n.sums.fuel, n.sums.mem, n.sums.io)


def _steps_of(raw: bytes, first: int, width: int = NODE_SIZE) -> Iterator[_Step]:
    """The path entries of an encoded proof, read in place (spec §10's entry encoding; a bill
    tree's entries also carry their least and greatest key, spec §14.2)."""
    frm = int.from_bytes
    for at in range(first, len(raw), width):
        step = (raw[at : at + width], frm(raw[at + 32 : at + 48], "little"), frm(raw[at + 48 : at + 64], "little"),
                frm(raw[at + 64 : at + 80], "little"))
        yield step if width == NODE_SIZE else step + (raw[at + 80 : at + 80 + KEY_SIZE], raw[at + 80 + KEY_SIZE : at + width])


def _bill_step(n: BillNode) -> _Step:
    return (n.encode(), n.sums.fuel, n.sums.mem, n.sums.io, n.lo, n.hi)


def _bill_join(a: _Step, b: _Step, disorder: list | None = None) -> _Step:
    """A bill-tree parent, checked: the left subtree's greatest key must be below the right's
    least. With `disorder`, a violation is noted there (and raised once the root is matched, so
    it is a fault of the signed tree) instead of raised at once."""
    # Each child's interval must be a real one (a path node's is the provider's word) and the
    # left's keys all below the right's: then every leaf whose proof passes lies inside each
    # interval above it, and two such leaves are in strict key order (spec §14.3).
    if a[5] >= b[4] or a[4] > a[5] or b[4] > b[5]:
        if disorder is None:
            raise BillOrderError("the bill tree is out of (customer, sequence) order: a subtree's keys do not all come before its right "
                                 "neighbour's (a request billed twice, or a forged order)", observed=[a[5].hex(), b[4].hex()])
        disorder.append((a[5], b[4]))
    h = _BILL_NODE.copy()
    h.update(a[0] + b[0])
    fuel, mem, io = a[1] + b[1], a[2] + b[2], a[3] + b[3]
    if fuel >= _U128 or mem >= _U128 or io >= _U128:
        raise RangeProofError("range proof sums overflow 2^128")
    return (h.digest() + fuel.to_bytes(16, "little") + mem.to_bytes(16, "little") + io.to_bytes(16, "little") + a[4] + b[5],
            fuel, mem, io, a[4], b[5])


def _plain_join(a: _Step, b: _Step, disorder: list | None = None) -> _Step:
    h = _NODE.copy()
    h.update(a[0] + b[0])
    fuel, mem, io = a[1] + b[1], a[2] + b[2], a[3] + b[3]
    if fuel >= _U128 or mem >= _U128 or io >= _U128:
        raise RangeProofError("range proof sums overflow 2^128")
    return (h.digest() + fuel.to_bytes(16, "little") + mem.to_bytes(16, "little") + io.to_bytes(16, "little"), fuel, mem, io)


def _range_root(leaves: Sequence[Any], path: Iterator[_Step], start: int, end: int, size: int,
                bill: bool = False) -> tuple[_Step, Sums, bool]:
    """Rebuild the root from a range's leaves and the proof's path (spec §10, range proof), the
    sums of the path's subtrees left of the range (its offset, committed by the root), and, with
    `bill` (the ordered bill tree's nodes), whether a parent rebuilt was out of key order."""
    if not 0 <= start < end <= size or len(leaves) != end - start:
        raise RangeProofError(f"a range proof of leaves {start}..{end} with {len(leaves)} leaves does not fit a tree of {size}",
                              expected=[0, size], observed=[start, end, len(leaves)])
    disorder: list = []
    join = _bill_join if bill else _plain_join
    inside = [_bill_step(n) if bill else _step(n) for n in leaves]
    left = [0, 0, 0]

    def rebuild(lo: int, hi: int) -> _Step:
        if start <= lo and hi <= end:
            level = inside[lo - start : hi - start]
            while len(level) > 1:
                level = [join(level[i], level[i + 1], disorder) for i in range(0, len(level) - 1, 2)] + ([level[-1]] if len(level) % 2 else [])
            return level[0]
        k = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        # A half outside the range is one path entry; the sums of those left of it are the offset.
        if k <= start:
            taken = next(path, None)
            if taken is None:
                raise RangeProofError(f"the range proof is too short for leaves {start}..{end} of {size}")
            left[0], left[1], left[2] = left[0] + taken[1], left[1] + taken[2], left[2] + taken[3]
            return join(taken, rebuild(k, hi), disorder)
        a = rebuild(lo, k)
        if end <= k:
            taken = next(path, None)
            if taken is None:
                raise RangeProofError(f"the range proof is too short for leaves {start}..{end} of {size}")
            return join(a, taken, disorder)
        return join(a, rebuild(k, hi), disorder)

    top = rebuild(0, size)
    if next(path, None) is not None:
        raise RangeProofError(f"the range proof is longer than leaves {start}..{end} of {size} need")
    if max(left) >= _U128:
        raise RangeProofError("range proof sums overflow 2^128")
    return top, Sums(*left), bool(disorder)


def _check_range_root(top: _Step, root: Root, start: int, end: int) -> None:
    _check_root(Node(top[0][:32], Sums(top[1], top[2], top[3])), root, f"range proof of leaves {start}..{end}")


def verify_range(leaves: Sequence[Node], proof: RangeProof, root: Root) -> Sums:
    """Check that `leaves` are leaves proof.start..proof.end-1 of the tree whose head is `root`,
    and return their sums: what a contiguous range (one customer's bill, say) adds up to, with
    nothing left out or added inside it."""
    top, _, _ = _range_root(leaves, (_step(p) for p in proof.path), proof.start, proof.end, root.size)
    _check_range_root(top, root, proof.start, proof.end)
    total = Sums()
    for entry in leaves:
        total = total + entry.sums
    return total


def encode_bill_range(start: int, end: int, path: Sequence[BillNode]) -> bytes:
    """A range proof of bill-tree leaves start..end-1 (kind 4): the range proof of §10 whose
    entries also carry each subtree's least and greatest key (spec §14.2)."""
    return _HEADER.pack(PROOF_VERSION, _KIND_BILL_RANGE, start, end, len(path)) + b"".join(p.encode() for p in path)


def verify_bill_range(leaves: Sequence[BillNode], raw: bytes, root: Root) -> tuple[int, int, Sums, Sums]:
    """Check an encoded bill range proof: `leaves` are leaves start..end-1 of the ordered bill
    tree whose head is `root`, and every parent on the way up is in strict key order. Returns
    start, end, the sums of every leaf before the range (its offset) and the range's sums."""
    raw = bytes(raw)
    start, end, _ = _header(raw, _KIND_BILL_RANGE, "bill range proof", 2 * MAX_PATH, BILL_NODE_SIZE)
    top, left, disordered = _range_root(leaves, _steps_of(raw, _HEADER.size, BILL_NODE_SIZE), start, end, root.size, bill=True)
    _check_range_root(top, root, start, end)
    # Checked after the root matched, so a BillOrderError is the signed tree's own fault.
    if disordered or any(a.hi >= b.lo for a, b in zip(leaves, leaves[1:])):
        raise BillOrderError("the bill tree is out of (customer, sequence) order where this proof climbs: a request billed twice, "
                             "or a forged order")
    total = Sums()
    for n in leaves:
        total = total + n.sums
    return start, end, left, total


def verify_partition(parts: Sequence[tuple[int, int, Sequence[Any]]], root: Root, bill: bool = False) -> list[Sums]:
    """Check that `parts` — (start, end, covering nodes) for ranges that partition the tree's
    leaves in order — rebuild the tree whose head is `root`, and return each range's sums.

    A range's covering nodes are the maximal subtrees of the RFC 9162 recursion inside it, left
    to right (`Tree.cover`), so a partition of n leaves into m ranges needs O(m log n) nodes and
    no leaf. The root commits every node's sums, so each range's sums are fixed by it; which
    leaves a range holds is not by the sums alone; with `bill`, the nodes are the ordered bill
    tree's, whose keys pin it: the caller checks each range's nodes against its keys."""
    size = root.size
    starts = [p[0] for p in parts]
    if not parts or starts[0] != 0 or parts[-1][1] != size or any(a[1] != b[0] for a, b in zip(parts, parts[1:])) \
            or any(start >= end for start, end, _ in parts):
        raise RangeProofError(f"the ranges do not partition the {size} leaves in order", expected=[0, size])
    as_step, join = (_bill_step, _bill_join) if bill else (_step, _plain_join)
    taken = [iter(nodes) for _, _, nodes in parts]
    sums = [Sums() for _ in parts]

    def rebuild(lo: int, hi: int) -> _Step:
        i = bisect_right(starts, lo) - 1
        if hi <= parts[i][1]:
            got = next(taken[i], None)
            if got is None:
                raise RangeProofError(f"range {parts[i][0]}..{parts[i][1]} has too few covering nodes")
            sums[i] = sums[i] + got.sums
            return as_step(got)
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return join(rebuild(lo, lo + k), rebuild(lo + k, hi))

    try:
        top = rebuild(0, size)
    except SumOverflowError:
        raise RangeProofError("partition sums overflow 2^128") from None
    if any(next(t, None) is not None for t in taken):
        raise RangeProofError("a range carries more covering nodes than it needs")
    _check_root(Node(top[0][:32], Sums(top[1], top[2], top[3])), root, "the partition's covering nodes")
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
