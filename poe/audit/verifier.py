"""The auditor's verdict on one claim (spec §12.3): pure checks of the claim, the challenge and
the openings, and a comparison of re-executed records, the one step that runs guest code."""

from __future__ import annotations

import struct
from typing import Any

from poe._workers import SignatureChecks
from poe.audit.chain import ZERO_STATE, check_state_chain
from poe.audit.reexec import LocalPool, Mapper, executor_for, reexecute_all
from poe.errors import (
    BackendError,
    CostModelMismatchError,
    EncodingError,
    InputError,
    InternalError,
    PoEError,
    SignatureError,
    StateChainError,
    StateMismatchError,
    VerificationError,
)
from poe.formats.invocation import split_requested
from poe.formats.moduleset import Service
from poe.formats.record import RECORD_SIZE, Record, record_diff
from poe.formats.state import bundle_roots
from poe.merkle.hasher import leaf
from poe.merkle.verify import InclusionProof, verify_encoded_inclusion
from poe.protocol.attestation import Report, verify_envelope
from poe.protocol.bill import BillLeafFault, check_bill_leaf, check_bill_opening
from poe.protocol.challenge import Challenge, landing_offset
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.protocol.openings import Opening
from poe.protocol.verdict import Verdict

__all__ = ["audit"]


def audit(claim: Claim, challenge: Challenge, openings: list[Opening], service: Service, *,
          deal: Deal, jobs: int = 1, final: bool = False, states: dict[str, Any] | None = None,
          mapper: Mapper | None = None, min_uniform: int = 0) -> Verdict:
    """Settle one claim: ACCEPT with the challenge's guarantee, REJECT with reasons, or REFUSED.

    `deal` is the deal the auditor agreed to, never the one the claim carries: a provider must
    not choose its own prices. With `final` (the deal's response deadline has passed), samples
    the provider did not open are a REJECT rather than a refusal. Stateful samples are checked
    against their neighbours (the state chain) and re-executed from their pre-state, which the
    provider sends in the `states` bundle. Re-executions run on `mapper` (default: a local pool
    of `jobs` processes). `min_uniform` is the auditor's policy: a challenge drawing fewer
    uniform samples from a non-empty epoch is refused as bad input, whatever the file says. A
    challenge with its uniform list cut short still follows from the claim (the draw is a
    prefix sequence), so pass the number you drew (`poe audit` defaults to DEFAULT_UNIFORM).
    """
    early = _check_terms(claim, deal, service)
    if isinstance(early, Verdict):
        return early
    _check_challenge(claim, challenge, min_uniform)
    by_target = {o.target: o for o in openings}
    wanted = [f"w{j}" for j in range(len(challenge.weighted))] + [f"u{j}" for j in range(len(challenge.uniform))]
    missing = [t for t in wanted if t not in by_target]
    if missing:
        text = f"{len(missing)} of {len(wanted)} challenged samples were not opened (first: {missing[0]})"
        if final:
            return Verdict("REJECT", claim, text + " by the deadline")
        return Verdict("REFUSED", claim, text + "; a re-audit must use this same challenge, and after the deadline this is a REJECT",
                       refused_by="provider")
    run = _Samples(claim, challenge, deal, service, early, states)
    for target in wanted:
        run.check(target, by_target[target])
    signatures = run.check_signatures()  # on another core, while this one re-executes
    if mapper is None:
        with LocalPool(jobs if len(run.unique) > 1 else 1) as pool:
            run.compare(pool, [by_target[t] for t in wanted])
    else:
        run.compare(mapper, [by_target[t] for t in wanted])
    run.settle_signatures(signatures)
    checked = {"weighted": len(challenge.weighted), "uniform": len(challenge.uniform), "re_executed": len(run.unique)}
    if run.problems:
        return Verdict("REJECT", claim, f"{len(run.problems)} of {len(wanted)} samples fail", problems=run.problems,
                       fraud_proof=run.fraud, checked=checked)
    return Verdict("ACCEPT", claim, "every sample verifies and re-executes to the committed record",
                   statement=challenge.guarantee() + _coverage(claim, deal), checked=checked)


def _coverage(claim: Claim, deal: Deal) -> str:
    """What the guarantee says of requested work (spec §14.3): it covers work no customer signed
    only when the statement signs a bill tree and the deal bills signed requests only."""
    if not claim.statement.bills:
        return "; it does not cover work no customer requested (the attestation signs no ordered bill tree)"
    if deal.anonymous:
        return ("; anonymous segments, which this deal bills, are not checked against any customer's request, so it does not cover "
                "unrequested work among them")
    if deal.window is None or deal.window > 1:
        span = "window (this deal caps no window)" if deal.window is None else f"{deal.window}-epoch window"
        return (f"; billed work answers requests its customers signed, once per epoch; a request replayed in another epoch of its "
                f"{span} is left to its customer's bill")
    return "; it covers work no customer signed, requests billed twice or outside their epoch, and fuel beyond a request's budget"


