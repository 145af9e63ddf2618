"""Deals, claims and challenges (docs/spec.md §12): the money side, in integers only.

A deal fixes integer prices per unit of fuel, mem and io and/or a flat subscription per epoch.
A claim is an attestation plus the amount it implies; the amount must equal price · totals +
subscription exactly. A challenge draws sample targets from a seed the provider could not know
when it committed: BLAKE3(root ‖ claim id ‖ beacon). Weighted targets are points in the
epoch's priced weight, so a provider that overbills by a fraction ε of it is caught by each
sample with probability at least ε, however it spreads the lie.
"""

from __future__ import annotations

import json
import math
import struct
import tomllib
from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction
from typing import Any

from poe.formats import hashing as h
from poe.protocol.attestation import Envelope, Statement
from poe.merkle.hasher import Root, Sums
from poe.merkle.verify import InclusionProof, left_sums
from poe.errors import EncodingError, InputError

__all__ = ["Deal", "Claim", "Challenge", "samples_needed", "QUANTITIES"]

QUANTITIES = ("fuel", "mem", "io")
CTX_DEAL = "poe 2026-11 deal v1"
CTX_CLAIM = "poe 2026-11 claim v1"
CTX_CHALLENGE = "poe 2026-11 challenge v1"
MAX_PRICE = 1 << 64


def _int(value: Any, what: str, limit: int = MAX_PRICE) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be an integer number of base units, got {value!r}")
    if not 0 <= value < limit:
        raise InputError(f"{what} must be in [0, {limit}), got {value}")
    return value


@dataclass(frozen=True)
class Deal:
    deal_id: str
    scheme: str
    provider_key: bytes
    module_digest: bytes
    cost_model_digest: bytes
    prices: tuple[int, int, int]  # per unit of fuel, mem, io
    subscription: int
    penalty: dict[str, Any]

    @classmethod
    def from_json(cls, d: Any) -> Deal:
        try:
            if not isinstance(d, dict) or d.get("format") != "poe deal v1":
                raise InputError("not a poe deal v1 document")
            prices = d.get("prices", {})
            if not isinstance(prices, dict) or set(prices) - set(QUANTITIES):
                raise InputError(f"prices may only name {', '.join(QUANTITIES)}")
            penalty = d.get("penalty", {"kind": "forfeit"})
            if not isinstance(penalty, dict) or penalty.get("kind") not in ("forfeit", "slash"):
                raise InputError("penalty must be {\"kind\": \"forfeit\"} or {\"kind\": \"slash\", \"amount\": N}")
            if penalty["kind"] == "slash":
                _int(penalty.get("amount"), "penalty amount")
            deal = cls(
                deal_id=str(d["deal_id"]),
                scheme=str(d["provider"]["scheme"]),
                provider_key=bytes.fromhex(d["provider"]["public_key"]),
                module_digest=bytes.fromhex(d["module_digest"]),
                cost_model_digest=bytes.fromhex(d["cost_model_digest"]),
                prices=tuple(_int(prices.get(q, 0), f"price of {q}") for q in QUANTITIES),  # type: ignore[arg-type]
                subscription=_int(d.get("subscription", 0), "subscription"),
                penalty=dict(penalty),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed deal: {type(exc).__name__}: {exc}") from None
        if len(deal.module_digest) != 32 or len(deal.cost_model_digest) != 32:
            raise InputError("deal digests must be 32 bytes of hex")
        if not any(deal.prices) and not deal.subscription:
            raise InputError("a deal must price something: every price and the subscription are zero")
        return deal

    @classmethod
    def load_text(cls, text: bytes, name: str) -> Deal:
        try:
            doc = tomllib.loads(text.decode()) if name.endswith(".toml") else json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"{name} is not valid {'TOML' if name.endswith('.toml') else 'JSON'}: {exc}") from None
        return cls.from_json(doc)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "poe deal v1",
            "deal_id": self.deal_id,
            "provider": {"scheme": self.scheme, "public_key": self.provider_key.hex()},
            "module_digest": self.module_digest.hex(),
            "cost_model_digest": self.cost_model_digest.hex(),
            "prices": dict(zip(QUANTITIES, self.prices)),
            "subscription": self.subscription,
            "penalty": self.penalty,
        }

    @cached_property
    def digest(self) -> bytes:
        return h.digest(CTX_DEAL, json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode())

    def weight(self, sums: Sums) -> int:
        """The priced weight of some metered quantities: what sampling is proportional to."""
        return self.prices[0] * sums.fuel + self.prices[1] * sums.mem + self.prices[2] * sums.io

    def amount(self, epoch_totals: Sums) -> int:
        return self.weight(epoch_totals) + self.subscription


