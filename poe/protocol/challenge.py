"""Challenges (docs/spec.md §12.2): sample targets drawn from a seed the provider could not know.

The seed is BLAKE3(root ‖ deal ‖ epoch ‖ beacon). Weighted targets are points in the epoch's
priced weight, so a provider that overbills by a fraction ε of it is caught by each sample with
probability at least ε, however it spreads the lie; uniform targets are leaf indices.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from poe.errors import EncodingError, InputError
from poe.formats import hashing as h
from poe.merkle.hasher import Root, Sums
from poe.merkle.verify import InclusionProof, left_sums
from poe.protocol.claim import MAX_AMOUNT, Claim
from poe.protocol.deal import Deal
from poe.protocol.fields import array, document, fraction, hexbytes, uint

__all__ = ["Challenge", "samples_needed", "landing_offset", "MAX_SAMPLES", "MAX_UNIFORM", "DEFAULT_UNIFORM"]

CTX_CHALLENGE = "poe 2026-11 challenge v1"
MIN_EPSILON = Fraction(1, 10**6)
MIN_DELTA = Fraction(1, 2**64)
MAX_SAMPLES = 1_000_000
MAX_UNIFORM = 100_000
#: uniform samples a challenge draws, and an audit asks for, unless told otherwise. Emptying the
#: uniform list leaves a valid-looking prefix of the draw, so only a minimum the auditor holds
#: itself can notice.
DEFAULT_UNIFORM = 16
_FIELDS = ("claim_id", "deal_digest", "epoch", "root", "beacon", "epsilon", "delta", "weighted", "uniform")
_DERIVED = ("seed", "k", "guarantee")


def samples_needed(epsilon: Fraction, delta: Fraction) -> int:
    """The least k with (1 - epsilon)^k <= delta, computed exactly."""
    if not (MIN_EPSILON <= epsilon < 1 and MIN_DELTA <= delta < 1):
        raise InputError(f"epsilon must lie in [{MIN_EPSILON}, 1) and delta in [2^-64, 1)")
    estimate = math.log(float(delta)) / math.log1p(-float(epsilon))
    if estimate > MAX_SAMPLES:
        raise InputError(f"those epsilon and delta need about {estimate:,.0f} samples; at most {MAX_SAMPLES:,} are drawn")
    k = max(1, math.ceil(estimate) - 2)
    while (1 - epsilon) ** k > delta:
        k += 1
    return k


def _draw_below(bound: int, counter: list[int], seed: bytes) -> int:
    """A uniform integer in [0, bound) from the seed's extendable output (rejection sampling)."""
    nbytes = (bound.bit_length() + 7) // 8 + 1
    mask = (1 << bound.bit_length()) - 1
    while True:
        chunk = h.derive(CTX_CHALLENGE, seed).digest(length=nbytes, seek=counter[0])
        counter[0] += nbytes
        value = int.from_bytes(chunk, "little") & mask
        if value < bound:
            return value


