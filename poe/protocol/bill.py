"""A customer's bill for one epoch (docs/spec.md §14.4): every segment billed to it, proven complete.

The epoch's bill tree (§14.2) sorts its leaves by (customer, sequence), so one customer's
segments are one contiguous range. A bill (``poe bill v1``) carries that range's records, each
with its invocation (which carries the customer's signed request), the leaves just outside it,
and one range proof over both. Checked against the bill root the provider signed (statement
version 3), it shows what the customer is billed for, that each of those segments answers a
request the customer signed, and that no other segment of the epoch is billed to it.
Everything here is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poe.errors import BillOrderError, EncodingError, PoEError, VerificationError
from poe.formats import hashing as h
from poe.formats.invocation import split_requested
from poe.formats.record import RECORD_SIZE, Record
from poe.merkle.build import ANONYMOUS, BillEntry
from poe.merkle.hasher import Node, Root, Sums, leaf
from poe.merkle.verify import MAX_BILL_PROOF_BYTES, MAX_PROOF_BYTES, verify_bill_range, verify_encoded_inclusion
from poe.protocol.fields import array, document, exact, hex0x, hexbytes, uint

__all__ = ["BILL_FORMAT", "bill_document", "check_bill", "check_answer", "check_bill_opening", "check_bill_leaf", "BillLeafFault",
           "CheckedBill", "entry_json", "entry_from_json"]

BILL_FORMAT = "poe bill v1"
MAX_ENTRIES = 1_000_000
_MAX_INVOCATION = 1 << 20


def entry_json(e: BillEntry | None) -> dict[str, Any] | None:
    """A bill-tree leaf as bills and openings show it (null for none)."""
    if e is None:
        return None
    return {"customer": "0x" + e.customer.hex(), "sequence": e.sequence, "index": e.index, "record_leaf": e.record.encode().hex()}


def bill_document(epoch: int, customer: bytes, start: int, end: int, size: int, entries: list[tuple[BillEntry, bytes, bytes, bytes]],
                  left: BillEntry | None, right: BillEntry | None, proof: bytes) -> dict[str, Any]:
    """The document for bill-tree leaves start..end-1 of a tree of `size` (the customer's range;
    empty when start == end), `entries` as (entry, record bytes, invocation bytes, the record's
    inclusion proof in the epoch's record tree), and the neighbours just outside the range,
    which `proof` covers too."""
    return {
        "format": BILL_FORMAT, "epoch": epoch, "customer": "0x" + customer.hex(), "range": [start, end], "bill_size": size,
        "entries": [{"sequence": e.sequence, "index": e.index, "record": rec.hex(), "invocation": inv.hex(), "inclusion": p.hex()}
                    for e, rec, inv, p in entries],
        "left": entry_json(left), "right": entry_json(right), "proof": proof.hex(),
    }


@dataclass(frozen=True)
class CheckedBill:
    epoch: int
    customer: bytes
    segments: list[dict[str, Any]]  # sequence, index, request digest... per billed segment
    sums: Sums
    range: list[int]  # [start, end) of its leaves in the bill tree

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "customer": "0x" + self.customer.hex(), "range": self.range, "segments": self.segments,
                "totals": self.sums.to_json()}


def entry_from_json(d: Any, what: str) -> BillEntry | None:
    """The inverse of entry_json, strictly decoded."""
    if d is None:
        return None
    n = exact(d, what, ("customer", "sequence", "index", "record_leaf"))
    return BillEntry(hex0x(n["customer"], f"{what} customer", 20), uint(n["sequence"], f"{what} sequence"), uint(n["index"], f"{what} index"),
                     Node.decode(hexbytes(n["record_leaf"], f"{what} record leaf", 80)))


def check_bill(doc: Any, statement: Any, deal_digest: bytes, window: int | None = None) -> CheckedBill:
    """Check a bill against an attested statement (version 3, already verified by the caller)
    under the deal with `deal_digest` (and its window cap, if it has one), and return what it
    proves; raise a typed error otherwise. The requests' signatures are checked too, so a
    backend loads here."""
    if not statement.bills:
        raise VerificationError(f"the attestation signs no ordered bill tree (statement version {statement.version}): it cannot prove a bill")
    d = document(doc, BILL_FORMAT, ("epoch", "customer", "range", "bill_size", "entries", "left", "right", "proof"))
    customer = hex0x(d["customer"], "customer", 20)
    if customer == ANONYMOUS:
        raise EncodingError("the zero address is not a customer: it marks anonymous segments")
    if uint(d["epoch"], "epoch") != statement.epoch:
        raise VerificationError("the bill is for another epoch than the attestation", expected=statement.epoch, observed=d["epoch"])
    root: Root = statement.bill_root
    if uint(d["bill_size"], "bill size") != root.size:
        raise VerificationError("the bill is for a bill tree of another size", expected=root.size, observed=d["bill_size"])
    bounds = array(d["range"], "range", 2)
    start, end = uint(bounds[0] if bounds else None, "range start"), uint(bounds[-1] if bounds else None, "range end")
    left, right = entry_from_json(d["left"], "left neighbour"), entry_from_json(d["right"], "right neighbour")
    entries = [_entry(e, customer, statement, deal_digest, window) for e in array(d["entries"], "entries", MAX_ENTRIES)]
    if len(bounds) != 2 or end - start != len(entries) or not 0 <= start <= end <= root.size:
        raise EncodingError("the bill's range does not match its entries or its tree")
    _check_order(customer, [e for e, _ in entries], left, right, start, end, root.size)
    span = ([left] if left else []) + [e for e, _ in entries] + ([right] if right else [])
    if not span:
        raise VerificationError("a bill of a non-empty tree needs at least one leaf to prove where the customer would stand")
    first = start - (1 if left else 0)
    proof = hexbytes(d["proof"], "range proof", max_length=MAX_BILL_PROOF_BYTES)
    start_, end_, _, _ = verify_bill_range([e.leaf for e in span], proof, root)
    if (start_, end_) != (first, first + len(span)):
        raise VerificationError("the range proof covers other leaves than the bill's", expected=[first, first + len(span)], observed=[start_, end_])
    total = Sums()
    for e, _ in entries:
        total = total + e.record.sums
    return CheckedBill(statement.epoch, customer, [info for _, info in entries], total, [start, end])


def _check_order(customer: bytes, mine: list[BillEntry], left: BillEntry | None, right: BillEntry | None,
                 start: int, end: int, size: int) -> None:
    """Leaves are sorted by (customer, sequence): the range holds exactly this customer's if the
    leaf before it belongs to a smaller customer and the one after to a larger one."""
    if (left is None) != (start == 0) or (right is None) != (end == size):
        raise VerificationError("a neighbour is missing (or given at the tree's edge): the bill could hide segments next to it")
    if left is not None and left.customer >= customer:
        raise VerificationError("the leaf before the bill is this customer's or sorts after it: the bill is not all of it")
    if right is not None and right.customer <= customer:
        raise VerificationError("the leaf after the bill is this customer's or sorts before it: the bill is not all of it")
    keys = [e.sequence for e in mine]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise VerificationError("the bill's sequences do not strictly increase: a request is billed twice, or the order is forged")


def _entry(d: Any, customer: bytes, statement: Any, deal_digest: bytes, window: int | None) -> tuple[BillEntry, dict[str, Any]]:
    """One billed segment: its record is in the epoch, its invocation is the one the record
    commits, and that invocation answers a request this customer signed with this sequence."""
    e = exact(d, "bill entry", ("sequence", "index", "record", "invocation", "inclusion"))
    raw = hexbytes(e["record"], "record", RECORD_SIZE)
    record = Record.decode(raw)
    index = uint(e["index"], "index")
    if record.index != index or not statement.first_index <= index < statement.end_index:
        raise VerificationError(f"segment {index}'s record is not the epoch's segment {index}", observed=record.index)
    # The bill tree is checked only where a bill opens it; the record must also be the one the
    # signed record tree holds at its index, or a made-up record could stand in a real leaf's place.
    proven = verify_encoded_inclusion(raw, hexbytes(e["inclusion"], "inclusion proof", max_length=MAX_PROOF_BYTES), statement.root)
    if proven != index:
        raise VerificationError(f"segment {index}'s inclusion proof is for leaf {proven}")
    inv = hexbytes(e["invocation"], "invocation", max_length=_MAX_INVOCATION)
    sequence = uint(e["sequence"], "sequence")
    entry = BillEntry(customer, sequence, index, leaf(raw))
    signed = check_answer(inv, record, entry, deal_digest, statement.epoch, window)
    return entry, {"sequence": sequence, "index": index, "request": signed.digest.hex(), "record_leaf": entry.record.hash.hex(), "fuel": record.fuel,
                   "outcome": record.describe_outcome()}


class BillLeafFault(VerificationError):
    """A bill leaf that fails a check of spec §14.3 on signed data alone (the two signed roots,
    the invocation its record commits, the deal): a fault anyone can re-check, so the verdict
    carries a fraud proof of kind "bill-leaf". It keeps the code of the check that failed
    (``merkle.bill-order``, ``attest.bad-signature``...)."""

    @classmethod
    def of(cls, exc: PoEError) -> BillLeafFault:
        fault = cls(exc.message, **exc.details)
        fault.code = exc.code
        return fault


def check_bill_opening(statement: Any, opening: Any) -> tuple[BillEntry, int, Sums]:
    """The bill member of a weighted opening (spec §12.3, §14.3 check 1): leaf `position` and each
    neighbour it has, proven by one range proof against the signed bill root. Returns the leaf,
    the first shown position, and the sums of every leaf before it (its offset in the epoch)."""
    b = opening.bill
    if b is None:
        raise VerificationError(f"opening for {opening.target} does not show its leaf in the bill tree")
    size = statement.bill_root.size
    if b.position >= size:
        raise VerificationError(f"bill leaf {b.position} is outside a bill tree of {size}")
    lo = max(0, b.position - 1)
    if len(b.leaves) != min(size, b.position + 2) - lo:
        raise VerificationError(f"the bill opening must show leaf {b.position} and each neighbour it has")
    try:
        first, end, left, _ = verify_bill_range([e.leaf for e in b.leaves], b.proof, statement.bill_root)
    except BillOrderError as exc:  # raised only once the signed root is reproduced: the provider's fault
        raise BillLeafFault.of(exc) from None
    if (first, end) != (lo, lo + len(b.leaves)):
        raise VerificationError("the bill range proof covers other leaves than the opening shows")
    before = b.leaves[: b.position - lo]
    for e in before:
        left = left + e.record.sums
    return b.leaves[b.position - lo], lo, left


def check_bill_leaf(statement: Any, deal: Any, opening: Any, record: Record, entry: BillEntry, lo: int, *,
                    signature: bool = True) -> Any:
    """Checks 2-4 of spec §14.3 on a proven bill opening whose record (at `opening.index`) is
    proven in the signed record tree: BillLeafFault when the signed trees, the committed
    invocation and the deal show a fault; VerificationError when the opening merely answers with
    a record the leaf does not name. Returns the signed request (None for an anonymous leaf).
    Without `signature`, the caller checks the request's signature itself (the audit does, on
    another core, with the re-executions) and must treat a failure as this function would."""
    if entry.index != opening.index:
        raise VerificationError(f"bill leaf {opening.bill.position} names segment {entry.index}, and the opening shows segment {opening.index}")
    # The invocation is the opening's, not signed data: one that is not the record's input is a
    # bad answer (a REJECT), never a proof against the provider's trees.
    if h.digest(h.CTX_INVOCATION, opening.invocation) != record.input_digest:
        raise VerificationError(f"segment {record.index}'s opened invocation is not the one its record commits")
    from poe.crypto.schemes import get_scheme

    # Loaded here, outside the fault handler: a signature library this machine cannot load is the
    # checker's problem (BackendError), never a proof against the provider.
    get_scheme("secp256k1")
    try:
        if entry.record != leaf(opening.record):
            raise VerificationError(f"bill leaf {opening.bill.position} names another record than segment {entry.index} of the record tree "
                                    "(hash or sums)")
        keys = [(e.customer, e.sequence) for e in opening.bill.leaves]
        if any(a >= z for a, z in zip(keys, keys[1:])):
            raise VerificationError(f"bill leaves {lo}..{lo + len(keys) - 1} are not in strictly increasing (customer, sequence) order: "
                                    "a request billed twice, or a forged order")
        return check_answer(opening.invocation, record, entry, deal.digest, statement.epoch, deal.window, deal.anonymous,
                            signature=signature)
    except BillLeafFault:
        raise
    except (VerificationError, EncodingError) as exc:  # what the committed data does wrong is the provider's signed fault
        raise BillLeafFault.of(exc) from None


def check_answer(invocation: bytes, record: Record, entry: BillEntry, deal_digest: bytes, epoch: int, window: int | None,
                 anonymous: bool = False, *, signature: bool = True) -> Any:
    """The checks of spec §14.3 that tie one bill leaf to its segment: the invocation is the one
    the record commits; a customer's leaf answers a request that customer signed, for this deal,
    with the leaf's sequence (a job's step k: its first sequence + k, and k below its steps),
    billable in `epoch`, spanning at most `window` epochs, and the record's fuel is within its
    budget; an anonymous leaf (allowed only with `anonymous`) carries
    no request and the segment's index as its sequence. Returns the signed request (None for an
    anonymous leaf); raises VerificationError or SignatureError otherwise."""
    from poe.protocol.request import SignedRequest, step_of

    index = record.index
    if h.digest(h.CTX_INVOCATION, invocation) != record.input_digest:
        raise VerificationError(f"segment {index}'s invocation is not the one its record commits")
    parts = split_requested(invocation)
    if entry.customer == ANONYMOUS:
        if not anonymous:
            raise VerificationError(f"segment {index} answers no signed request, and the deal bills signed requests only")
        if parts is not None or entry.sequence != index:
            raise VerificationError(f"segment {index} is billed as anonymous but answers a request or is keyed by another sequence")
        return None
    if parts is None:
        raise VerificationError(f"segment {index} answers no request, yet it is billed to a customer")
    call, block = parts
    signed = SignedRequest.from_block(block, h.digest(h.CTX_INVOCATION, call))
    request = signed.request
    step = step_of(block)
    if step is not None and step >= request.steps:  # type: ignore[attr-defined]
        raise VerificationError(f"segment {index} is step {step} of a job the customer signed for {request.steps} steps",  # type: ignore[attr-defined]
                                expected=request.steps, observed=step)  # type: ignore[attr-defined]
    if request.customer != entry.customer or request.sequence + (step or 0) != entry.sequence:
        raise VerificationError(f"segment {index} answers another request than its bill leaf says (customer or sequence)")
    if signature:
        signed.verify()
    if request.deal != deal_digest:
        raise VerificationError(f"segment {index} answers a request for another deal")
    if not request.not_before <= epoch <= request.not_after:
        raise VerificationError(f"segment {index} answers a request not billable in epoch {epoch}",
                                expected=[request.not_before, request.not_after], observed=epoch)
    if window is not None and request.not_after - request.not_before >= window:
        raise VerificationError(f"segment {index} answers a request whose window is wider than the deal's {window} epoch(s)")
    if record.fuel > request.fuel_budget:
        raise VerificationError(f"segment {index} bills more fuel than its request allows", expected=request.fuel_budget, observed=record.fuel)
    return signed
