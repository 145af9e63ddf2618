"""Deals (docs/spec.md §12.1): integer prices per unit of fuel, mem and io, a subscription, a penalty,
and (version 2) who may be billed: whether anonymous segments are, and how many epochs a signed
request may stay billable.

No floats anywhere near money: every price is an integer number of the deal's base units.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from poe.crypto.schemes import SCHEME_NAMES  # names only: a backend loads when a signature is checked
from poe.errors import EncodingError, InputError
from poe.formats import hashing as h
from poe.merkle.hasher import Sums
from poe.protocol.attestation import check_deal_id
from poe.protocol.fields import document, exact, hexbytes, text, uint

__all__ = ["Deal", "QUANTITIES", "MAX_PRICE", "MAX_WINDOW", "SCHEME_NAMES"]

QUANTITIES = ("fuel", "mem", "io")
CTX_DEAL = "poe 2026-11 deal v1"
MAX_PRICE = 1 << 64
_FIELDS = ("deal_id", "provider", "module_digest", "cost_model_digest", "prices", "subscription", "penalty")
DEAL_V1, DEAL_V2 = "poe deal v1", "poe deal v2"
#: the longest window (in epochs) a version-2 deal lets a request span
MAX_WINDOW = 1 << 16


def _penalty(value: Any) -> dict[str, Any]:
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind == "forfeit":
        return dict(exact(value, "deal penalty", ["kind"]))
    if kind == "slash":
        exact(value, "deal penalty", ["kind", "amount"])
        return {"kind": "slash", "amount": uint(value["amount"], "penalty amount", MAX_PRICE)}
    raise EncodingError('penalty must be {"kind": "forfeit"} or {"kind": "slash", "amount": N}')


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
    # Version 2 (spec §14.3): whether segments no customer signed may be billed, and the most
    # epochs a request's window may span (a replay within the window is the customer's to see).
    # A version-1 deal bills anonymous segments and caps no window.
    anonymous: bool = True
    window: int | None = None

    @property
    def format(self) -> str:
        return DEAL_V1 if self.window is None else DEAL_V2

    @classmethod
    def from_json(cls, doc: Any) -> Deal:
        fmt = doc.get("format") if isinstance(doc, dict) else None
        d = document(doc, DEAL_V2, _FIELDS + ("customers",)) if fmt == DEAL_V2 else document(doc, DEAL_V1, _FIELDS)
        anonymous, window = True, None
        if fmt == DEAL_V2:
            policy = exact(d["customers"], "deal customers", ("anonymous", "window"))
            if not isinstance(policy["anonymous"], bool):
                raise EncodingError("customers.anonymous must be true or false")
            anonymous = policy["anonymous"]
            window = uint(policy["window"], "customers.window", MAX_WINDOW)
            if window == 0:
                raise EncodingError("customers.window is at least 1 (epoch)")
        provider = exact(d["provider"], "deal provider", ["scheme", "public_key"])
        scheme = text(provider["scheme"], "provider scheme")
        if scheme not in SCHEME_NAMES:
            raise EncodingError(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEME_NAMES)}")
        prices = exact(d["prices"], "deal prices", QUANTITIES)
        deal_id = text(d["deal_id"], "deal id", 1024)
        check_deal_id(deal_id)
        deal = cls(
            deal_id=deal_id,
            scheme=scheme,
            provider_key=hexbytes(provider["public_key"], "provider public key", max_length=128),
            module_digest=hexbytes(d["module_digest"], "module digest", 32),
            cost_model_digest=hexbytes(d["cost_model_digest"], "cost model digest", 32),
            prices=tuple(uint(prices[q], f"price of {q}", MAX_PRICE) for q in QUANTITIES),  # type: ignore[arg-type]
            subscription=uint(d["subscription"], "subscription", MAX_PRICE),
            penalty=_penalty(d["penalty"]),
            anonymous=anonymous,
            window=window,
        )
        if not any(deal.prices) and not deal.subscription:
            raise InputError("a deal must price something: every price and the subscription are zero")
        return deal

    @classmethod
    def load_text(cls, raw: bytes, name: str) -> Deal:
        """A deal file: TOML when its name ends in .toml, else JSON."""
        toml = name.endswith(".toml")
        try:
            doc = tomllib.loads(raw.decode()) if toml else json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # TOMLDecodeError is a ValueError
            raise EncodingError(f"{name} is not valid {'TOML' if toml else 'JSON'}: {exc}") from None
        return cls.from_json(doc)

    def to_json(self) -> dict[str, Any]:
        d = {
            "format": self.format,
            "deal_id": self.deal_id,
            "provider": {"scheme": self.scheme, "public_key": self.provider_key.hex()},
            "module_digest": self.module_digest.hex(),
            "cost_model_digest": self.cost_model_digest.hex(),
            "prices": dict(zip(QUANTITIES, self.prices)),
            "subscription": self.subscription,
            "penalty": self.penalty,
        }
        if self.window is not None:
            d["customers"] = {"anonymous": self.anonymous, "window": self.window}
        return d

    @cached_property
    def digest(self) -> bytes:
        return h.digest(CTX_DEAL, json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode())

    def weight(self, sums: Sums) -> int:
        """The priced weight of some metered quantities: what sampling is proportional to."""
        return self.prices[0] * sums.fuel + self.prices[1] * sums.mem + self.prices[2] * sums.io

    def amount(self, epoch_totals: Sums) -> int:
        return self.weight(epoch_totals) + self.subscription

    def mismatch(self, statement: Any) -> str | None:
        """Why an attested statement is not under this deal (None when it is): the one place
        claims, audits and settlement match a statement to the deal's id, key, module and cost model."""
        if (statement.deal_id, statement.scheme, statement.public_key) != (self.deal_id, self.scheme, self.provider_key):
            return "the attestation is not for this deal or is signed by another provider"
        if (statement.module_digest, statement.cost_model_digest) != (self.module_digest, self.cost_model_digest):
            return "the attestation names another module or cost model than the deal"
        return None

    def penalty_payout(self) -> int:
        """What a rejected claim pays: nothing (forfeit) or minus the slashed amount."""
        return 0 if self.penalty["kind"] == "forfeit" else -self.penalty["amount"]