@dataclass(frozen=True)
class Challenge:
    claim_id: bytes
    root: Root
    beacon: bytes
    epsilon: Fraction
    delta: Fraction
    weighted: tuple[int, ...]  # points in [0, epoch weight)
    uniform: tuple[int, ...]  # leaf indices in [first, end)

    deal_digest: bytes = b""
    epoch: int = 0

    @staticmethod
    def seed_of(root: Root, deal_digest: bytes, epoch: int, beacon: bytes) -> bytes:
        # Never the root alone (a provider could grind roots), and nothing the provider can vary
        # after the beacon: not the claim id, whose statement carries an unchecked issue time
        # that a provider could re-sign until the samples missed its lies.
        return h.digest(CTX_CHALLENGE, root.encode() + deal_digest + struct.pack("<Q", epoch) + beacon)

    @property
    def seed(self) -> bytes:
        return self.seed_of(self.root, self.deal_digest, self.epoch, self.beacon)

    @classmethod
    def draw(cls, claim: Claim, beacon: bytes, epsilon: Fraction, delta: Fraction, uniform: int) -> Challenge:
        if not 16 <= len(beacon) <= 64:
            raise InputError("the beacon must be 16..64 bytes of unpredictable data (an auditor nonce, a future block hash, a drand round)")
        if not 0 <= uniform <= MAX_UNIFORM:
            raise InputError(f"uniform samples must be 0..{MAX_UNIFORM}")
        st = claim.statement
        seed = cls.seed_of(st.root, claim.deal.digest, st.epoch, beacon)
        weight = claim.deal.weight(st.totals)
        k = samples_needed(epsilon, delta) if weight else 0
        counter = [0]
        weighted = tuple(_draw_below(weight, counter, seed) for _ in range(k))
        span = st.end_index - st.first_index
        uniform_idx = tuple(st.first_index + _draw_below(span, counter, seed) for _ in range(uniform if span else 0))
        return cls(claim.claim_id, st.root, beacon, epsilon, delta, weighted, uniform_idx, claim.deal.digest, st.epoch)

    def guarantee(self) -> str:
        return (f"overbilling of the metered amount is below {float(self.epsilon):.4%} with probability at least "
                f"{float(1 - self.delta):.4%} ({len(self.weighted)} weighted samples)")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "poe challenge v1",
            "claim_id": self.claim_id.hex(),
            "deal_digest": self.deal_digest.hex(),
            "epoch": self.epoch,
            "root": self.root.to_json(),
            "beacon": self.beacon.hex(),
            "seed": self.seed.hex(),
            "epsilon": str(self.epsilon),
            "delta": str(self.delta),
            "k": len(self.weighted),
            "guarantee": self.guarantee(),
            "weighted": [str(r) for r in self.weighted],
            "uniform": list(self.uniform),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Challenge:
        d = document(doc, "poe challenge v1", _FIELDS, _DERIVED)
        weighted = []
        for r in array(d["weighted"], "weighted targets", MAX_SAMPLES):
            # decimal strings: a weight can exceed what JSON readers keep exact
            if not isinstance(r, str) or not r.isdigit() or not r.isascii() or len(r) > 80 or (len(r) > 1 and r[0] == "0"):
                raise EncodingError("a weighted target must be a decimal string")
            weighted.append(uint(int(r), "weighted target", MAX_AMOUNT))
        ch = cls(
            hexbytes(d["claim_id"], "claim id", 32), Root.from_json(d["root"]), hexbytes(d["beacon"], "beacon", max_length=64),
            fraction(d["epsilon"], "epsilon"), fraction(d["delta"], "delta"),
            tuple(weighted), tuple(uint(i, "uniform target") for i in array(d["uniform"], "uniform targets", MAX_UNIFORM)),
            hexbytes(d["deal_digest"], "deal digest", 32), uint(d["epoch"], "epoch"),
        )
        derived = ch.to_json()
        if any(d[key] != derived[key] or type(d[key]) is not type(derived[key]) for key in _DERIVED if key in d):
            raise EncodingError("challenge fields do not follow from its claim id, root, beacon, epsilon and delta")
        return ch

    def matches(self, claim: Claim) -> None:
        """The challenge must be exactly what the claim and the beacon determine."""
        samples_needed(self.epsilon, self.delta)  # bounds first: a hostile file must not stall us
        if len(self.weighted) > MAX_SAMPLES or len(self.uniform) > MAX_UNIFORM:
            raise EncodingError("challenge has more samples than poe ever draws")
        expected = Challenge.draw(claim, self.beacon, self.epsilon, self.delta, len(self.uniform))
        if expected != self:
            raise EncodingError("challenge does not follow from the claim and its beacon (tampered, or for another claim)")


def landing_offset(deal: Deal, previous: Sums, proof: InclusionProof, leaf_sums: Sums) -> tuple[int, int]:
    """[start, end) of a leaf in the epoch's weight space, from a verified inclusion proof."""
    start = deal.weight(left_sums(proof)) - deal.weight(previous)
    return start, start + deal.weight(leaf_sums)