def _check_terms(claim: Claim, deal: Deal, service: Service) -> Verdict | Report:
    """Step 1 of spec §12.3: the claim is under the auditor's deal, signed, and priced right."""
    st = claim.statement
    if claim.deal.digest != deal.digest:
        return Verdict("REJECT", claim, "the claim carries other deal terms than the deal the auditor agreed to")
    if (why := deal.mismatch(st)) is not None:
        return Verdict("REJECT", claim, why)
    from poe.crypto.schemes import get_scheme  # the signature backend loads when a signature is checked

    try:
        report = verify_envelope(claim.envelope, get_scheme(st.scheme), trusted_keys=[deal.provider_key], require_reproducible=True)
    except CostModelMismatchError as exc:
        return Verdict("REFUSED", claim, f"cannot reproduce the claimed cost model here: {exc.message}", refused_by="auditor")
    except (SignatureError, VerificationError, EncodingError) as exc:
        return Verdict("REJECT", claim, f"the attestation does not verify: [{exc.code}] {exc.message}")
    if service.digest != deal.module_digest:
        return Verdict("REFUSED", claim, "the module given to the auditor is not the deal's module", refused_by="auditor")
    expected = deal.amount(st.totals)
    if claim.amount != expected:
        return Verdict("REJECT", claim, f"claimed amount {claim.amount} is not price x totals + subscription = {expected}")
    return report


def _check_challenge(claim: Claim, challenge: Challenge, min_uniform: int) -> None:
    """The challenge is the auditor's own input: one that does not follow is an input error."""
    st = claim.statement
    if challenge.claim_id != claim.claim_id or challenge.root != st.root:
        raise EncodingError("the challenge is for another claim")
    challenge.matches(claim)
    wanted = min_uniform if st.end_index > st.first_index else 0
    if len(challenge.uniform) < wanted:
        raise EncodingError(f"the challenge draws {len(challenge.uniform)} uniform samples; this audit's policy asks for at least {wanted}",
                            expected=wanted, observed=len(challenge.uniform))


