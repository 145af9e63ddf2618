"""Attestations: a provider's signed statement over an epoch's tree head (docs/spec.md §11).

The statement has one canonical binary encoding; the signature covers its derive-key digest.
The JSON envelope is transport only: it carries the statement bytes, the signature, the full
cost model (whose digest the statement signs) and the consistency proof from the previous
head (whose digest the statement signs too), so a verifier needs nothing else.

Everything here is pure: verification reads no files and raises typed errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from poe.formats import hashing as h
from poe.formats.costmodel import CostModel
from poe.merkle.hasher import EMPTY, Root, Sums
from poe.merkle.verify import ConsistencyProof, verify_consistency
from poe.protocol.fields import hexbytes
from poe.errors import (
    ChainError,
    CostModelMismatchError,
    EncodingError,
    LimitError,
    PoEError,
    VerificationError,
)

__all__ = ["Statement", "Envelope", "SCHEME_IDS", "PAYLOAD_TYPE", "verify_envelope", "verify_envelopes", "verify_chain", "EMPTY_ROOT"]

STATEMENT_VERSION = 1
BILLED_STATEMENT_VERSION = 2  # version 1 and the epoch's bill root, over an unordered tree (spec §11.1)
ORDERED_STATEMENT_VERSION = 3  # the same bytes; the bill root is of the ordered bill tree (spec §14.2)
PAYLOAD_TYPE = "application/vnd.poe.attestation.v1"
CTX_STATEMENT = "poe 2026-11 attestation v1"
CTX_CONSISTENCY = "poe 2026-11 consistency proof v1"
SCHEME_IDS = {"bls12-381": 1, "secp256k1": 2}
_SCHEME_NAMES = {v: k for k, v in SCHEME_IDS.items()}
PUBLIC_KEY_SIZES = {"bls12-381": 48, "secp256k1": 33}
MAX_DEAL_ID = 256
MAX_ENVELOPE = 1 << 20
EMPTY_ROOT = Root(0, EMPTY.hash, Sums())
_FIXED = struct.Struct("<BB32s32s")
_RANGE = struct.Struct("<QQQ")


def consistency_digest(proof: bytes | None) -> bytes:
    return h.digest(CTX_CONSISTENCY, proof) if proof is not None else h.ZERO_DIGEST


def check_deal_id(deal_id: str) -> None:
    """1..256 bytes of UTF-8 with no control, format or separator characters (no bidi tricks)."""
    try:
        size = len(deal_id.encode())
    except UnicodeEncodeError:
        raise EncodingError("deal id must be valid UTF-8") from None
    if not 0 < size <= MAX_DEAL_ID or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in deal_id):
        raise EncodingError(f"deal id must be 1..{MAX_DEAL_ID} bytes of printable UTF-8 (no control or format characters)")


@dataclass(frozen=True)
class Statement:
    scheme: str
    cost_model_digest: bytes
    module_digest: bytes
    public_key: bytes
    deal_id: str
    epoch: int
    first_index: int
    end_index: int
    root: Root
    previous_root: Root
    consistency_digest: bytes
    issued_at: int  # unix seconds; informational, not checked
    bill_root: Root | None = None  # the epoch's bill tree (versions 2 and 3); None in a version-1 statement
    ordered: bool = True  # the bill root is of the ordered bill tree (version 3); False: version 2, whose tree proves no order

    @property
    def version(self) -> int:
        if self.bill_root is None:
            return STATEMENT_VERSION
        return ORDERED_STATEMENT_VERSION if self.ordered else BILLED_STATEMENT_VERSION

    @property
    def bills(self) -> bool:
        """The statement signs an ordered bill tree, which audits sample and customers check."""
        return self.bill_root is not None and self.ordered

    def encode(self) -> bytes:
        self.check()
        deal = self.deal_id.encode()
        return b"".join([
            _FIXED.pack(self.version, SCHEME_IDS[self.scheme], self.cost_model_digest, self.module_digest),
            struct.pack("<H", len(self.public_key)), self.public_key,
            struct.pack("<H", len(deal)), deal,
            _RANGE.pack(self.epoch, self.first_index, self.end_index),
            self.root.encode(), self.previous_root.encode(), self.consistency_digest,
            b"" if self.bill_root is None else self.bill_root.encode(),
            struct.pack("<Q", self.issued_at),
        ])

    @cached_property
    def digest(self) -> bytes:
        """What the provider signs."""
        return h.digest(CTX_STATEMENT, self.encode())

    def check(self) -> None:
        """The statement's own consistency: every rule a signature cannot vouch for by itself."""
        if self.scheme not in SCHEME_IDS:
            raise EncodingError(f"unknown signature scheme {self.scheme!r}")
        if len(self.public_key) != PUBLIC_KEY_SIZES[self.scheme]:
            raise EncodingError(f"a {self.scheme} public key is {PUBLIC_KEY_SIZES[self.scheme]} bytes, got {len(self.public_key)}")
        check_deal_id(self.deal_id)
        if len(self.cost_model_digest) != 32 or len(self.module_digest) != 32 or len(self.consistency_digest) != 32:
            raise EncodingError("digests are 32 bytes")
        if not self.first_index <= self.end_index:
            raise EncodingError(f"leaf range {self.first_index}..{self.end_index} runs backwards")
        if self.root.size != self.end_index or self.previous_root.size != self.first_index:
            raise EncodingError(
                f"leaf range {self.first_index}..{self.end_index} does not match the heads "
                f"(previous {self.previous_root.size}, this {self.root.size})"
            )
        for head in (self.root, self.previous_root):
            if head.size == 0 and head != EMPTY_ROOT:
                raise EncodingError("a head of size 0 must be the empty tree (its hash and zero totals)")
        if self.epoch == 0 and self.previous_root != EMPTY_ROOT:
            raise EncodingError("epoch 0 must follow the empty tree")
        first_epoch_or_empty = self.previous_root.size == 0
        if first_epoch_or_empty != (self.consistency_digest == h.ZERO_DIGEST):
            raise EncodingError("a consistency proof is referenced exactly when the previous head is not empty")
        if self.bill_root is not None:
            if self.bill_root.size != self.end_index - self.first_index or self.bill_root.sums != self.totals:
                raise EncodingError("the bill root must have one leaf per segment of the epoch and add up to the epoch's totals",
                                    expected=[self.end_index - self.first_index, self.totals.to_json()],
                                    observed=[self.bill_root.size, self.bill_root.sums.to_json()])
            if self.bill_root.size == 0 and self.bill_root != EMPTY_ROOT:
                raise EncodingError("an empty epoch's bill root is the empty tree")

    @property
    def totals(self) -> Sums:
        """What this epoch bills: this head's totals minus the previous head's."""
        return self.root.sums - self.previous_root.sums

    @classmethod
    def decode(cls, raw: bytes) -> Statement:
        try:
            version, scheme_id, cm, module = _FIXED.unpack_from(raw, 0)
            if version not in (STATEMENT_VERSION, BILLED_STATEMENT_VERSION, ORDERED_STATEMENT_VERSION):
                raise EncodingError(f"attestation statement version {version} is not supported",
                                    expected=[STATEMENT_VERSION, BILLED_STATEMENT_VERSION, ORDERED_STATEMENT_VERSION], observed=version)
            if scheme_id not in _SCHEME_NAMES:
                raise EncodingError(f"unknown signature scheme id {scheme_id}")
            at = _FIXED.size
            (pk_len,) = struct.unpack_from("<H", raw, at)
            pk = raw[at + 2 : at + 2 + pk_len]
            at += 2 + pk_len
            (deal_len,) = struct.unpack_from("<H", raw, at)
            deal = raw[at + 2 : at + 2 + deal_len].decode()
            at += 2 + deal_len
            epoch, first, end = _RANGE.unpack_from(raw, at)
            at += _RANGE.size
            root = Root.decode(raw[at : at + 88])
            previous = Root.decode(raw[at + 88 : at + 176])
            cons = raw[at + 176 : at + 208]
            at += 208
            bill = None
            if version in (BILLED_STATEMENT_VERSION, ORDERED_STATEMENT_VERSION):
                bill = Root.decode(raw[at : at + 88])
                at += 88
            (issued,) = struct.unpack_from("<Q", raw, at)
            at += 8
        except (struct.error, UnicodeDecodeError) as exc:
            raise EncodingError(f"attestation statement is truncated or malformed ({exc})") from None
        if at != len(raw):
            raise EncodingError(f"attestation statement has {len(raw) - at} trailing bytes" if at < len(raw) else "attestation statement is truncated")
        st = cls(_SCHEME_NAMES[scheme_id], cm, module, pk, deal, epoch, first, end, root, previous, cons, issued, bill,
                 version != BILLED_STATEMENT_VERSION)
        if st.encode() != bytes(raw):
            raise EncodingError("attestation statement is not in canonical form")
        return st

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "public_key": self.public_key.hex(),
            "deal_id": self.deal_id,
            "epoch": self.epoch,
            "leaf_range": [self.first_index, self.end_index],
            "root": self.root.to_json(),
            "previous_root": self.previous_root.to_json(),
            "epoch_totals": self.totals.to_json(),
            "cost_model_digest": self.cost_model_digest.hex(),
            "module_digest": self.module_digest.hex(),
            "consistency_proof_digest": self.consistency_digest.hex(),
            **({} if self.bill_root is None else {"bill_root": self.bill_root.to_json(), "bill_tree_ordered": self.ordered}),
            "issued_at": self.issued_at,
        }