@dataclass(frozen=True)
class Claim:
    deal: Deal
    envelope: Envelope
    amount: int

    @cached_property
    def statement(self) -> Statement:
        return self.envelope.statement

    @cached_property
    def claim_id(self) -> bytes:
        return h.digest(CTX_CLAIM, self.deal.digest + self.statement.digest)

    def to_json(self) -> dict[str, Any]:
        st = self.statement
        return {
            "format": "poe claim v1",
            "claim_id": self.claim_id.hex(),
            "amount": self.amount,
            "breakdown": {**{q: p * getattr(st.totals, q) for q, p in zip(QUANTITIES, self.deal.prices)}, "subscription": self.deal.subscription},
            "deal": self.deal.to_json(),
            "attestation": self.envelope.to_json(),
        }

    @classmethod
    def from_json(cls, d: Any) -> Claim:
        if not isinstance(d, dict) or d.get("format") != "poe claim v1" or not {"deal", "attestation", "amount"} <= set(d):
            raise EncodingError("not a poe claim v1 document")
        claim = cls(Deal.from_json(d["deal"]), Envelope.loads(json.dumps(d["attestation"])), _int(d["amount"], "claimed amount", 1 << 256))
        if set(d) - {"format", "claim_id", "amount", "breakdown", "deal", "attestation"}:
            raise EncodingError("claim has unknown fields")
        derived = claim.to_json()
        for key in ("claim_id", "breakdown"):  # derived fields must say what they derive from
            if key in d and d[key] != derived[key]:
                raise EncodingError(f"claim field {key!r} does not follow from the deal and the attestation")
        return claim


MIN_EPSILON = Fraction(1, 10**6)
MIN_DELTA = Fraction(1, 2**64)
MAX_SAMPLES = 1_000_000


def samples_needed(epsilon: Fraction, delta: Fraction) -> int:
    """The least k with (1 - epsilon)^k <= delta, computed exactly."""
    if not (MIN_EPSILON <= epsilon < 1 and MIN_DELTA <= delta < 1):
        raise InputError(f"epsilon must lie in [{MIN_EPSILON}, 1) and delta in [2^-64, 1)")
    estimate = math.log(float(delta)) / math.log1p(-float(epsilon))
    if estimate > MAX_SAMPLES:
        raise InputError(f"those epsilon and delta need about {estimate:,.0f} samples; at most {MAX_SAMPLES:,} are drawn")
    k = max(1, math.ceil(math.log(float(delta)) / math.log1p(-float(epsilon))) - 2)
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
        if not 0 <= uniform <= 100_000:
            raise InputError("uniform samples must be 0..100000")
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
    def from_json(cls, d: Any) -> Challenge:
        try:
            if not isinstance(d, dict) or d.get("format") != "poe challenge v1":
                raise EncodingError("not a poe challenge v1 document")
            ch = cls(
                bytes.fromhex(d["claim_id"]), Root.from_json(d["root"]), bytes.fromhex(d["beacon"]),
                Fraction(d["epsilon"]), Fraction(d["delta"]),
                tuple(int(r) for r in d["weighted"]), tuple(int(i) for i in d["uniform"]),
                bytes.fromhex(d["deal_digest"]), int(d["epoch"]),
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
            raise EncodingError(f"malformed challenge: {type(exc).__name__}: {exc}") from None
        if set(d) - set(ch.to_json()) or any(d[key] != ch.to_json()[key] for key in ("seed", "k", "guarantee") if key in d):
            raise EncodingError("challenge fields do not follow from its claim id, root, beacon, epsilon and delta")
        return ch

    def matches(self, claim: Claim) -> None:
        """The challenge must be exactly what the claim and the beacon determine."""
        samples_needed(self.epsilon, self.delta)  # bounds first: a hostile file must not stall us
        if len(self.weighted) > MAX_SAMPLES or len(self.uniform) > 100_000:
            raise EncodingError("challenge has more samples than poe ever draws")
        expected = Challenge.draw(claim, self.beacon, self.epsilon, self.delta, len(self.uniform))
        if expected != self:
            raise EncodingError("challenge does not follow from the claim and its beacon (tampered, or for another claim)")


def landing_offset(deal: Deal, previous: Sums, proof: InclusionProof, leaf_sums: Sums) -> tuple[int, int]:
    """[start, end) of a leaf in the epoch's weight space, from a verified inclusion proof."""
    start = deal.weight(left_sums(proof)) - deal.weight(previous)
    return start, start + deal.weight(leaf_sums)
