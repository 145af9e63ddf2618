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

A stateful job (§14.7) is the second struct, ``Job``: the same members and ``steps``, the most
steps the customer pays for; step k bills under sequence + k, so a job reserves ``steps``
sequences, each billable once. Its document is ``poe job v1``.

The signed document (``poe request v1``) is JSON with exactly the request's members (integers
as JSON numbers, bytes and the address as 0x hex), the chain id and the 65-byte signature. Its
**request digest** is the EIP-712 digest: what the signature covers, and what a record commits.
Everything here is pure; a signature is checked only by :meth:`SignedRequest.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from poe.crypto import eip712
from poe.errors import EncodingError, InputError, SignatureError
from poe.formats.invocation import JOB_BLOCK, REQUEST_BLOCK
from poe.protocol.fields import document, exact, hex0x, uint

__all__ = ["Request", "Job", "SignedRequest", "REQUEST_FORMAT", "JOB_FORMAT", "REQUEST_TYPES", "sign_request", "answer", "request_of",
           "step_of", "MAX_U64"]

REQUEST_FORMAT = "poe request v1"
JOB_FORMAT = "poe job v1"
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
    "Job": [
        {"name": "deal", "type": "bytes32"}, {"name": "customer", "type": "address"}, {"name": "sequence", "type": "uint64"},
        {"name": "steps", "type": "uint64"}, {"name": "invocation", "type": "bytes32"}, {"name": "fuelBudget", "type": "uint64"},
        {"name": "notBefore", "type": "uint64"}, {"name": "notAfter", "type": "uint64"},
    ],
}
REQUEST_TYPES = eip712.Types(_TYPES_JSON)
_MEMBERS = tuple(m["name"] for m in _TYPES_JSON["Request"])
_JOB_MEMBERS = tuple(m["name"] for m in _TYPES_JSON["Job"])

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

    PRIMARY = "Request"

    def typed_data(self) -> dict[str, Any]:
        """The whole ``eth_signTypedData_v4`` document a wallet signs."""
        types = {struct: [dict(member) for member in _TYPES_JSON[struct]] for struct in ("EIP712Domain", self.PRIMARY)}
        return {"types": types, "primaryType": self.PRIMARY, "domain": _domain(self.chain_id), "message": self.message()}

    def _values(self) -> dict[str, Any]:
        return {"deal": self.deal, "customer": self.customer, "sequence": self.sequence, "invocation": self.invocation,
                "fuelBudget": self.fuel_budget, "notBefore": self.not_before, "notAfter": self.not_after}

    @cached_property
    def digest(self) -> bytes:
        """The EIP-712 digest: what the customer signs and a record commits (the request digest)."""
        return eip712.digest(_separator(self.chain_id), REQUEST_TYPES, self.PRIMARY, self._values())

    def block(self, signature: bytes, step: int | None = None) -> bytes:
        """The request as an invocation carries it (spec §3, version 2)."""
        if step is not None:
            raise InputError("a step number belongs to a job's steps, not to a request")
        return REQUEST_BLOCK.pack(self.chain_id, self.deal, self.customer, self.sequence, self.fuel_budget, self.not_before, self.not_after,
                                  signature)

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


@dataclass(frozen=True)
class Job(Request):
    """A stateful job (spec §14.7): `steps` steps of one call on one lineage, each with at most
    `fuel_budget` fuel; step k bills under `sequence` + k."""

    steps: int = 1
    PRIMARY = "Job"

    def __post_init__(self) -> None:
        super().__post_init__()
        if type(self.steps) is not int or not 1 <= self.steps <= MAX_U64 or self.sequence + self.steps > MAX_U64 + 1:
            raise InputError("a job's steps are an integer >= 1, and its sequences sequence..sequence+steps-1 fit in 64 bits",
                             observed=str(self.steps)[:40])

    def message(self) -> dict[str, Any]:
        m = super().message()
        return {k: m[k] for k in ("deal", "customer", "sequence")} | {"steps": self.steps} | {k: m[k] for k in ("invocation", "fuelBudget",
                                                                                                           "notBefore", "notAfter")}

    def _values(self) -> dict[str, Any]:
        return super()._values() | {"steps": self.steps}

    def block(self, signature: bytes, step: int | None = None) -> bytes:
        """One step of the job as its invocation carries it (spec §3, version 3)."""
        if step is None or not 0 <= step < self.steps:
            raise InputError(f"a job's step is a number in [0, {self.steps})", observed=step)
        return JOB_BLOCK.pack(self.chain_id, self.deal, self.customer, self.sequence, self.steps, self.fuel_budget, self.not_before,
                              self.not_after, signature, step)


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

    @property
    def is_job(self) -> bool:
        return isinstance(self.request, Job)

    def block(self, step: int | None = None) -> bytes:
        """The request as an invocation carries it (spec §3: version 2; a job's step, version 3)."""
        return self.request.block(self.signature, step)

    @classmethod
    def from_block(cls, raw: bytes, call_digest: bytes) -> SignedRequest:
        """The signed request (or job) an invocation carries; ``call_digest`` is that invocation's
        call digest, which the block leaves out because the invocation is its own. A job step's
        number is :func:`step_of` the block."""
        try:
            if len(raw) == JOB_BLOCK.size:
                chain_id, deal, customer, sequence, steps, budget, not_before, not_after, signature, _ = JOB_BLOCK.unpack(raw)
                request: Request = Job(chain_id, deal, customer, sequence, call_digest, budget, not_before, not_after, steps)
            elif len(raw) == REQUEST_BLOCK.size:
                chain_id, deal, customer, sequence, budget, not_before, not_after, signature = REQUEST_BLOCK.unpack(raw)
                request = Request(chain_id, deal, customer, sequence, call_digest, budget, not_before, not_after)
            else:
                raise EncodingError(f"a request block has {REQUEST_BLOCK.size} bytes and a job's {JOB_BLOCK.size}, got {len(raw)}")
        except InputError as exc:
            raise EncodingError(f"the invocation's request block is not a request: {exc.message}") from None
        return cls(request, signature)

    def to_json(self) -> dict[str, Any]:
        return {"format": JOB_FORMAT if self.is_job else REQUEST_FORMAT, "chain_id": self.request.chain_id, "request": self.request.message(),
                "signature": "0x" + self.signature.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> SignedRequest:
        job = isinstance(doc, dict) and doc.get("format") == JOB_FORMAT
        d = document(doc, JOB_FORMAT if job else REQUEST_FORMAT, ("chain_id", "request", "signature"))
        m = exact(d["request"], "job" if job else "request", _JOB_MEMBERS if job else _MEMBERS)
        terms = dict(
            chain_id=uint(d["chain_id"], "chain id"),
            deal=hex0x(m["deal"], "a request's deal", 32), customer=_address(m["customer"]), sequence=uint(m["sequence"], "sequence"),
            invocation=hex0x(m["invocation"], "a request's invocation", 32), fuel_budget=uint(m["fuelBudget"], "fuel budget"),
            not_before=uint(m["notBefore"], "notBefore"), not_after=uint(m["notAfter"], "notAfter"),
        )
        request = Job(**terms, steps=uint(m["steps"], "steps")) if job else Request(**terms)
        return cls(request, hex0x(d["signature"], "a request's signature", 65))


def _address(value: Any) -> bytes:
    if not isinstance(value, str):  # (and a cache key must be hashable)
        raise EncodingError("a request's customer address must be 0x and 40 hex digits")
    return _checked_address(value)


@lru_cache(maxsize=4096)
def _checked_address(value: str) -> bytes:
    # One spelling per address, so a document has one encoding: EIP-55 mixed case, as signed.
    # Cached: a customer sends many requests, and the checksum costs a Keccak-256 (~4 µs).
    raw = hex0x(value, "a request's customer address", 20)
    if value != eip712_address(raw):
        raise EncodingError("a request's customer is written in its EIP-55 checksummed form", expected=eip712_address(raw), observed=value)
    return raw


def sign_request(secret_key: bytes, *, chain_id: int, deal: bytes, sequence: int, invocation: bytes, fuel_budget: int,
                 not_before: int, not_after: int, steps: int | None = None) -> SignedRequest:
    """A customer's signed request: what a client library or `poe request` makes with the
    customer's secp256k1 key (whose address becomes the request's customer); with `steps`, a
    stateful job of that many steps, each with at most `fuel_budget` fuel."""
    from poe.crypto.schemes import get_scheme

    k1 = get_scheme("secp256k1")
    customer = bytes.fromhex(k1.identity(k1.public_key(secret_key))[2:])
    request = Request(chain_id, deal, customer, sequence, invocation, fuel_budget, not_before, not_after)
    if steps is not None:
        request = Job(chain_id, deal, customer, sequence, invocation, fuel_budget, not_before, not_after, steps)
    return SignedRequest(request, k1.sign_hash(secret_key, request.digest))  # type: ignore[attr-defined]


def answer(invocation: Any, signed: SignedRequest, step: int | None = None) -> Any:
    """``invocation`` (a plain call) as the answer to ``signed``: the version-2 invocation whose
    record commits the request, or for a job, step `step`'s version-3 invocation. InputError if
    the request names another call."""
    import dataclasses

    if invocation.request:
        raise InputError("the invocation already answers a request")
    if signed.request.invocation != invocation.call_digest:
        raise InputError("the request names another invocation (export, arguments, environment, payloads or seed differ)",
                         expected=signed.request.invocation.hex(), observed=invocation.call_digest.hex())
    block = signed.block(step)
    # The call was validated when it was built and the block was packed here: copy the fields
    # rather than validate them again through the constructor (a provider answers every
    # request this way). The call's bytes and digest are the ones just compared: kept too.
    answered = object.__new__(type(invocation))
    answered.__dict__.update({f.name: getattr(invocation, f.name) for f in dataclasses.fields(invocation)}, request=block,
                             call_encoded=invocation.call_encoded, call_digest=invocation.call_digest)
    return answered


def request_of(invocation: Any) -> SignedRequest | None:
    """The signed request (or job) an invocation answers, or None for an anonymous one."""
    return SignedRequest.from_block(invocation.request, invocation.call_digest) if invocation.request else None


def step_of(block: bytes) -> int | None:
    """A job step's number, from the block its invocation carries (None for a request's)."""
    return JOB_BLOCK.unpack(block)[-1] if len(block) == JOB_BLOCK.size else None