class _Samples:
    """The per-sample checks (spec §12.3 steps 2-5) and what they found."""

    SIGNATURES_ASIDE_AT = 64  # fewer, and the worker's pipe costs more than checking them here

    def __init__(self, claim: Claim, challenge: Challenge, deal: Deal, service: Service, report: Report,
                 states: dict[str, Any] | None) -> None:
        self.claim, self.challenge, self.deal, self.service, self.states = claim, challenge, deal, service, states
        self.cm_bytes = report.cost_model.canonical_bytes
        self.max_pages = report.cost_model.limits.memory_pages
        self.problems: list[str] = []
        self.fraud: dict[str, Any] | None = None
        self.signatures: list[tuple[str, Opening, Any]] = []  # requests whose signature is checked with the re-executions
        self.tasks: list[tuple[Opening, Record, tuple, bytes | None]] = []
        self.unique: dict[int, tuple[tuple, bytes | None, bytes]] = {}  # several targets often land on one segment
        self._stateful: dict[str, Any] = {}  # genesis and the bundle's state roots, on first need

    def check(self, target: str, o: Opening) -> None:
        """Every check that needs no re-execution; a failure is a failed sample, never an exception."""
        st, ch = self.claim.statement, self.challenge
        try:
            at = verify_encoded_inclusion(o.record, o.proof, st.root)
            if not st.first_index <= at < st.end_index or at != o.index:
                raise VerificationError(f"leaf {at} is outside the claimed epoch", expected=[st.first_index, st.end_index], observed=at)
            record = Record.decode(o.record)
            if target[0] == "w" and st.bills:
                self._check_bill_leaf(target, ch.weighted[int(target[1:])], o, record)
            elif target[0] == "w":
                r = ch.weighted[int(target[1:])]
                lo, hi = landing_offset(self.deal, st.previous_root.sums, InclusionProof.decode(o.proof), leaf(o.record).sums)
                if not lo <= r < hi:
                    raise VerificationError(f"opening for weighted target {target} covers [{lo}, {hi}), not {r}", expected=r, observed=[lo, hi])
            elif at != ch.uniform[int(target[1:])]:
                raise VerificationError(f"opening for {target} is leaf {at}, not {ch.uniform[int(target[1:])]}")
            if record.index != at:
                raise VerificationError(f"record says index {record.index} but sits at leaf {at}", expected=at, observed=record.index)
            if record.module_digest != self.deal.module_digest or record.cost_model_digest != self.deal.cost_model_digest:
                raise VerificationError(f"record {record.index} was made with another module or cost model")
            if o.decode_invocation().digest != record.input_digest:
                raise VerificationError(f"record {record.index}: the opened invocation is not the committed input")
            pre = self._pre_state_root(record, o) if record.pre_state != ZERO_STATE else None
        except (BackendError, InternalError):  # this machine's failure, not the provider's: no verdict
            raise
        except (PoEError, ValueError, IndexError, struct.error) as exc:  # whatever a provider sends, a failed sample
            self._fail(target, o, exc if isinstance(exc, PoEError) else EncodingError(f"malformed opening: {exc}"))
            return
        task = (self.service.main, self.service.links, self.cm_bytes, o.invocation, o.payloads, o.index)
        self.tasks.append((o, record, task, pre))
        self.unique[o.index] = (task, pre, o.record)

    def _fail(self, target: str, o: Opening, exc: PoEError) -> None:
        self.problems.append(f"{target}: [{exc.code}] {exc.message}")
        if isinstance(exc, (StateChainError, BillLeafFault)) and self.fraud is None:
            kind = "state-chain" if isinstance(exc, StateChainError) else "bill-leaf"
            self.fraud = {"format": "poe fraud proof v1", "kind": kind, "claim": self.claim.to_json(), "opening": o.to_json(),
                          "reason": exc.message}

    def _check_bill_leaf(self, target: str, r: int, o: Opening, record: Record) -> None:
        """Spec §14.3: the weighted target lands on a bill leaf that names this record and the
        request it answers, and whose neighbours' keys enclose its own (so a request billed twice
        sits next to its copy, and the tree's order cannot be forged where a sample looks)."""
        st = self.claim.statement
        entry, lo, left = check_bill_opening(st, o)
        start = self.deal.weight(left)
        end = start + self.deal.weight(entry.record.sums)
        if not start <= r < end:
            raise VerificationError(f"opening for weighted target {target} covers [{start}, {end}) of the bill tree, not {r}", expected=r, observed=[start, end])
        signed = check_bill_leaf(st, self.deal, o, record, entry, lo, signature=False)
        if signed is not None:  # its signature is checked with the re-executions (check_signatures)
            self.signatures.append((target, o, signed))

    def check_signatures(self) -> Any:
        """Start checking the requests' signatures the bill checks left aside, on another core
        when there are enough of them; `settle_signatures` takes the answer. A bad one is a
        bill-leaf fault (the signed trees commit the request), as if check_bill_leaf had found it."""
        return SignatureChecks([(split_requested(o.invocation)[1], signed.request.invocation) for _, o, signed in self.signatures],  # type: ignore[index]
                               whole=True, parallel_at=self.SIGNATURES_ASIDE_AT)

    def settle_signatures(self, checks: Any) -> None:
        with checks:
            try:
                for at, _ in checks.chunks():
                    checks.wait(at)
                return
            except InputError:
                pass
        for target, o, signed in self.signatures:  # rare: find each sample whose signature fails, here
            try:
                signed.verify()
            except SignatureError as exc:
                self._fail(target, o, BillLeafFault.of(exc))

    def _pre_state_root(self, record: Record, o: Opening) -> bytes:
        """A stateful sample chains with its neighbours and starts from genesis or a bundled state;
        the images themselves are rebuilt one at a time when the samples run."""
        s = self._stateful
        if "genesis" not in s:
            s["genesis"] = executor_for(self.service.main, self.service.links, self.cm_bytes).genesis()
            try:
                s["roots"], s["error"] = bundle_roots(self.states) if self.states is not None else set(), None
            except PoEError as exc:
                s["roots"], s["error"] = set(), exc
        genesis_root = s["genesis"][0].root
        check_state_chain(record, o.neighbors, self.claim.statement.root, genesis_root)
        if record.pre_state == genesis_root:
            return record.pre_state
        if s["error"] is not None:
            raise s["error"]
        if record.pre_state not in s["roots"]:
            raise StateMismatchError(f"segment {record.index}'s pre-state is not in the provider's state bundle",
                                     expected=record.pre_state.hex(), observed=None)
        return record.pre_state

    def compare(self, mapper: Mapper, asked: list[Opening]) -> None:
        """Re-execute each distinct segment once and compare the whole record."""
        # An honest bundle holds one state per distinct stateful pre-state among the openings
        # asked for: a bundle with more asks for work nobody needs.
        pre_roots = {o.record[224:256] for o in asked if len(o.record) == RECORD_SIZE and o.record[224:256] != ZERO_STATE}
        outcomes = reexecute_all(mapper, list(self.unique.values()), self._stateful.get("genesis"), self.states, self.max_pages,
                                 max(1, len(pre_roots)))
        for o, committed, _, _ in self.tasks:
            observed, pre = outcomes[o.index]
            if isinstance(observed, tuple):  # the provider's data could not be re-executed
                self.problems.append(f"{o.target}: [{observed[0]}] segment {o.index} cannot be re-executed: {observed[1]}")
            elif observed != o.record:
                diff = record_diff(committed, Record.decode(observed))
                self.problems.append(f"{o.target}: re-execution of segment {o.index} disagrees on {', '.join(diff)}")
                # A stateful segment's proof must carry its pre-state: only one such bundle is built.
                provable = committed.pre_state == ZERO_STATE or pre is not None
                if provable and (self.fraud is None or self.fraud["kind"] != "re-execution"):
                    self.fraud = {
                        "format": "poe fraud proof v1", "kind": "re-execution",
                        "claim": self.claim.to_json(), "opening": o.to_json(), "observed_record": observed.hex(),
                        "differences": {k: [a, b] for k, (a, b) in diff.items()},
                    }
                    if pre is not None:  # self-contained: the pre-state travels with the proof
                        self.fraud["states"] = pre