@dataclass(frozen=True)
class Envelope:
    statement_bytes: bytes
    signature: bytes
    key_id: str
    cost_model: dict[str, Any]
    consistency_proof: bytes | None
    proof_of_possession: bytes | None = None

    @cached_property
    def statement(self) -> Statement:
        return Statement.decode(self.statement_bytes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(self.statement_bytes).decode(),
            "signatures": [{"keyid": self.key_id, "sig": base64.b64encode(self.signature).decode()}],
            "cost_model": self.cost_model,
            "consistency_proof": self.consistency_proof.hex() if self.consistency_proof is not None else None,
        }
        if self.proof_of_possession is not None:
            out["proof_of_possession"] = base64.b64encode(self.proof_of_possession).decode()
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def loads(cls, text: str | bytes) -> Envelope:
        if len(text) > MAX_ENVELOPE:
            raise EncodingError(f"attestation envelope is larger than {MAX_ENVELOPE} bytes")
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise EncodingError(f"attestation envelope is not JSON ({exc})") from None
        return cls.from_json(d)

    @classmethod
    def from_json(cls, d: Any) -> Envelope:
        allowed = {"payloadType", "payload", "signatures", "cost_model", "consistency_proof", "proof_of_possession"}
        if not isinstance(d, dict) or set(d) - allowed or not {"payloadType", "payload", "signatures", "cost_model", "consistency_proof"} <= set(d):
            raise EncodingError("attestation envelope must have exactly: payloadType, payload, signatures, cost_model, consistency_proof[, proof_of_possession]")
        if d["payloadType"] != PAYLOAD_TYPE:
            raise EncodingError(f"payload type {d['payloadType']!r:.80} is not {PAYLOAD_TYPE}")
        sigs = d["signatures"]
        if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict) or set(sigs[0]) != {"keyid", "sig"}:
            raise EncodingError("an attestation envelope carries exactly one signature {keyid, sig}")
        try:
            payload = _b64(d["payload"], MAX_ENVELOPE)
            sig = _b64(sigs[0]["sig"], 256)
            proof = hexbytes(d["consistency_proof"], "consistency proof", max_length=MAX_ENVELOPE) if d["consistency_proof"] is not None else None
            pop = _b64(d["proof_of_possession"], 256) if d.get("proof_of_possession") is not None else None
        except (binascii.Error, TypeError, ValueError) as exc:
            raise EncodingError(f"attestation envelope has a malformed field ({exc})") from None
        if not isinstance(d["cost_model"], dict) or not isinstance(sigs[0]["keyid"], str) or len(sigs[0]["keyid"]) > 256:
            raise EncodingError("attestation envelope: cost_model must be an object and keyid a string")
        # The cost model must be exactly the spec's (no section a default would fill in).
        try:
            CostModel.from_json(d["cost_model"])
        except LimitError as exc:
            raise EncodingError(f"envelope cost model is malformed: {exc.message}") from None
        return cls(payload, sig, sigs[0]["keyid"], d["cost_model"], proof, pop)


