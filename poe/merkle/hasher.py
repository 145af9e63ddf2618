"""Merkle sum tree hashing strategy (docs/spec.md §10): leaves, nodes, sums, roots.

Pure Python over blake3-py; the reference that the native kernel must match bit for bit.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import blake3

from poe.errors import EncodingError, SumOverflowError

__all__ = ["Sums", "Node", "Root", "BillNode", "leaf", "node", "parent_level", "bill_leaf", "bill_key", "bill_node", "BILL_KEY", "EMPTY",
           "CTX_LEAF", "CTX_NODE", "CTX_EMPTY", "CTX_BILL_LEAF", "CTX_BILL_NODE", "NODE_SIZE", "BILL_NODE_SIZE", "KEY_SIZE"]

CTX_LEAF = "poe 2026-11 merkle leaf v1"
CTX_BILL_LEAF = "poe 2026-12 bill leaf v1"
CTX_NODE = "poe 2026-11 merkle node v1"
CTX_EMPTY = "poe 2026-11 merkle empty v1"
CTX_BILL_NODE = "poe 2026-12 bill node v1"

U128 = 1 << 128
SUMS_SIZE = 48
NODE_SIZE = 32 + SUMS_SIZE
LEAF_SIZE = 288
KEY_SIZE = 28  # a bill key: customer address and big-endian sequence, so bytes order as (customer, sequence)
BILL_NODE_SIZE = NODE_SIZE + 2 * KEY_SIZE

# Hashers primed with their context key; copy() is cheaper than deriving the key again.
_LEAF = blake3.blake3(derive_key_context=CTX_LEAF)
_NODE = blake3.blake3(derive_key_context=CTX_NODE)
_BILL_LEAF = blake3.blake3(derive_key_context=CTX_BILL_LEAF)
_BILL_NODE = blake3.blake3(derive_key_context=CTX_BILL_NODE)
#: a bill leaf's key and reference (spec §14.2): customer address, sequence, segment index, record leaf hash
BILL_KEY = struct.Struct("<20sQQ32s")
_RECORD_QUANTITIES = struct.Struct("<16xQ8xQQQ")  # fuel @16, mem @32, input @40, output @48


@dataclass(frozen=True, slots=True)
class Sums:
    fuel: int = 0
    mem: int = 0
    io: int = 0

    def __add__(self, other: Sums) -> Sums:
        fuel, mem, io = self.fuel + other.fuel, self.mem + other.mem, self.io + other.io
        if fuel >= U128 or mem >= U128 or io >= U128:
            raise SumOverflowError("metered sums would reach 2^128; the epoch cannot be committed")
        return Sums(fuel, mem, io)

    def __sub__(self, other: Sums) -> Sums:
        fuel, mem, io = self.fuel - other.fuel, self.mem - other.mem, self.io - other.io
        if fuel < 0 or mem < 0 or io < 0:
            raise SumOverflowError("sums would go negative: the later root does not extend the earlier one")
        return Sums(fuel, mem, io)

    def encode(self) -> bytes:
        # Spelled out rather than joined from a generator: node hashing calls this twice a node.
        return self.fuel.to_bytes(16, "little") + self.mem.to_bytes(16, "little") + self.io.to_bytes(16, "little")

    @classmethod
    def decode(cls, raw: bytes) -> Sums:
        if len(raw) != SUMS_SIZE:
            raise EncodingError(f"sums are {SUMS_SIZE} bytes, got {len(raw)}")
        return cls(int.from_bytes(raw[0:16], "little"), int.from_bytes(raw[16:32], "little"), int.from_bytes(raw[32:48], "little"))

    def to_json(self) -> dict[str, int]:
        return {"fuel": self.fuel, "mem": self.mem, "io": self.io}

    @classmethod
    def from_json(cls, d: object) -> Sums:
        if not isinstance(d, dict) or set(d) != {"fuel", "mem", "io"}:
            raise EncodingError("totals must be an object with exactly fuel, mem and io")
        values = [d["fuel"], d["mem"], d["io"]]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < U128 for v in values):
            raise EncodingError("totals must be integers in [0, 2^128)")
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Node:
    hash: bytes
    sums: Sums

    def encode(self) -> bytes:
        return self.hash + self.sums.encode()

    @classmethod
    def decode(cls, raw: bytes) -> Node:
        if len(raw) != NODE_SIZE:
            raise EncodingError(f"a proof entry is {NODE_SIZE} bytes, got {len(raw)}")
        return cls(bytes(raw[:32]), Sums.decode(raw[32:]))


def leaf(record: bytes) -> Node:
    """The leaf of one record: its hash and its metered quantities."""
    if len(record) != LEAF_SIZE:
        raise EncodingError(f"a leaf is a {LEAF_SIZE}-byte record, got {len(record)} bytes")
    fuel, mem, inb, outb = _RECORD_QUANTITIES.unpack_from(record)
    h = _LEAF.copy()
    h.update(record)
    return Node(h.digest(), Sums(fuel, mem, inb + outb))


def bill_leaf(customer: bytes, sequence: int, index: int, record: Node) -> Node:
    """The bill tree's leaf for segment `index` (spec §14.2): who asked for it (customer address
    and sequence; 20 zero bytes and the index for an anonymous segment), the record's leaf, and
    the record's sums, which the leaf hash covers so the sums cannot be changed apart from it."""
    h = _BILL_LEAF.copy()
    h.update(BILL_KEY.pack(customer, sequence, index, record.hash) + record.sums.encode())
    return Node(h.digest(), record.sums)


