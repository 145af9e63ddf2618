"""Openings (docs/spec.md §12.3, §13.6): what a provider shows for each challenged sample."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from poe.errors import EncodingError
from poe.formats.invocation import Invocation
from poe.merkle.build import BillEntry
from poe.merkle.verify import MAX_BILL_PROOF_BYTES
from poe.protocol.bill import entry_from_json, entry_json
from poe.protocol.fields import array, document, exact, hexbytes, text, uint

__all__ = ["BillOpening", "Opening", "Openings"]

_TARGET = re.compile(r"[wu](?:0|[1-9][0-9]{0,6})")
MAX_PROOF = 64 * 64  # 64 levels of (hash, sums) siblings, with room to spare
MAX_INVOCATION = 1 << 20
MAX_PAYLOAD = 1 << 30
MAX_OPENINGS = 2_000_000


@dataclass(frozen=True)
class BillOpening:
    """Where a weighted target lands in a version-2 statement's bill tree (spec §14.3): leaf
    `position` with its neighbours (the leaves position-1..position+1 that exist, in order) and
    one range proof over them, which also fixes their offset in the epoch's weight."""

    position: int
    leaves: tuple[BillEntry, ...]
    proof: bytes

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "leaves": [entry_json(e) for e in self.leaves], "proof": self.proof.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> BillOpening:
        d = exact(doc, "bill opening", ["position", "leaves", "proof"])
        leaves = tuple(entry_from_json(e, "bill leaf") for e in array(d["leaves"], "bill leaves", 3))
        if not leaves or any(e is None for e in leaves):
            raise EncodingError("a bill opening shows one to three leaves")
        return cls(uint(d["position"], "bill position"), leaves, hexbytes(d["proof"], "bill range proof", max_length=MAX_BILL_PROOF_BYTES))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Opening:
    """What a provider shows for one sample: the record, its proof, and its inputs."""

    target: str  # "w<j>" for weighted target j, "u<j>" for uniform target j
    index: int
    record: bytes
    proof: bytes
    invocation: bytes
    payloads: dict[str, str]  # hex digest -> hex bytes
    # Stateful segments: the adjacent records (index, record, proof) the state chain is checked
    # against: the previous one unless the segment starts from genesis, and the next one if any.
    neighbors: tuple[tuple[int, bytes, bytes], ...] = ()
    # A weighted target of a version-2 statement: its leaf in the bill tree (spec §14.3).
    bill: BillOpening | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"target": self.target, "index": self.index, "record": self.record.hex(), "proof": self.proof.hex(),
                             "invocation": self.invocation.hex(), "payloads": self.payloads}
        if self.neighbors:
            d["neighbors"] = [{"index": i, "record": r.hex(), "proof": p.hex()} for i, r, p in self.neighbors]
        if self.bill is not None:
            d["bill"] = self.bill.to_json()
        return d

    @classmethod
    def from_json(cls, doc: Any) -> Opening:
        d = exact(doc, "opening", ["target", "index", "record", "proof", "invocation", "payloads"], ["neighbors", "bill"])
        target = text(d["target"], "opening target", 16)
        if not _TARGET.fullmatch(target):
            raise EncodingError(f"opening target {target!r} is not w<j> or u<j>")
        payloads = d["payloads"]
        if not isinstance(payloads, dict) or len(payloads) > 4096:
            raise EncodingError("opening payloads must be an object of digest -> bytes, both hex")
        canonical = {hexbytes(k, "payload digest", 32).hex(): hexbytes(v, "payload", max_length=MAX_PAYLOAD).hex() for k, v in payloads.items()}
        if len(canonical) != len(payloads):
            raise EncodingError("opening payloads name one digest twice")
        neighbors = tuple(
            (uint(n["index"], "neighbour index"), hexbytes(n["record"], "neighbour record", max_length=1024),
             hexbytes(n["proof"], "neighbour proof", max_length=MAX_PROOF))
            for n in (exact(n, "neighbour", ["index", "record", "proof"]) for n in array(d.get("neighbors", []), "neighbours", 2))
        )
        if "neighbors" in d and not neighbors:
            raise EncodingError("an opening without neighbours leaves the field out")
        return cls(target, uint(d["index"], "opening index"), hexbytes(d["record"], "record", max_length=1024),
                   hexbytes(d["proof"], "proof", max_length=MAX_PROOF), hexbytes(d["invocation"], "invocation", max_length=MAX_INVOCATION),
                   canonical, neighbors, BillOpening.from_json(d["bill"]) if "bill" in d else None)

    def decode_invocation(self) -> Invocation:
        blobs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in self.payloads.items()}
        return Invocation.decode(self.invocation, blobs.__getitem__)


@dataclass(frozen=True)
class Openings:
    """The provider's answer to one challenge (`poe openings v1`): an opening per target and,
    when any sample is stateful, a bundle of pre-states (spec §13.6)."""

    claim_id: bytes
    seed: bytes
    openings: tuple[Opening, ...]
    states: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": "poe openings v1", "claim_id": self.claim_id.hex(), "seed": self.seed.hex(),
                             "openings": [o.to_json() for o in self.openings]}
        if self.states is not None:
            d["states"] = self.states
        return d

    def dumps(self) -> str:
        return json.dumps(self.to_json()) + "\n"

    @classmethod
    def from_json(cls, doc: Any) -> Openings:
        d = document(doc, "poe openings v1", ["claim_id", "seed", "openings"], ["states"])
        states = d.get("states")
        if states is not None and not isinstance(states, dict):
            raise EncodingError("openings states must be a poe state bundle object")
        openings = tuple(Opening.from_json(o) for o in array(d["openings"], "openings", MAX_OPENINGS))
        if len({o.target for o in openings}) != len(openings):
            raise EncodingError("openings answer one target twice")
        return cls(hexbytes(d["claim_id"], "claim id", 32), hexbytes(d["seed"], "seed", 32), openings, states)

    def answers(self, claim_id: bytes, seed: bytes) -> None:
        if (self.claim_id, self.seed) != (claim_id, seed):
            raise EncodingError("the openings answer another claim or another challenge")