def _b64(value: Any, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * limit:
        raise ValueError("expected a base64 string")
    return base64.b64decode(value, validate=True)


@dataclass(frozen=True)
class Report:
    """What verifying one envelope established."""

    statement: Statement
    cost_model: CostModel
    reproducible: bool
    note: str | None


def verify_envelope(
    env: Envelope, scheme: Any, *, trusted_keys: list[bytes] | None = None, require_reproducible: bool = False,
    signature_checked: bool = False,
) -> Report:
    """Check one attestation: canonical statement, signature, cost model, consistency proof.

    `scheme` is the poe.crypto Scheme for the statement's scheme. Raises typed errors;
    returns a report. A cost model this machine cannot reproduce is reported (and refused
    when `require_reproducible`), not hidden: a verifier must not compare fuel across it.
    """
    st = env.statement
    if trusted_keys is not None and st.public_key not in trusted_keys:
        raise VerificationError(
            "attestation is signed by a key you did not trust",
            expected=[k.hex() for k in trusted_keys], observed=st.public_key.hex(),
        )
    if not signature_checked:  # a batch check over many envelopes may have done it already
        scheme.verify(st.public_key, st.digest, env.signature)
    if scheme.aggregatable:
        if env.proof_of_possession is None:
            raise EncodingError("a BLS attestation carries the key's proof of possession")
        scheme.pop_verify(st.public_key, env.proof_of_possession)  # so the key can be aggregated safely
    elif env.proof_of_possession is not None:
        raise EncodingError("only BLS attestations carry a proof of possession")
    if env.key_id != scheme.identity(st.public_key):
        raise EncodingError("envelope keyid does not name the statement's key", expected=scheme.identity(st.public_key), observed=env.key_id)
    try:
        cm = CostModel.from_json(env.cost_model)
    except (LimitError, PoEError) as exc:
        raise EncodingError(f"envelope cost model is malformed: {exc}") from None
    if cm.digest != st.cost_model_digest:
        raise VerificationError("envelope cost model does not hash to the signed digest", expected=st.cost_model_digest.hex(), observed=cm.digest.hex())
    if st.consistency_digest != consistency_digest(env.consistency_proof):
        raise VerificationError("consistency proof does not match the signed reference", expected=st.consistency_digest.hex(), observed=consistency_digest(env.consistency_proof).hex())
    if env.consistency_proof is not None:
        verify_consistency(st.previous_root, st.root, ConsistencyProof.decode(env.consistency_proof))
    note = None
    try:
        cm.check_reproducible()
        reproducible = True
    except CostModelMismatchError as exc:
        if require_reproducible:
            raise
        reproducible, note = False, exc.message
    return Report(st, cm, reproducible, note)


def verify_chain(statements: list[Statement], previous: Statement | None = None) -> None:
    """Statements of one provider and deal, in any order, must form one unbroken history.

    Two different heads for one epoch is equivocation; a gap, a head that does not continue
    the previous one, or an epoch at or before `previous` (a replay) is refused.
    """
    if previous is not None:
        for st in statements:
            if (st.public_key, st.deal_id) != (previous.public_key, previous.deal_id):
                raise ChainError(
                    "an attestation is for another key or deal than the one it must continue",
                    expected=[previous.public_key.hex(), previous.deal_id], observed=[st.public_key.hex(), st.deal_id],
                )
    by_key: dict[tuple[bytes, str], list[Statement]] = {}
    for st in statements:
        by_key.setdefault((st.public_key, st.deal_id), []).append(st)
    for (pk, deal), group in by_key.items():
        group.sort(key=lambda s: s.epoch)
        chain = ([previous] if previous is not None and (previous.public_key, previous.deal_id) == (pk, deal) else []) + group
        for a, b in zip(chain, chain[1:]):
            if b.epoch == a.epoch:
                if b.root != a.root:
                    raise ChainError(f"equivocation: two different heads signed for epoch {a.epoch} of deal {deal!r}", expected=a.root.to_json(), observed=b.root.to_json())
                raise ChainError(f"epoch {a.epoch} of deal {deal!r} appears twice (a replay)", expected=a.epoch + 1, observed=b.epoch)
            if b.epoch < a.epoch:
                raise ChainError(f"deal {deal!r}: epoch {b.epoch} is older than epoch {a.epoch} already accepted (a replay)", expected=a.epoch + 1, observed=b.epoch)
            if b.epoch != a.epoch + 1:
                raise ChainError(f"deal {deal!r}: epoch {b.epoch} follows epoch {a.epoch}; the epochs between are missing", expected=a.epoch + 1, observed=b.epoch)
            if (b.cost_model_digest, b.module_digest, b.scheme) != (a.cost_model_digest, a.module_digest, a.scheme):
                raise ChainError(f"deal {deal!r}: epoch {b.epoch} switches cost model, module or scheme mid-chain")
            if b.previous_root != a.root:
                raise ChainError(f"deal {deal!r}: epoch {b.epoch} does not continue epoch {a.epoch}'s head", expected=a.root.to_json(), observed=b.previous_root.to_json())


def verify_envelopes(envelopes: dict[str, Envelope], *, trusted_keys: list[bytes] | None = None, require_reproducible: bool = False,
                     previous: Envelope | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Verify several envelopes by name, alone and as one history: (per-name result, chain error).

    Signatures of schemes that batch are checked in one batch first, which names any bad one;
    `previous` is the last attestation already accepted, which the others must continue."""
    from poe.crypto.schemes import get_scheme
    from poe.errors import BatchVerificationError

    results: dict[str, dict[str, Any]] = {}
    batch_checked: set[str] = set()
    by_scheme: dict[str, list[str]] = {}
    for name, env in envelopes.items():
        by_scheme.setdefault(env.statement.scheme, []).append(name)
    for scheme_name, names in by_scheme.items():
        scheme = get_scheme(scheme_name)
        if not scheme.batchable or len(names) < 2:
            continue
        try:
            scheme.batch_verify([(envelopes[n].statement.public_key, envelopes[n].statement.digest, envelopes[n].signature) for n in names])
            batch_checked.update(names)
        except BatchVerificationError as exc:
            bad = {names[i] for i in exc.bad_indices}
            for n in bad:
                results[n] = {"ok": False, "error": {"code": exc.code, "message": "signature does not verify (named by the batch check)"}}
            batch_checked.update(set(names) - bad)
    statements = []
    for name, env in envelopes.items():
        if name in results:
            continue
        st = env.statement
        try:
            report = verify_envelope(env, get_scheme(st.scheme), trusted_keys=trusted_keys, require_reproducible=require_reproducible,
                                     signature_checked=name in batch_checked)
        except PoEError as exc:
            results[name] = {"ok": False, "error": exc.to_json()}
            continue
        results[name] = {"ok": True, "statement": st.to_json(), "signer": get_scheme(st.scheme).identity(st.public_key),
                         "cost_model_reproducible": report.reproducible, "note": report.note}
        statements.append(st)
    prior = None
    if previous is not None:
        verify_envelope(previous, get_scheme(previous.statement.scheme), trusted_keys=trusted_keys)
        prior = previous.statement
    if statements and (len(statements) > 1 or prior is not None):
        try:
            verify_chain(statements, prior)
        except VerificationError as exc:
            return results, exc.to_json()
    return results, None