class BillNode(NamedTuple):
    """A node of the ordered bill tree (spec §14.2): hash, sums, and the least and greatest key
    below it. A parent's hash commits both children's intervals, and a verifier requires the
    left's greatest key below the right's least, so along any proven path the keys are in strict
    order: a key billed twice leaves a node out of order, whatever lies between the copies."""

    hash: bytes
    sums: Sums
    lo: bytes
    hi: bytes

    def encode(self) -> bytes:
        return self.hash + self.sums.encode() + self.lo + self.hi

    @classmethod
    def decode(cls, raw: bytes) -> BillNode:
        if len(raw) != BILL_NODE_SIZE:
            raise EncodingError(f"a bill tree node is {BILL_NODE_SIZE} bytes, got {len(raw)}")
        return cls(bytes(raw[:32]), Sums.decode(raw[32:80]), bytes(raw[80:108]), bytes(raw[108:136]))


def bill_key(customer: bytes, sequence: int) -> bytes:
    return bytes(customer) + sequence.to_bytes(8, "big")


def bill_node(left: BillNode, right: BillNode) -> BillNode:
    """The parent of two bill-tree nodes, as a provider builds it: the order is the verifier's
    to check (merkle.verify), so a tree out of order can be built, signed and caught."""
    h = _BILL_NODE.copy()
    h.update(left.encode() + right.encode())
    return BillNode(h.digest(), left.sums + right.sums, left.lo, right.hi)


def node(left: Node, right: Node) -> Node:
    h = _NODE.copy()
    h.update(left.hash + left.sums.encode() + right.hash + right.sums.encode())
    return Node(h.digest(), left.sums + right.sums)


def parent_level(level: Sequence[Any], join: Callable[[Any, Any], Any] = node) -> list[Any]:
    """The level above: nodes paired left to right, an unpaired last node carried up unchanged
    (which gives the RFC 9162 shape, §10); `join` is `bill_node` in the bill tree."""
    out = [join(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        out.append(level[-1])
    return out


EMPTY = Node(blake3.blake3(derive_key_context=CTX_EMPTY).digest(), Sums())


@dataclass(frozen=True, slots=True)
class Root:
    """A tree head: how many leaves, the top hash, and the totals of every metered quantity."""

    size: int
    hash: bytes
    sums: Sums

    @property
    def node(self) -> Node:
        return Node(self.hash, self.sums)

    def encode(self) -> bytes:
        return struct.pack("<Q", self.size) + self.hash + self.sums.encode()

    @classmethod
    def decode(cls, raw: bytes) -> Root:
        if len(raw) != 8 + NODE_SIZE:
            raise EncodingError(f"a root is {8 + NODE_SIZE} bytes, got {len(raw)}")
        return cls(struct.unpack_from("<Q", raw)[0], bytes(raw[8:40]), Sums.decode(raw[40:]))

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "hash": self.hash.hex(), "totals": self.sums.to_json()}

    @classmethod
    def from_json(cls, d: object) -> Root:
        try:
            if not isinstance(d, dict):
                raise TypeError
            size, digest = d["size"], bytes.fromhex(d["hash"])
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 64 or len(digest) != 32:
                raise ValueError
            return cls(size, digest, Sums.from_json(d["totals"]))
        except (KeyError, TypeError, ValueError):
            raise EncodingError("a root must be {size, hash (64 hex digits), totals {fuel, mem, io}}") from None
