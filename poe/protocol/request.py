"""Customer requests (docs/spec.md §14): what a customer signs before a provider may bill work.

A request is EIP-712 typed data, so any Ethereum wallet can sign it (``eth_signTypedData_v4``)
and any EVM contract can check it with ``ecrecover``. Its domain is ``{name: "poe", version: "1",
chainId}`` and its one struct::

    Request(bytes32 deal, address customer, uint64 sequence, bytes32 invocation,
            uint64 fuelBudget, uint64 notBefore, uint64 notAfter)

``deal`` is the deal's digest, ``invocation`` the canonical invocation's digest (the record's
input digest, §3: export, arguments, environment, payload digests and the seed), ``sequence`` the
customer's own counter, ``fuelBudget`` the most fuel the customer agrees to pay for, and
``notBefore``/``notAfter`` the epochs (inclusive) the request may be billed in.

The signed document (``poe request v1``) is JSON with exactly the request's members (integers
as JSON numbers, bytes and the address as 0x hex), the chain id and the 65-byte signature. Its
**request digest** is the EIP-712 digest: what the signature covers, and what a record commits.
Everything here is pure; a signature is checked only by :meth:`SignedRequest.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from poe.crypto import eip712
from poe.errors import EncodingError, InputError, SignatureError
from poe.formats.invocation import REQUEST_BLOCK
from poe.protocol.fields import document, exact, hex0x, uint

__all__ = ["Request", "SignedRequest", "REQUEST_FORMAT", "REQUEST_TYPES", "sign_request", "answer", "request_of", "MAX_U64"]

REQUEST_FORMAT = "poe request v1"
MAX_U64 = (1 << 64) - 1

# The types as eth_signTypedData_v4 writes them; typed_data() hands a copy to wallets.
_TYPES_JSON = {
    "EIP712Domain": [
        {"name": "name", "type": "string"}, {"name": "version", "type": "string"}, {"name": "chainId", "type": "uint256"},
    ],
    "Request": [
        {"name": "deal", "type": "bytes32"}, {"name": "customer", "type": "address"}, {"name": "sequence", "type": "uint64"},
        {"name": "invocation", "type": "bytes32"}, {"name": "fuelBudget", "type": "uint64"},
        {"name": "notBefore", "type": "uint64"}, {"name": "notAfter", "type": "uint64"},
    ],
}
REQUEST_TYPES = eip712.Types(_TYPES_JSON)
_MEMBERS = tuple(m["name"] for m in _TYPES_JSON["Request"])

_separators: dict[int, bytes] = {}


def _domain(chain_id: int) -> dict[str, Any]:
    return {"name": "poe", "version": "1", "chainId": chain_id}


def _separator(chain_id: int) -> bytes:
    if chain_id not in _separators:
        _separators[chain_id] = REQUEST_TYPES.hash_struct("EIP712Domain", _domain(chain_id))
    return _separators[chain_id]


@dataclass(frozen=True)
class Request:
    chain_id: int
    deal: bytes  # the deal's digest
    customer: bytes  # 20 address bytes
    sequence: int
    invocation: bytes  # the invocation's digest (the record's input digest)
    fuel_budget: int
    not_before: int  # epochs, inclusive
    not_after: int

    def __post_init__(self) -> None:
        for name, value, size in (("deal", self.deal, 32), ("customer", self.customer, 20), ("invocation", self.invocation, 32)):
            if type(value) is not bytes or len(value) != size:
                raise InputError(f"a request's {name} is {size} bytes")
        for name in ("sequence", "fuel_budget", "not_before", "not_after"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_U64:
                raise InputError(f"a request's {name} is an integer in [0, 2^64)", observed=str(value)[:40])
        if type(self.chain_id) is not int or not 1 <= self.chain_id < 1 << 64:
            raise InputError("a request's chain id is an integer in [1, 2^64)")
        if self.fuel_budget == 0:
            raise InputError("a request's fuel budget must be positive: a budget of 0 pays for nothing")
        if self.not_before > self.not_after:
            raise InputError(f"a request's window is empty (epochs {self.not_before}..{self.not_after})")

    def message(self) -> dict[str, Any]:
        """The EIP-712 message, as a wallet shows and signs it."""
        return {
            "deal": "0x" + self.deal.hex(), "customer": eip712_address(self.customer), "sequence": self.sequence,
            "invocation": "0x" + self.invocation.hex(), "fuelBudget": self.fuel_budget,
            "notBefore": self.not_before, "notAfter": self.not_after,
        }

    def typed_data(self) -> dict[str, Any]:
        """The whole ``eth_signTypedData_v4`` document a wallet signs."""
        types = {struct: [dict(member) for member in members] for struct, members in _TYPES_JSON.items()}
        return {"types": types, "primaryType": "Request", "domain": _domain(self.chain_id), "message": self.message()}

    @cached_property
    def digest(self) -> bytes:
        """The EIP-712 digest: what the customer signs and a record commits (the request digest)."""
        return eip712.digest(_separator(self.chain_id), REQUEST_TYPES, "Request", {
            "deal": self.deal, "customer": self.customer, "sequence": self.sequence, "invocation": self.invocation,
            "fuelBudget": self.fuel_budget, "notBefore": self.not_before, "notAfter": self.not_after,
        })

    def check_terms(self, deal_digest: bytes, epoch: int, fuel_limit: int | None = None, window: int | None = None) -> None:
        """InputError unless the request is for this deal, may be billed in ``epoch``, its
        budget fits under ``fuel_limit`` (the cost model's per-segment limit) when given, and its
        window spans at most ``window`` epochs (the deal's cap) when given."""
        if self.deal != deal_digest:
            raise InputError("the request is for another deal", expected=deal_digest.hex(), observed=self.deal.hex())
        if window is not None and self.not_after - self.not_before >= window:
            raise InputError(f"the request's window spans {self.not_after - self.not_before + 1:,} epochs; the deal allows at most {window}",
                             expected=window, observed=self.not_after - self.not_before + 1)
        if not self.not_before <= epoch <= self.not_after:
            raise InputError(f"the request may be billed in epochs {self.not_before}..{self.not_after}, not in epoch {epoch}",
                             expected=[self.not_before, self.not_after], observed=epoch)
        if fuel_limit is not None and self.fuel_budget > fuel_limit:
            raise InputError(f"the request's fuel budget {self.fuel_budget:,} is beyond the deal's per-segment limit {fuel_limit:,}",
                             expected=fuel_limit, observed=self.fuel_budget)


def eip712_address(raw: bytes) -> str:
    from poe.crypto.secp256k1 import checksum_address

    return checksum_address(raw)


@dataclass(frozen=True)
class SignedRequest:
    request: Request
    signature: bytes  # r || s || v, 65 bytes

    @property
    def digest(self) -> bytes:
        return self.request.digest

    def verify(self) -> None:
        """SignatureError unless the request's customer made the signature (ecrecover rules:
        low s, v 27 or 28, r and s in range)."""
        from poe.crypto.schemes import get_scheme  # a backend loads only when a signature is checked

        k1 = get_scheme("secp256k1")
        signer = k1.recover_hash_address(self.request.digest, self.signature)  # type: ignore[attr-defined]
        if signer != self.request.customer:
            raise SignatureError("the request was not signed by its customer (or was changed after signing)",
                                 expected=eip712_address(self.request.customer), observed=eip712_address(signer), reason="signer")

    def block(self) -> bytes:
        """The request as an invocation carries it (spec §3, version 2)."""
        r = self.request
        return REQUEST_BLOCK.pack(r.chain_id, r.deal, r.customer, r.sequence, r.fuel_budget, r.not_before, r.not_after, self.signature)

    @classmethod
    def from_block(cls, raw: bytes, call_digest: bytes) -> SignedRequest:
        """The signed request an invocation carries; ``call_digest`` is that invocation's call
        digest, which the block leaves out because the invocation is its own."""
        if len(raw) != REQUEST_BLOCK.size:
            raise EncodingError(f"a request block has {REQUEST_BLOCK.size} bytes, got {len(raw)}")
        chain_id, deal, customer, sequence, budget, not_before, not_after, signature = REQUEST_BLOCK.unpack(raw)
        try:
            request = Request(chain_id, deal, customer, sequence, call_digest, budget, not_before, not_after)
        except InputError as exc:
            raise EncodingError(f"the invocation's request block is not a request: {exc.message}") from None
        return cls(request, signature)

    def to_json(self) -> dict[str, Any]:
        return {"format": REQUEST_FORMAT, "chain_id": self.request.chain_id, "request": self.request.message(),
                "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> SignedRequest:
        d = document(doc, REQUEST_FORMAT, ("chain_id", "request", "signature"))
        m = exact(d["request"], "request", _MEMBERS)
        request = Request(
            chain_id=uint(d["chain_id"], "chain id"),
            deal=hex0x(m["deal"], "a request's deal", 32), customer=_address(m["customer"]), sequence=uint(m["sequence"], "sequence"),
            invocation=hex0x(m["invocation"], "a request's invocation", 32), fuel_budget=uint(m["fuelBudget"], "fuel budget"),
            not_before=uint(m["notBefore"], "notBefore"), not_after=uint(m["notAfter"], "notAfter"),
        )
        return cls(request, hex0x(d["signature"], "a request's signature", 65))


def _address(value: Any) -> bytes:
    # One spelling per address, so a document has one encoding: EIP-55 mixed case, as signed.
    raw = hex0x(value, "a request's customer address", 20)
    if value != eip712_address(raw):
        raise EncodingError("a request's customer is written in its EIP-55 checksummed form", expected=eip712_address(raw), observed=value)
    return raw


def sign_request(secret_key: bytes, *, chain_id: int, deal: bytes, sequence: int, invocation: bytes, fuel_budget: int,
                 not_before: int, not_after: int) -> SignedRequest:
    """A customer's signed request: what a client library or `poe request` makes with the
    customer's secp256k1 key (whose address becomes the request's customer)."""
    from poe.crypto.schemes import get_scheme

    k1 = get_scheme("secp256k1")
    customer = bytes.fromhex(k1.identity(k1.public_key(secret_key))[2:])
    request = Request(chain_id, deal, customer, sequence, invocation, fuel_budget, not_before, not_after)
    return SignedRequest(request, k1.sign_hash(secret_key, request.digest))  # type: ignore[attr-defined]


def answer(invocation: Any, signed: SignedRequest) -> Any:
    """``invocation`` (a plain call) as the answer to ``signed``: the version-2 invocation whose
    record commits the request. InputError if the request names another call."""
    import dataclasses

    if invocation.request:
        raise InputError("the invocation already answers a request")
    if signed.request.invocation != invocation.call_digest:
        raise InputError("the request names another invocation (export, arguments, environment, payloads or seed differ)",
                         expected=signed.request.invocation.hex(), observed=invocation.call_digest.hex())
    answered = dataclasses.replace(invocation, request=signed.block())
    # The call's bytes and digest are the ones just compared: keep them rather than encode again.
    answered.__dict__["call_encoded"] = invocation.call_encoded
    answered.__dict__["call_digest"] = invocation.call_digest
    return answered


def request_of(invocation: Any) -> SignedRequest | None:
    """The signed request an invocation answers, or None for an anonymous one."""
    return SignedRequest.from_block(invocation.request, invocation.call_digest) if invocation.request else None
