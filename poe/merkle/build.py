"""Building Merkle sum trees and their proofs (RFC 9162 shape, docs/spec.md §10).

`Tree` holds every level of a tree over a list of leaves, so proofs can be read off it.
`CompactRange` holds only the perfect subtrees along the right edge (one per set bit of the
size), so a log can be extended by one leaf in O(log n) time and space: that is how the trace
store seals an epoch without rehashing the epochs before it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Sequence

from poe import _native

from poe.merkle.hasher import EMPTY, LEAF_SIZE, NODE_SIZE, BillNode, Node, Root, Sums, bill_key, bill_leaf, bill_node, leaf, node, parent_level
from poe.errors import ConsistencyProofError, EncodingError, InclusionProofError, InputError, RangeProofError

__all__ = ["Tree", "CompactRange", "BillEntry", "bill_tree", "ordered_tree", "perfect_root", "tree_of_records", "leaves_of_records", "native_note"]


class Tree:
    """A whole tree: level 0 is the leaves, the last level is the root."""

    def __init__(self, leaves: Sequence[Node], levels: list[list[Node]] | None = None, join: Callable[[Any, Any], Any] = node) -> None:
        if levels is None:
            levels = [list(leaves)]
            while len(levels[-1]) > 1:
                levels.append(parent_level(levels[-1], join))
        self.levels = levels
        self.size = len(levels[0])
        self.join = join  # node, or bill_node for the ordered bill tree

    @property
    def root(self) -> Root:
        top = self.levels[-1][0] if self.size else EMPTY
        return Root(self.size, top.hash, top.sums)

    def subtree(self, start: int, end: int) -> Node:
        """MTH(D[start:end]) for a range the RFC 9162 recursion can ask for."""
        if not 0 <= start < end <= self.size:
            raise InputError(f"range {start}..{end} is outside a tree of {self.size}")
        width = end - start
        height = (width - 1).bit_length()
        if start % (1 << height) == 0 and (width == 1 << height or end == self.size):
            return self.levels[height][start >> height]
        split = 1 << ((width - 1).bit_length() - 1)
        return self.join(self.subtree(start, start + split), self.subtree(start + split, end))

    def inclusion_path(self, index: int) -> list[Node]:
        if not 0 <= index < self.size:
            raise InclusionProofError(f"leaf {index} is outside a tree of {self.size}", expected=self.size, observed=index)
        path = []
        i = index
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i >>= 1
        return path

    def consistency_path(self, old_size: int) -> list[Node]:
        """RFC 9162 §2.1.4.1 PROOF(m, D[n]): shows this tree extends its first `old_size` leaves."""
        if not 0 < old_size <= self.size:
            raise ConsistencyProofError(
                f"no consistency proof from size {old_size} to {self.size}", expected=self.size, observed=old_size
            )
        return self._subproof(old_size, 0, self.size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[Node]:
        n = end - start
        if m == n:
            return [] if complete else [self.subtree(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return self._subproof(m, start, start + k, complete) + [self.subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.subtree(start, start + k)]

    def cover(self, start: int, end: int) -> list[Node]:
        """The maximal subtrees of the RFC 9162 recursion inside leaves start..end-1, left to
        right: what `verify_partition` rebuilds a range from without its leaves."""
        if not 0 <= start < end <= self.size:
            raise InputError(f"range {start}..{end} is outside a tree of {self.size}")
        out: list[Node] = []

        def walk(lo: int, hi: int) -> None:
            if hi <= start or end <= lo:
                return
            if start <= lo and hi <= end:
                out.append(self.subtree(lo, hi))
                return
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            walk(lo, lo + k)
            walk(lo + k, hi)

        walk(0, self.size)
        return out

    def range_path(self, start: int, end: int) -> list[Node]:
        """The nodes a range proof of leaves start..end-1 carries: every maximal subtree of the
        RFC 9162 recursion that holds none of them, left to right (at most two per level)."""
        if not 0 <= start < end <= self.size:
            raise RangeProofError(f"range {start}..{end} is outside a tree of {self.size}", expected=self.size, observed=[start, end])
        return self._range(start, end, 0, self.size)

    def _range(self, start: int, end: int, lo: int, hi: int) -> list[Node]:
        if end <= lo or hi <= start:
            return [self.subtree(lo, hi)]
        if start <= lo and hi <= end:
            return []
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return self._range(start, end, lo, lo + k) + self._range(start, end, lo + k, hi)


def _reference_perfect_root(records: bytes) -> Node:
    level = [leaf(records[i : i + LEAF_SIZE]) for i in range(0, len(records), LEAF_SIZE)]
    while len(level) > 1:
        level = parent_level(level)
    return level[0]


class _PackedLevel:
    """A level as the native kernel returns it (hashes and sums back to back); Node on access."""

    __slots__ = ("hashes", "sums")

    def __init__(self, hashes: bytes, sums: bytes) -> None:
        self.hashes, self.sums = hashes, sums

    def __len__(self) -> int:
        return len(self.hashes) // 32

    def __getitem__(self, i: int) -> Node:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return Node(self.hashes[32 * i : 32 * i + 32], Sums.decode(self.sums[48 * i : 48 * i + 48]))


def native_note() -> str | None:
    """A one-line note for users when the native kernel is missing, else None."""
    if _native.AVAILABLE:
        return None
    return f"{_native.LOAD_ERROR} Using the pure-Python tree, which is about 70x slower."


def perfect_root(records: bytes) -> Node:
    """Root of a perfect subtree of records: native when built, else the reference."""
    if _native.AVAILABLE:
        digest, sums = _native.root(records)
        return Node(digest, Sums.decode(sums))
    return _reference_perfect_root(records)


def tree_of_records(records: bytes) -> Tree:
    """Every level of the tree over concatenated records: native when built, else the reference."""
    if _native.AVAILABLE and records:
        levels = [_PackedLevel(hs, ss) for hs, ss in _native.tree_levels(records)]
        return Tree((), levels)  # type: ignore[arg-type]
    return Tree(leaves_of_records(records))


def leaves_of_records(records: bytes) -> Sequence[Node]:
    """The leaves of concatenated records, in order: native when built, else the reference."""
    if _native.AVAILABLE and records:
        return _PackedLevel(*_native.leaf_hashes(records))
    return [leaf(records[i : i + LEAF_SIZE]) for i in range(0, len(records), LEAF_SIZE)]


class CompactRange:
    """The right edge of a growing tree: enough to append leaves and compute every root."""

    def __init__(self, size: int = 0, peaks: Sequence[Node] = ()) -> None:
        if len(peaks) != bin(size).count("1"):
            raise EncodingError(f"a compact range of size {size} has {bin(size).count('1')} peaks, got {len(peaks)}")
        self.size = size
        self.peaks = list(peaks)  # largest subtree first

    def append(self, leaf: Node) -> None:
        self._push(leaf, 0)

    def _push(self, subtree: Node, height: int) -> None:
        """Append the root of a perfect subtree of 2^height leaves (size must be aligned to it)."""
        assert self.size % (1 << height) == 0
        self.peaks.append(subtree)
        self.size += 1 << height
        # Merge while the two smallest peaks have the same height: one merge per carry.
        merges = (self.size & -self.size).bit_length() - 1 - height
        for _ in range(merges):
            right = self.peaks.pop()
            left = self.peaks.pop()
            self.peaks.append(node(left, right))

    def extend_records(self, records: bytes, perfect_root: Callable[[bytes], Node] | None = None) -> None:
        """Append many 288-byte records at once.

        The new range splits into maximal aligned perfect subtrees; `perfect_root(chunk)` gives
        the root of each (a native kernel hashes it in bulk), and only those roots are merged
        here. Without one, the reference hashes leaf by leaf.
        """
        if len(records) % LEAF_SIZE:
            raise EncodingError(f"records must be a multiple of {LEAF_SIZE} bytes, got {len(records)}")
        root_of_chunk = perfect_root or _reference_perfect_root
        n, i = len(records) // LEAF_SIZE, 0
        while i < n:
            aligned = self.size & -self.size if self.size else 1 << 63
            k = 1 << min(aligned.bit_length() - 1, (n - i).bit_length() - 1)
            self._push(root_of_chunk(records[i * LEAF_SIZE : (i + k) * LEAF_SIZE]), k.bit_length() - 1)
            i += k

    def extend(self, leaves: Iterable[Node]) -> None:
        for entry in leaves:
            self.append(entry)

    @property
    def root(self) -> Root:
        if not self.peaks:
            return Root(0, EMPTY.hash, EMPTY.sums)
        acc = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            acc = node(peak, acc)
        return Root(self.size, acc.hash, acc.sums)

    def encode(self) -> bytes:
        return self.size.to_bytes(8, "little") + b"".join(p.encode() for p in self.peaks)

    @classmethod
    def decode(cls, raw: bytes) -> CompactRange:
        if len(raw) < 8 or (len(raw) - 8) % NODE_SIZE:
            raise EncodingError("malformed compact range")
        size = int.from_bytes(raw[:8], "little")
        peaks = [Node.decode(raw[i : i + NODE_SIZE]) for i in range(8, len(raw), NODE_SIZE)]
        if len(peaks) != bin(size).count("1"):
            raise EncodingError("compact range has the wrong number of peaks for its size")
        return cls(size, peaks)


ANONYMOUS = bytes(20)


class BillEntry(NamedTuple):
    """One segment of an epoch as its bill tree sees it (spec §14.2)."""

    customer: bytes  # 20 address bytes; ANONYMOUS for a segment no request asked for
    sequence: int  # the request's sequence; the segment's index for an anonymous one
    index: int
    record: Node  # the record's leaf in the record tree

    @property
    def key(self) -> bytes:
        return bill_key(self.customer, self.sequence)

    @property
    def leaf(self) -> BillNode:
        """The bill tree's leaf: the leaf hash of spec §14.2, and its key as both ends of its interval."""
        plain = bill_leaf(self.customer, self.sequence, self.index, self.record)
        k = self.key
        return BillNode(plain.hash, plain.sums, k, k)


def ordered_tree(leaves: Sequence[BillNode]) -> Tree:
    """A bill tree over `leaves` in the order given (a provider's; the verifier checks it)."""
    return Tree(leaves, join=bill_node)


def bill_tree(entries: Iterable[BillEntry]) -> tuple[list[BillEntry], Tree]:
    """An epoch's bill tree: its entries sorted by (customer, sequence), and the ordered tree
    (spec §14.2) over their leaves. Each customer's segments are one contiguous range, so one
    range proof shows all of them and what they add up to; a key that appears twice is refused,
    since no honest store has it."""
    ordered = sorted(entries, key=lambda e: (e.customer, e.sequence))
    for a, b in zip(ordered, ordered[1:]):
        if (a.customer, a.sequence) == (b.customer, b.sequence):
            raise InputError(f"segments {a.index} and {b.index} answer the same request (customer 0x{a.customer.hex()}, sequence {a.sequence})")
    return ordered, ordered_tree([e.leaf for e in ordered])
