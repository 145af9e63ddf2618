"""Cheating providers against the audit, measured: how often each lie is caught, and by what.

Each lie is committed once; its trials vary only the beacon (as a real auditor's would), so a
trial's outcome depends on where the challenge's targets land. For every lie the tests check:
  * the catch rate over >= 200 seeded trials is at least the sampling bound minus binomial noise
    (3 sigma): p = 1 - (1 - eps_actual)^k (1 - f)^u, eps_actual being the overbilled fraction of
    the claimed priced weight and f the fraction of leaves the lie sits on;
  * trial by trial, a challenge is rejected exactly when one of its targets lands on the lie
    (its footprint is worked out from what the liar committed), so the rate also matches the
    exact probability 1 - (1 - q)^k (1 - f)^u, q = weighted share of the footprint;
  * the check that fires is the one that should.
Honest providers (several stores, epochs and price lists; >= 2,000 trials over two worker
processes) are never rejected or refused. `pytest -s` prints the table; POE_CHEAT_REPORT=path
also writes it as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction

import pytest

from poe import Execution, Executor
from poe.merkle.hasher import Root, Sums, leaf

from . import cheaters as c
from .conftest import with_root

EPS, DELTA = Fraction(1, 10), Fraction(1, 10)  # k = 22 weighted targets
WEIGHTED = [(EPS, DELTA, 0)]  # lies the weighted targets must find
UNIFORM = [(EPS, DELTA, 16)]  # lies that need not overbill: uniform targets find them
HONEST_CONFIGS = [(Fraction(1, 10), Fraction(1, 10), 4), (Fraction(1, 4), Fraction(1, 4), 1), (Fraction(1, 20), Fraction(1, 10), 8)]
TRIALS = 200
SEGMENTS = 160
DEAL = c.deal("deal-cheat")
ROWS: list[dict] = []
BILL_CHECKS = {"unsigned segment", "bill order (billed twice)", "request of another leaf", "request signature", "request for another deal",
               "request outside its window", "fuel beyond budget", "step beyond the job"}


@pytest.fixture(scope="module", autouse=True)
def report():
    started = time.perf_counter()
    yield ROWS
    seconds = time.perf_counter() - started
    print("\n\ncheating providers vs the audit (p theory = sampling bound, p exact = with the lie's real footprint)")
    print(c.table(ROWS))
    print(f"{sum(r['trials'] for r in ROWS)} trials in {seconds:.1f} s")
    out = os.environ.get("POE_CHEAT_REPORT")
    if out:
        with open(out, "w") as fh:
            json.dump({"format": "poe cheat report v1", "seconds": round(seconds, 1), "challenge": {"epsilon": str(EPS), "delta": str(DELTA)},
                       "rows": ROWS}, fh, indent=2)


@pytest.fixture(scope="module")
def pool():
    # spawn: the parent has wasmtime engines (and their threads) loaded; forking them is unsafe.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


@pytest.fixture(scope="module")
def honest() -> list[Execution]:
    """One honest history, executed once for the whole module."""
    return c.execute(c.invocations(SEGMENTS))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cheat")


def weights(d, execs) -> list[int]:
    return [d.weight(leaf(e.record.encode()).sums) for e in execs]


def overbilled(honest_w: list[int], lying_w: dict[int, int], chosen: set[int]) -> Fraction:
    """eps_actual when the segments in `chosen` carry `lying_w` instead of their honest weight."""
    extra = sum(lying_w[i] - honest_w[i] for i in chosen)
    return Fraction(extra, sum(honest_w) + extra)


def renumbered(e: Execution, index: int) -> Execution:
    """The execution as if it had run at `index` (the index field is all that changes)."""
    return Execution(dataclasses.replace(e.record, index=index), e.invocation, e.output)


def check_row(p: c.Provider, trials: list[c.Trial], strategy: str, expected_checks: set[str], *, exact: bool = True, note: str = "") -> dict:
    row = c.summarize(strategy, p, trials, note=note)
    ROWS.append(row)
    n, observed = row["trials"], row["observed"]
    assert n >= TRIALS
    assert observed >= row["p_floor"], (
        f"{strategy}: caught {row['caught']}/{n} = {observed:.3f}, below the bound {row['p_theory']:.3f} - 3 sigma = {row['p_floor']:.3f}")
    if exact:
        missed = [t for t in trials if t.touched and t.verdict == "ACCEPT"]
        spurious = [t for t in trials if not t.touched and t.verdict != "ACCEPT"]
        assert not missed, f"{strategy}: {len(missed)} challenges landed on the lie and were accepted"
        assert not spurious, f"{strategy}: {len(spurious)} challenges missed the lie but were not accepted: {spurious[0]}"
        pe = row["p_expected"]
        assert abs(observed - pe) <= 4 * math.sqrt(pe * (1 - pe) / n) + 1e-9, f"{strategy}: observed {observed:.3f}, exact {pe:.3f}"
    if row["caught"]:
        assert set(row["checks"]) == expected_checks, f"{strategy}: checks fired {row['checks']}"
    if expected_checks <= BILL_CHECKS:  # every rejection carries a fraud proof anyone re-checks without the module
        assert row["fraud_proofs"] == ({"bill-leaf proven": row["caught"]} if row["caught"] else {}), f"{strategy}: {row['fraud_proofs']}"
    return row


def honest_row(p: c.Provider, trials: list[c.Trial]) -> dict:
    """The report row of an honest provider: observed is the fraction not accepted, which must be 0."""
    caught = sum(t.verdict != "ACCEPT" for t in trials)
    return {
        "strategy": p.name, "provider": p.name, "trials": len(trials), "eps_actual": 0.0,
        "k": "/".join(sorted({str(t.k) for t in trials}, key=int)), "uniform": "/".join(sorted({str(t.u) for t in trials}, key=int)),
        "f_affected": 0.0, "q_weighted": 0.0, "p_theory": 0.0, "p_floor": 0.0, "p_expected": 0.0,
        "observed": caught / len(trials), "caught": caught, "verdicts": {v: sum(t.verdict == v for t in trials) for v in {t.verdict for t in trials}},
        "checks": {}, "caught_by": "audit", "note": "observed = fraction not accepted; must be 0",
    }


# -- honest providers ------------------------------------------------------------------------------

def test_honest_providers_are_never_rejected_or_refused(pool, honest, workdir):
    invs = [e.invocation for e in honest]
    providers = [
        (c.make_provider("honest: 160 segments, epoch 0", str(workdir / "h1.poe"), DEAL, honest), 700),
        (c.make_provider("honest: epoch 1 of 61+99 segments", str(workdir / "h2.poe"), DEAL, honest, epochs=(61,)), 500),
        (c.make_provider("honest: 37 segments, io-only prices", str(workdir / "h3.poe"), c.deal("deal-cheat-io", {"fuel": 0, "mem": 0, "io": 3}, 0), honest[:37]), 400),
        (c.make_provider("honest: 160 re-run in reverse, fuel price", str(workdir / "h4.poe"), c.deal("deal-cheat-fuel", {"fuel": 1, "mem": 0, "io": 0}, 50),
                         c.execute(invs[::-1])), 400),
    ]
    total, pids, bad = 0, set(), []
    for p, n in providers:
        assert p.epsilon == 0 and not p.bad_leaves
        trials = c.run_trials(pool, p, p.name, n, HONEST_CONFIGS)
        total += len(trials)
        pids |= {t.pid for t in trials}
        bad += [(p.name, t) for t in trials if t.verdict != "ACCEPT" or t.chain != "ok"]
        ROWS.append(honest_row(p, trials))
    assert providers[1][0].previous is not None  # the epoch-1 claim was also checked against epoch 0 by verify_chain
    assert total >= 2000
    assert len(pids) >= 2, "the honest trials should have been spread over both worker processes"
    assert not bad, f"{len(bad)} honest trials not accepted, first: {bad[0]}"


# -- 1. inflated fuel --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inflated(honest, workdir) -> c.Provider:
    """Fuel tripled on a few segments, committed consistently: eps_actual just above 1/25."""
    hw = weights(DEAL, honest)
    lying = {i: DEAL.weight(leaf(c.inflate(e, 3).record.encode()).sums) for i, e in enumerate(honest)}
    bad = c.pick("inflate small", range(SEGMENTS), lambda s: overbilled(hw, lying, s) >= Fraction(1, 25))
    entries = [c.inflate(e, 3) if i in bad else e for i, e in enumerate(honest)]
    return c.make_provider("1a inflated fuel", str(workdir / "inflated.poe"), DEAL, entries, honest_weight=sum(hw), bad=bad)


def test_inflated_fuel_is_caught_as_often_as_the_bound_says(pool, inflated):
    assert 0 < inflated.epsilon < EPS and len(inflated.bad_leaves) < SEGMENTS // 10
    trials = c.run_trials(pool, inflated, "1a", TRIALS, WEIGHTED)
    check_row(inflated, trials, f"1a inflated fuel x3 on {len(inflated.bad_leaves)}/{SEGMENTS}", {"re-execution: fuel, mem"})


def test_inflated_fuel_of_epsilon_in_a_later_epoch_meets_the_guarantee(pool, honest, workdir):
    first = 61
    hw = weights(DEAL, honest[first:])
    lying = {i: DEAL.weight(leaf(c.inflate(e, 3).record.encode()).sums) for i, e in enumerate(honest[first:])}
    chosen = c.pick("inflate epsilon", range(SEGMENTS - first), lambda s: overbilled(hw, lying, s) >= EPS)
    bad = {first + i for i in chosen}
    entries = [c.inflate(e, 3) if i in bad else e for i, e in enumerate(honest)]
    p = c.make_provider("1b inflated fuel, epoch 1", str(workdir / "inflated-e1.poe"), DEAL, entries, honest_weight=sum(hw), bad=bad, epochs=(first,))
    assert p.claim.statement.epoch == 1 and p.epsilon >= EPS
    assert c.catch_bound(p.epsilon, Fraction(0), 22, 0) >= 1 - DELTA  # what ACCEPT's statement promises
    trials = c.run_trials(pool, p, "1b", TRIALS, WEIGHTED)
    check_row(p, trials, f"1b inflated fuel >= eps, epoch 1 ({len(bad)}/{SEGMENTS - first})", {"re-execution: fuel, mem"})


# -- 2. inflated totals over honest leaves -------------------------------------------------------

def test_inflated_totals_over_honest_leaves_never_verify(pool, honest, workdir):
    path = str(workdir / "totals.poe")
    seals, committed = c.commit(path, honest)
    (claim,) = c.attest(path, seals, DEAL)
    st = claim.statement
    real = c.weight_of(DEAL, committed)
    extra = Sums(real // 48, 0, 0)  # +1/24 of the real weight at fuel price 2: eps_actual = 1/25
    forged = with_root(st, Root(st.root.size, st.root.hash, st.root.sums + extra))
    lie = c.claim_of(forged, DEAL)
    w = DEAL.weight(forged.totals)
    p = c.Provider("2 inflated totals", path, lie, real, respond="levels", bad_leaves=frozenset(range(SEGMENTS)),
                   bad_intervals=((0, w),), levels=c.build_levels([leaf(r) for r in committed]), scale=(real, w))
    assert 0 < p.epsilon < EPS
    trials = c.run_trials(pool, p, "2", TRIALS, WEIGHTED)
    row = check_row(p, trials, "2 inflated totals, answered from real tree", {"inclusion proof"})
    assert row["observed"] == 1.0


# -- 3. fake outputs from skipped execution ----------------------------------------------------------

def test_fake_outputs_are_caught_where_samples_land(pool, honest, workdir):
    bad = c.pick("fake outputs", range(SEGMENTS), lambda s: len(s) >= SEGMENTS // 20)
    entries = [c.fake_output(e) if i in bad else e for i, e in enumerate(honest)]
    p = c.make_provider("3 fake outputs", str(workdir / "fake.poe"), DEAL, entries, bad=bad)
    assert p.epsilon == 0  # it bills what the work would have cost: only the samples that land on it tell
    trials = c.run_trials(pool, p, "3", TRIALS, UNIFORM)
    check_row(p, trials, f"3 fake output+io digests on {len(bad)}/{SEGMENTS}", {"re-execution: output_digest, io_digest"})


# -- 4. records of another module or cost model ----------------------------------------------------

@pytest.mark.parametrize("other", ["module", "cost model"])
def test_records_of_another_module_or_cost_model_are_caught(pool, honest, workdir, other):
    # A real cheat runs part of the work on something else (a cheaper module; an engine set up
    # otherwise) and commits what that produced. The store refuses another cost model's records
    # on append, so those are written into its SQLite file before sealing: the provider owns its
    # store, and the seal commits whatever is there. (Swapping records only in the openings is
    # no cheat: the root already commits to the records, so it fails the inclusion proof.)
    bad = c.pick(f"other {other}", range(SEGMENTS), lambda s: len(s) >= SEGMENTS // 20)
    invs = {i: honest[i].invocation for i in sorted(bad)}
    if other == "module":
        runs = {i: c.execute([inv], service=c.STUB, first=i)[0] for i, inv in invs.items()}
    else:
        runs = {i: c.execute([inv], cost_model=c.OTHER_CM, first=i)[0] for i, inv in invs.items()}
        assert all(r.record.fuel == honest[i].record.fuel for i, r in runs.items())  # same work, other digest
    entries = [runs.get(i, e) for i, e in enumerate(honest)]
    p = c.make_provider(f"4 another {other}", str(workdir / f"other-{other.replace(' ', '-')}.poe"), DEAL, entries,
                        honest_weight=c.weight_of(DEAL, [e.record.encode() for e in honest]), bad=bad)
    trials = c.run_trials(pool, p, f"4 {other}", TRIALS, UNIFORM)
    check_row(p, trials, f"4 another {other} on {len(bad)}/{SEGMENTS}", {"another module or cost model"},
              note="stub module under-bills: eps_actual < 0" if other == "module" else "")


# -- 5. duplicated segments ------------------------------------------------------------------------

def duplicated(honest: list[Execution], dups: set[int], *, keep_index: bool) -> tuple[list[Execution], set[int]]:
    """Each segment in `dups` appended a second time right after itself. Every other record sits
    at its position (as if run there); the copy keeps its original's index or takes its own."""
    entries, copies = [], set()
    for i, e in enumerate(honest):
        entries.append(renumbered(e, len(entries)))
        if i in dups:
            copies.add(len(entries))
            entries.append(e if keep_index else renumbered(e, len(entries)))
    return entries, copies


@pytest.fixture(scope="module")
def dups() -> set[int]:
    return c.pick("duplicates", range(SEGMENTS), lambda s: len(s) >= SEGMENTS // 20)


def test_duplicate_that_keeps_its_original_index_is_caught(pool, honest, workdir, dups):
    entries, copies = duplicated(honest, dups, keep_index=True)
    p = c.make_provider("5b duplicate, index kept", str(workdir / "dup-kept.poe"), DEAL, entries,
                        honest_weight=c.weight_of(DEAL, [e.record.encode() for e in honest]), bad=copies)
    assert p.epsilon > 0
    trials = c.run_trials(pool, p, "5b", TRIALS, UNIFORM)
    check_row(p, trials, f"5b duplicates, index kept ({len(copies)}/{len(entries)})", {"record index != leaf"})


def test_renumbered_duplicate_is_indistinguishable_from_a_real_execution(honest, dups):
    # Why poe cannot catch 5a: the copy *is* what running the same invocation again at its
    # position produces, byte for byte, so it re-executes correctly and opens correctly.
    entries, copies = duplicated(honest, dups, keep_index=False)
    ex = Executor(c.SERVICE, c.CM)
    for pos in copies:
        assert ex.run(entries[pos].invocation, pos).record_bytes == entries[pos].record.encode()
        assert entries[pos].record.input_digest == entries[pos - 1].record.input_digest


# -- 6. reordered segments -------------------------------------------------------------------------

def test_swapped_segments_are_caught_by_the_index_check(pool, honest, workdir):
    a, b = sorted(c.pick("swap", range(SEGMENTS), lambda s: len(s) >= 2))
    entries = list(honest)
    entries[a], entries[b] = honest[b], honest[a]  # whole rows move; each record keeps its index
    p = c.make_provider("6 reordered", str(workdir / "swap.poe"), DEAL, entries, bad={a, b})
    assert p.epsilon == 0
    trials = c.run_trials(pool, p, "6", TRIALS, UNIFORM)
    check_row(p, trials, f"6 two segments swapped ({a} <-> {b})", {"record index != leaf"})


# -- 7. a tree whose sums do not add up ---------------------------------------------------------------

def test_node_sums_that_do_not_add_up_are_caught(pool, honest, workdir):
    path = str(workdir / "sums.poe")
    seals, committed = c.commit(path, honest)
    (claim,) = c.attest(path, seals, DEAL)
    real = c.weight_of(DEAL, committed)
    level, index = 2, 17  # the node over leaves 68..71 claims more fuel than its children hold
    extra = Sums(real // 48, 0, 0)
    levels = c.build_levels([leaf(r) for r in committed], (level, index, extra))
    root = c.levels_root(levels)
    assert root.hash != claim.statement.root.hash and root.sums == claim.statement.root.sums + extra
    lie = c.claim_of(dataclasses.replace(claim.statement, root=root), DEAL)
    under = c.leaves_under(levels, level, index)
    start = c.weight_of(DEAL, committed[: under.start])
    span = DEAL.weight(levels[level][index].sums)  # what the node commits to, extra included
    p = c.Provider("7 sums do not add up", path, lie, real, respond="levels", bad_leaves=frozenset(under),
                   bad_intervals=((start, start + span),), levels=levels)
    assert 0 < p.epsilon < EPS
    trials = c.run_trials(pool, p, "7", TRIALS, WEIGHTED)
    check_row(p, trials, f"7 node sums > children's (leaves {under.start}-{under.stop - 1})", {"inclusion proof"})


# -- 8. an opening that does not answer its target -----------------------------------------------------

def test_answering_a_target_with_a_cheaper_leaf_is_caught(pool, honest, inflated):
    hw = weights(DEAL, honest)
    cheap = min((i for i in range(SEGMENTS) if i not in inflated.bad_leaves), key=hw.__getitem__)  # its lightest honest leaf
    p = dataclasses.replace(inflated, name="8 cheaper leaf", respond="substitute", cheap_leaf=cheap)
    trials = c.run_trials(pool, p, "8", TRIALS, WEIGHTED)
    check_row(p, trials, "8 1a's lie, answered with a cheaper leaf", {"weighted target not covered"})


def test_withholding_the_openings_that_would_expose_the_lie_is_not_accepted(pool, inflated):
    p = dataclasses.replace(inflated, name="8b withhold", respond="withhold")
    trials = c.run_trials(pool, p, "8b", TRIALS, WEIGHTED)
    check_row(p, trials, "8b 1a's lie, incriminating openings withheld", {"REFUSED: missing openings"},
              note="REFUSED by the provider: paid nothing; a re-audit reuses this challenge, and after the deadline (audit --final) it is a REJECT")


# -- 9. replayed epochs --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["again", "relabelled"])
def test_replayed_epoch_is_caught_by_the_chain_check(pool, honest, workdir, how):
    path = str(workdir / f"replay-{how}.poe")
    seals, _ = c.commit(path, honest, epochs=(61,))
    c0, c1 = c.attest(path, seals, DEAL)
    if how == "again":  # epoch 0's claim, presented after epoch 1 was accepted (its own beacon)
        replay = c0
    else:  # epoch 0's head re-signed as epoch 2
        replay = c.claim_of(dataclasses.replace(c0.statement, epoch=2), DEAL)
    p = c.Provider(f"9 replay ({how})", path, replay, 0, previous=c1.statement)  # nothing new was done
    assert p.epsilon == 1
    trials = c.run_trials(pool, p, f"9 {how}", TRIALS, [(Fraction(1, 4), Fraction(1, 4), 1)])
    row = c.summarize(f"9 replay of epoch 0 ({how})", p, trials, caught_by="chain",
                      note="audit alone accepts the replay (the work is real); verify_chain against the accepted history refuses it")
    ROWS.append(row)
    assert row["trials"] >= TRIALS and row["observed"] == 1.0, row


# -- 10. stateful lineages: forged pre-states ------------------------------------------------------

STATEFUL_DEAL = c.deal("deal-cheat-stateful", service=c.COUNTER)


def chain_footprint(breaks: set[int]) -> set[int]:
    """A break before segment i shows when i (its predecessor does not end where it starts) or
    i - 1 (its successor does not start where it ends) is opened."""
    return {j for i in breaks for j in (i - 1, i)}


def test_honest_stateful_lineage_is_never_rejected_or_refused(pool, workdir):
    entries, snaps = c.stateful_history(SEGMENTS)
    p = c.make_stateful_provider("honest stateful: 160 steps of one lineage", str(workdir / "hs.poe"), STATEFUL_DEAL, entries, snaps)
    assert all(a.record.post_state == b.record.pre_state for a, b in zip(entries, entries[1:]))
    trials = c.run_trials(pool, p, p.name, 400, HONEST_CONFIGS)
    bad = [t for t in trials if t.verdict != "ACCEPT"]
    ROWS.append(honest_row(p, trials))
    assert not bad, f"{len(bad)} honest stateful trials not accepted, first: {bad[0]}"


def test_step_billed_twice_from_a_forged_pre_state_is_caught_by_the_state_chain(pool, workdir):
    honest, _ = c.stateful_history(SEGMENTS)
    hw = c.weight_of(STATEFUL_DEAL, [e.record.encode() for e in honest])
    repeat = c.pick("stateful repeat", range(2, SEGMENTS - 1), lambda s: len(s) >= 7 and all(j - 1 not in s for j in s))
    # the history with each repeated step inserted: segment positions shift, so build it whole
    entries, snaps = c.stateful_history(SEGMENTS + len(repeat), repeat=repeat)
    p = c.make_stateful_provider("10a step billed twice", str(workdir / "repeat.poe"), STATEFUL_DEAL, entries, snaps,
                                 honest_weight=hw, bad=chain_footprint(repeat))
    assert p.epsilon > Fraction(1, 25)
    trials = c.run_trials(pool, p, "10a", TRIALS, WEIGHTED)
    check_row(p, trials, f"10a step re-run from its old pre-state, billed twice ({len(repeat)}x)", {"state chain"})


def test_skipped_steps_are_caught_by_the_state_chain(pool, workdir):
    skip = c.pick("stateful skip", range(2, SEGMENTS), lambda s: len(s) >= SEGMENTS // 40 and all(j - 1 not in s for j in s))
    entries, snaps = c.stateful_history(SEGMENTS, skip=skip)
    p = c.make_stateful_provider("10b skipped steps", str(workdir / "skip.poe"), STATEFUL_DEAL, entries, snaps, bad=chain_footprint(skip))
    assert p.epsilon == 0  # what it bills was really run; the customer's computation was not
    trials = c.run_trials(pool, p, "10b", TRIALS, UNIFORM)
    check_row(p, trials, f"10b steps skipped: lineage jumps ahead ({len(skip)}x)", {"state chain"})


def test_forged_post_state_that_the_lineage_continues_from_is_caught_by_re_execution(pool, workdir):
    forge = c.pick("stateful forge", range(1, SEGMENTS - 1), lambda s: len(s) >= SEGMENTS // 20)
    entries, snaps = c.stateful_history(SEGMENTS, forge=forge)
    assert all(a.record.post_state == b.record.pre_state for a, b in zip(entries, entries[1:]))  # the chain holds
    p = c.make_stateful_provider("10c forged post-state", str(workdir / "forge.poe"), STATEFUL_DEAL, entries, snaps, bad=forge)
    trials = c.run_trials(pool, p, "10c", TRIALS, UNIFORM)
    check_row(p, trials, f"10c post-state forged, lineage goes on ({len(forge)}x)", {"re-execution: post_state"},
              note="each later segment re-executes correctly from the forged state: the lie is one leaf (spec §13.6)")


# -- 11. customers: work nobody asked for (spec §14.3) ----------------------------------------------
# Version-2 statements sign a bill tree; weighted targets land on its leaves, whose requests,
# order and neighbours the audit checks. Each lie is committed by a provider that builds and signs
# its own bill tree (the store's request ledger would refuse most of them), answered honestly
# from what it signed: the lie is in what is committed.

CUSTOMER_DEAL = c.customer_deal("deal-cheat-customers")
ANONYMOUS_DEAL = c.customer_deal("deal-cheat-anonymous", anonymous=True)


@pytest.fixture(scope="module")
def calls(honest):
    return [e.invocation for e in honest]


@pytest.fixture(scope="module")
def asked(calls) -> list[Execution]:
    """The honest history as five customers' signed requests, all billable in epoch 0."""
    return c.execute(c.requested(CUSTOMER_DEAL, calls, (0, 0)))


def test_honest_providers_with_many_customers_are_never_rejected_or_refused(pool, calls, asked, workdir):
    first = 61
    two_epochs = c.execute(c.requested(CUSTOMER_DEAL, calls[:first], (0, 0)) + c.requested(CUSTOMER_DEAL, calls[first:], (1, 1), first_sequence=100))
    mixed = [e if i % 3 else honest_e for i, (e, honest_e) in enumerate(zip(c.execute(c.requested(ANONYMOUS_DEAL, calls, (0, 0))), c.execute(calls)))]
    providers = [
        (c.make_billing_provider("honest customers: 160 requests of 5, epoch 0", str(workdir / "hc1.poe"), CUSTOMER_DEAL, asked, ledger=True), 1000),
        (c.make_billing_provider("honest customers: epoch 1 of 61+99", str(workdir / "hc2.poe"), CUSTOMER_DEAL, two_epochs, epochs=(first,),
                                 ledger=True), 600),
        (c.make_billing_provider("honest customers + anonymous (deal allows)", str(workdir / "hc3.poe"), ANONYMOUS_DEAL, mixed, ledger=True), 400),
    ]
    total, bad = 0, []
    for p, n in providers:
        assert p.claim.statement.bill_root is not None and p.epsilon == 0
        trials = c.run_trials(pool, p, p.name, n, HONEST_CONFIGS)
        total += len(trials)
        bad += [(p.name, t) for t in trials if t.verdict != "ACCEPT" or t.chain != "ok"]
        ROWS.append(honest_row(p, trials))
    assert total >= 2000
    assert not bad, f"{len(bad)} honest trials not accepted, first: {bad[0]}"


def _lie(name, path, entries, asked, bad, *, honest=None, deal=CUSTOMER_DEAL, **kw) -> c.Provider:
    honest_weight = c.weight_of(deal, [e.record.encode() for e in (honest if honest is not None else asked)])
    return c.make_billing_provider(name, path, deal, entries, honest_weight=honest_weight, bad=bad, **kw)


def _some(label, asked, enough=lambda s: len(s) >= SEGMENTS // 20):
    return c.pick(label, range(len(asked)), enough)


def test_unsigned_segments_under_a_signed_only_deal_are_caught(pool, asked, honest, workdir):
    bad = _some("unsigned", asked)
    entries = [honest[i] if i in bad else e for i, e in enumerate(asked)]  # run with no request at all
    p = _lie("11a unsigned", str(workdir / "unsigned.poe"), entries, asked, bad, honest=[e for i, e in enumerate(asked) if i not in bad])
    assert p.epsilon > 0
    trials = c.run_trials(pool, p, "11a", TRIALS, WEIGHTED)
    check_row(p, trials, f"11a unsigned segments ({len(bad)}/{SEGMENTS})", {"unsigned segment"})


def test_segment_signed_by_another_customer_than_it_names_is_caught(pool, calls, asked, workdir):
    bad = _some("forged customer", asked)
    n = len(c.CUSTOMERS)
    forged = {i: c.execute([c.answer(calls[i], c.signed_request(CUSTOMER_DEAL, calls[i], c.CUSTOMERS[i % n], 1000 + i, (0, 0),
                                                                            customer=c.address(c.CUSTOMERS[(i + 1) % n])))], first=i)[0]
              for i in bad}
    entries = [forged.get(i, e) for i, e in enumerate(asked)]
    p = _lie("11b other signer", str(workdir / "signer.poe"), entries, asked, bad, honest=[e for i, e in enumerate(asked) if i not in bad])
    trials = c.run_trials(pool, p, "11b", TRIALS, WEIGHTED)
    check_row(p, trials, f"11b request signed by another customer ({len(bad)})", {"request signature"})


def test_forged_signature_is_caught_when_the_audit_checks_signatures_on_another_core(calls, asked, workdir, monkeypatch):
    # The audit checks the requests' signatures on a worker process while it re-executes (from
    # 64 samples on); every sample whose signature fails must still fail, with its fraud proof.
    from poe.audit.verifier import _Samples, audit
    from poe.protocol.challenge import Challenge
    from poe.store.tracestore import TraceStore

    monkeypatch.setattr(_Samples, "SIGNATURES_ASIDE_AT", 1)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    bad = set(range(0, len(asked), 3))
    n = len(c.CUSTOMERS)
    forged = {i: c.execute([c.answer(calls[i], c.signed_request(CUSTOMER_DEAL, calls[i], c.CUSTOMERS[i % n], 1000 + i, (0, 0),
                                                                            customer=c.address(c.CUSTOMERS[(i + 1) % n])))], first=i)[0]
              for i in bad}
    entries = [forged.get(i, e) for i, e in enumerate(asked)]
    p = _lie("other signer, signatures aside", str(workdir / "signer-aside.poe"), entries, asked, bad,
             honest=[e for i, e in enumerate(asked) if i not in bad])
    honest = c.make_billing_provider("honest, signatures aside", str(workdir / "honest-aside.poe"), CUSTOMER_DEAL, asked, ledger=True)
    for q, lying in ((p, True), (honest, False)):
        ch = Challenge.draw(q.claim, c.beacon("signatures aside", 0), EPS, DELTA, 0)
        with TraceStore.open(q.path) as store:
            v = audit(q.claim, ch, c.respond(q, store, ch), c.SERVICE, deal=CUSTOMER_DEAL)
        if not lying:
            assert v.verdict == "ACCEPT", v.problems
            continue
        landed = [t for t in v.problems if "was not signed by its customer" in t]
        assert v.verdict == "REJECT" and landed and set(c.classify(v)) == {"request signature"}
        assert v.fraud_proof["kind"] == "bill-leaf"


def test_segment_requested_for_another_deal_is_caught(pool, calls, asked, workdir):
    bad = _some("other deal", asked)
    other = c.customer_deal("deal-cheat-elsewhere").digest
    n = len(c.CUSTOMERS)
    moved = {i: c.execute([c.answer(calls[i], c.signed_request(CUSTOMER_DEAL, calls[i], c.CUSTOMERS[i % n], 2000 + i, (0, 0), deal_digest=other))],
                          first=i)[0] for i in bad}
    entries = [moved.get(i, e) for i, e in enumerate(asked)]
    p = _lie("11c other deal", str(workdir / "otherdeal.poe"), entries, asked, bad, honest=[e for i, e in enumerate(asked) if i not in bad])
    trials = c.run_trials(pool, p, "11c", TRIALS, WEIGHTED)
    check_row(p, trials, f"11c request for another deal ({len(bad)})", {"request for another deal"})


def test_duplicated_request_renumbered_to_its_position_is_caught(pool, asked, workdir, dups):
    # 5a's lie with signed requests: the copy re-executes to its record byte for byte, but it
    # answers the same request as the original, so their bill leaves are equal neighbours.
    entries, copies = duplicated(asked, dups, keep_index=False)
    originals = {pos - 1 for pos in copies}
    p = _lie("11d duplicated request", str(workdir / "dup-request.poe"), entries, asked, copies | originals)
    assert p.epsilon > 0
    trials = c.run_trials(pool, p, "11d", TRIALS, WEIGHTED)
    check_row(p, trials, f"11d request run twice, renumbered ({len(copies)}/{len(entries)})", {"bill order (billed twice)"},
              note="5a under a signed-only deal; footprint = copies and originals (equal neighbours)")


def test_request_replayed_from_an_earlier_epoch_is_caught(pool, calls, workdir):
    first = 61
    epoch0 = c.execute(c.requested(CUSTOMER_DEAL, calls[:first], (0, 0)))
    epoch1 = c.execute(c.requested(CUSTOMER_DEAL, calls[first:], (1, 1), first_sequence=100), first=first)
    replayed = sorted(c.pick("replay", range(first), lambda s: len(s) >= 6))
    entries = epoch0 + epoch1 + [renumbered(epoch0[i], SEGMENTS + j) for j, i in enumerate(replayed)]
    bad = set(range(SEGMENTS, SEGMENTS + len(replayed)))
    p = _lie("11e replay", str(workdir / "replay-request.poe"), entries, epoch1, bad, honest=epoch1, epochs=(first,))
    assert p.claim.statement.epoch == 1 and p.epsilon > 0
    trials = c.run_trials(pool, p, "11e", TRIALS, WEIGHTED)
    check_row(p, trials, f"11e epoch-0 requests billed again in epoch 1 ({len(replayed)})", {"request outside its window"})


def test_fuel_beyond_the_signed_budget_is_caught(pool, calls, asked, workdir):
    bad = _some("beyond budget", asked)
    n = len(c.CUSTOMERS)
    ex = Executor(c.SERVICE, c.CM)
    lies, kept = {}, {}
    for i in bad:
        budget = asked[i].record.fuel // 2
        inv = c.answer(calls[i], c.signed_request(CUSTOMER_DEAL, calls[i], c.CUSTOMERS[i % n], 3000 + i, (0, 0), budget=budget))
        full = ex.run(calls[i], i)  # the provider ignores the budget and runs the call to the end
        lies[i] = Execution(dataclasses.replace(full.record, input_digest=inv.digest), inv, full.output)
        kept[i] = ex.run(inv, i)  # what the customer agreed to pay for: the run stopped at its budget
        assert kept[i].record.fuel <= budget < lies[i].record.fuel
    entries = [lies.get(i, e) for i, e in enumerate(asked)]
    p = _lie("11f beyond budget", str(workdir / "budget.poe"), entries, asked, bad, honest=[kept.get(i, e) for i, e in enumerate(asked)])
    assert p.epsilon > 0
    trials = c.run_trials(pool, p, "11f", TRIALS, WEIGHTED)
    check_row(p, trials, f"11f fuel beyond the signed budget ({len(bad)})", {"fuel beyond budget"})


def test_another_customers_request_billed_to_this_one_is_caught(pool, asked, workdir):
    bad = _some("relabelled", asked)
    n = len(c.CUSTOMERS)
    relabel = {i: (c.address(c.CUSTOMERS[(i + 1) % n]), 5000 + i) for i in bad}
    p = _lie("11g billed to another", str(workdir / "relabel.poe"), asked, asked, bad, relabel=relabel)
    assert p.epsilon == 0  # the claim's total is right; the customers named in bad leaves pay for others' work
    trials = c.run_trials(pool, p, "11g", TRIALS, WEIGHTED)
    check_row(p, trials, f"11g requests billed to another customer ({len(bad)})", {"request of another leaf"},
              note="eps_actual 0 for the claim; each customer so named overbilled")


def test_renumbered_duplicate_under_a_deal_that_bills_anonymous_work_is_outside_the_guarantee(honest, workdir, dups):
    # What the guarantee does not cover, and says it does not: a deal that bills anonymous
    # segments cannot tell an invented copy from a second real call.
    from poe.audit.verifier import audit
    from poe.protocol.challenge import Challenge
    from poe.store.tracestore import TraceStore

    entries, copies = duplicated(honest, dups, keep_index=False)
    p = _lie("anonymous duplicate", str(workdir / "dup-anonymous.poe"), entries, honest, copies, honest=honest, deal=ANONYMOUS_DEAL)
    assert p.epsilon > 0
    with TraceStore.open(p.path) as store:
        for i in range(10):
            ch = Challenge.draw(p.claim, c.beacon("anonymous duplicate", i), EPS, DELTA, 0)
            v = audit(p.claim, ch, c.respond(p, store, ch), c.SERVICE, deal=ANONYMOUS_DEAL)
            assert v.verdict == "ACCEPT" and "anonymous segments" in v.statement


def test_receipt_issued_for_a_request_left_out_is_caught_by_its_customer(calls, workdir):
    # The provider signs a receipt for each request it runs, then bills another request in one
    # slot instead (the receipted one is never billed). No sample is needed: the customer's bill
    # proves everything billed to it, so the broken receipt shows every time, and with the claim
    # and the bill it is a fraud proof.
    import random

    from poe.protocol.bill import check_bill
    from poe.protocol.receipt import check_receipt_fraud, check_receipts, receipt_fraud_proof, sign_receipt
    from poe.provider.bill import make_bill
    from poe.store.tracestore import TraceStore

    n, customers = 40, len(c.CUSTOMERS)
    execs = c.execute(c.requested(CUSTOMER_DEAL, calls[:n], (0, 0)))
    spare = [c.execute(c.requested(CUSTOMER_DEAL, [calls[n + j]], (0, 0), first_sequence=900 + j), first=j)[0] for j in range(n)]

    def receipt(e):
        signed = c.request_of(e.invocation)
        return sign_receipt(c.SCHEME, c.SK, deal=CUSTOMER_DEAL.digest, request=signed.digest, customer=signed.request.customer,
                            sequence=signed.request.sequence, epoch=0, index=e.record.index, record_leaf=leaf(e.record.encode()).hash)

    receipts = [receipt(e) for e in execs]
    started, caught, false_alarms, proofs = time.perf_counter(), 0, 0, 0
    for t in range(TRIALS):
        j = random.Random(f"receipt left out {t}").randrange(n)
        entries = [spare[j] if i == j else e for i, e in enumerate(execs)]
        p = c.make_billing_provider("11h", str(workdir / f"receipts-{t}.poe"), CUSTOMER_DEAL, entries, ledger=True)
        victim, bystander = c.address(c.CUSTOMERS[j % customers]), c.address(c.CUSTOMERS[(j + 1) % customers])
        with TraceStore.open(p.path) as store:
            bills = {who: make_bill(store, 0, who) for who in (victim, bystander)}
        for who, doc in bills.items():
            bill = check_bill(doc, p.claim.statement, CUSTOMER_DEAL.digest, CUSTOMER_DEAL.window)
            held = [r for r in receipts if r.customer == who]
            result = check_receipts(held, p.claim, bill)
            if who == victim:
                caught += bool(result["broken"])
                if result["broken"]:
                    proofs += check_receipt_fraud(receipt_fraud_proof(held[result["broken"][0]], p.claim, doc))["proven"]
            else:
                false_alarms += bool(result["broken"])
        os.remove(p.path)
    ROWS.append({
        "strategy": f"11h receipt issued, request left out (1/{n})", "provider": "11h", "trials": TRIALS, "eps_actual": 0.0, "k": 0, "uniform": 0,
        "f_affected": 0.0, "q_weighted": 0.0, "p_theory": 1.0, "p_floor": 1.0, "p_expected": 1.0, "observed": caught / TRIALS, "caught": caught,
        "verdicts": {"broken receipt": caught}, "checks": {"customer's receipts vs bill": caught, "fraud proof re-checked": proofs},
        "caught_by": "customer", "note": f"no sampling: the bill is complete; {false_alarms} false alarms among other customers; "
                                         f"{time.perf_counter() - started:.1f} s",
    })
    assert caught == proofs == TRIALS and false_alarms == 0


# -- 12. stateful jobs (spec §14.7): a lineage bills no more steps than its customer signed --------

JOB_DEAL = c.customer_deal("deal-cheat-jobs", service=c.COUNTER)
JOB_STEPS = 120


def test_honest_job_is_never_rejected_or_refused(pool, workdir):
    entries, snaps, _ = c.job_history(JOB_DEAL, JOB_STEPS)
    p = c.make_job_provider("honest job: 120 steps of one lineage", str(workdir / "job-honest.poe"), JOB_DEAL, entries, snaps, ledger=True)
    trials = c.run_trials(pool, p, p.name, 400, HONEST_CONFIGS)
    bad = [t for t in trials if t.verdict != "ACCEPT"]
    ROWS.append(honest_row(p, trials))
    assert not bad, f"{len(bad)} honest job trials not accepted, first: {bad[0]}"


@pytest.mark.parametrize("beyond", [False, True], ids=["steps-again", "past-the-last"])
def test_lineage_restarted_to_bill_more_steps_than_the_job_signed_is_caught(pool, workdir, beyond):
    # §13.6: a provider that restarts a lineage from genesis bills work no state chain can refuse.
    # Under a job, each extra step needs a key: one already billed (equal neighbours) or one past
    # the job's last step (its request check fails).
    restart = 8
    entries, snaps, _ = c.job_history(JOB_DEAL, JOB_STEPS, restart=restart, beyond=beyond)
    copies = set(range(JOB_STEPS, JOB_STEPS + restart))
    bad = copies if beyond else copies | set(range(restart))
    honest_w = c.weight_of(JOB_DEAL, [e.record.encode() for e in entries[:JOB_STEPS]])
    p = c.make_job_provider(f"12 job restarted ({'past the last step' if beyond else 'steps again'})", str(workdir / f"job-{beyond}.poe"),
                            JOB_DEAL, entries, snaps, honest_weight=honest_w, bad=bad)
    assert p.epsilon > 0
    trials = c.run_trials(pool, p, f"12 {beyond}", TRIALS, WEIGHTED)
    label = "12b job: restarted lineage billed past the job's last step" if beyond else "12a job: restarted lineage bills its steps again"
    check_row(p, trials, f"{label} ({restart})", {"step beyond the job"} if beyond else {"bill order (billed twice)"})


def test_bill_leaf_fraud_proof_is_rechecked_from_the_command_line_without_the_module(asked, workdir, dups, tmp_path):
    from click.testing import CliRunner

    from poe.audit.verifier import audit
    from poe.cli import main
    from poe.protocol.challenge import Challenge
    from poe.store.tracestore import TraceStore

    entries, copies = duplicated(asked, dups, keep_index=False)
    p = _lie("duplicate for the proof", str(workdir / "dup-proof.poe"), entries, asked, copies | {pos - 1 for pos in copies})
    with TraceStore.open(p.path) as store:
        for i in range(50):
            ch = Challenge.draw(p.claim, c.beacon("bill-leaf proof", i), EPS, DELTA, 0)
            v = audit(p.claim, ch, c.respond(p, store, ch), c.SERVICE, deal=CUSTOMER_DEAL)
            if v.verdict == "REJECT":
                break
    assert v.verdict == "REJECT" and v.fraud_proof["kind"] == "bill-leaf"
    (tmp_path / "proof.json").write_text(json.dumps(v.fraud_proof))
    (tmp_path / "deal.json").write_text(json.dumps(CUSTOMER_DEAL.to_json()))
    trusted = ["--deal", str(tmp_path / "deal.json")]
    r = CliRunner().invoke(main, ["check-fraud-proof", str(tmp_path / "proof.json"), "--json", *trusted])
    assert r.exit_code == 0 and json.loads(r.stdout)["kind"] == "bill-leaf", r.output
    # The claim inside names a deal by id only: one carrying other terms proves nothing against the trusted deal.
    other = json.loads(json.dumps(v.fraud_proof))
    other["claim"]["deal"]["subscription"] += 1
    (tmp_path / "other-terms.json").write_text(json.dumps(other))
    assert CliRunner().invoke(main, ["check-fraud-proof", str(tmp_path / "other-terms.json"), *trusted]).exit_code in (1, 3)
    assert CliRunner().invoke(main, ["check-fraud-proof", str(tmp_path / "proof.json")]).exit_code == 3  # no deal given
    # The proof rests on signed data: a bill proof changed anywhere no longer reaches the signed root.
    doc = json.loads(json.dumps(v.fraud_proof))
    raw = bytearray.fromhex(doc["opening"]["bill"]["proof"])
    raw[-60] ^= 1
    doc["opening"]["bill"]["proof"] = raw.hex()
    (tmp_path / "forged.json").write_text(json.dumps(doc))
    assert CliRunner().invoke(main, ["check-fraud-proof", str(tmp_path / "forged.json"), *trusted]).exit_code == 1


def test_checker_whose_signature_library_fails_cannot_prove_fraud_against_an_honest_provider(asked, workdir, tmp_path, monkeypatch):
    # The review's finding: a secp256k1 library that fails to load on the checker's machine was
    # turned into a bill-leaf fault, so an honest provider was "proven" to cheat and rejected.
    from click.testing import CliRunner

    from poe.audit.verifier import audit
    from poe.cli import main
    from poe.crypto import schemes
    from poe.errors import BackendError
    from poe.protocol.challenge import Challenge
    from poe.store.tracestore import TraceStore

    p = c.make_billing_provider("honest, for a broken checker", str(workdir / "broken-checker.poe"), CUSTOMER_DEAL, asked, ledger=True)
    ch = Challenge.draw(p.claim, c.beacon("broken checker", 0), EPS, DELTA, 0)
    with TraceStore.open(p.path) as store:
        openings = c.respond(p, store, ch)
    assert audit(p.claim, ch, openings, c.SERVICE, deal=CUSTOMER_DEAL).verdict == "ACCEPT"
    opening = next(o for o in openings if o.target[0] == "w")
    proof = {"format": "poe fraud proof v1", "kind": "bill-leaf", "claim": p.claim.to_json(), "opening": opening.to_json()}
    (tmp_path / "proof.json").write_text(json.dumps(proof))
    (tmp_path / "deal.json").write_text(json.dumps(CUSTOMER_DEAL.to_json()))
    check = ["check-fraud-proof", str(tmp_path / "proof.json"), "--deal", str(tmp_path / "deal.json")]
    assert CliRunner().invoke(main, check).exit_code == 5  # not proven

    real = schemes.get_scheme
    verified = set()

    def broken(name, backend=None):
        if name == "secp256k1" and "envelope" in verified:  # the statement's own signature is checked first
            raise BackendError("the coincurve backend of secp256k1 cannot be loaded: (simulated)", observed="coincurve")
        verified.add("envelope")
        return real(name, backend)

    monkeypatch.setattr(schemes, "get_scheme", broken)
    with pytest.raises(BackendError):
        audit(p.claim, ch, openings, c.SERVICE, deal=CUSTOMER_DEAL)
    verified.clear()
    r = CliRunner().invoke(main, check)
    assert r.exit_code == 3 and "crypto.backend" in r.output, r.output


def test_leaf_of_another_customer_hidden_inside_an_invoice_line_is_refused_by_the_customers_bill(asked, workdir):
    # The review's finding: an invoice checks order above its lines' covering nodes, not inside
    # them, so one of D's leaves placed among C's moves its weight from D's line to C's, totals
    # intact. The invoice alone cannot show it (spec §14.6 says so); C's bill cannot be made.
    from itertools import groupby

    from poe.errors import PoEError
    from poe.protocol.bill import bill_document, check_bill
    from poe.protocol.invoice import check_invoice, invoice_document
    from poe.provider.bill import make_bill
    from poe.merkle.build import ordered_tree
    from poe.merkle.verify import encode_bill_range
    from poe.store.tracestore import TraceStore

    honest = c.bill_entries([e.record.encode() for e in asked], [e.invocation for e in asked], 0)
    C, D = sorted({e.customer for e in honest})[:2]
    cs, ds = [e for e in honest if e.customer == C], [e for e in honest if e.customer == D]
    cs.sort(key=lambda e: e.sequence)
    ds.sort(key=lambda e: e.sequence)
    rest = sorted((e for e in honest if e.customer not in (C, D)), key=lambda e: e.key)
    evil = cs[:2] + [ds[0]] + cs[2:] + ds[1:] + rest  # C0 C1 X C2 ...: X under a node whose interval is C's
    p = _lie("invoice line takes a leaf", str(workdir / "invoice-misattributed.poe"), asked, asked, set(), layout=lambda bill: evil)
    tree = ordered_tree([e.leaf for e in evil])
    at = len(cs) + 1  # C's line: its leaves and X
    lines = [(C, 0, at, tree.cover(0, at))]
    for customer, group in groupby(evil[at:], key=lambda e: e.customer):
        n = len(list(group))
        lines.append((customer, at, at + n, tree.cover(at, at + n)))
        at += n
    d = CUSTOMER_DEAL
    checked = check_invoice(invoice_document(p.claim.statement.epoch, d, tree.size, lines, d.subscription), p.claim)
    assert checked.total == p.claim.amount
    assert checked.lines[0]["amount"] == sum(d.weight(e.record.sums) for e in cs) + d.weight(ds[0].record.sums)  # C pays for X
    # C's bill, as the store would make it from the signed tree, and the best one by hand: both refused.
    with TraceStore.open(p.path) as store:
        signed = c._SignedBill(store, evil)
        docs = [make_bill(signed, 0, C)]
        proven = store.inclusion_proofs([e.index for e in cs[:2]], 0)
        mine = [(e, rec, store.segment_bytes(e.index)[1], prf.encode()) for e, (rec, prf) in zip(cs[:2], proven)]
        docs.append(bill_document(0, C, 0, 2, tree.size, mine, None, ds[0], encode_bill_range(0, 3, tree.range_path(0, 3))))
    for doc in docs:
        with pytest.raises(PoEError):
            check_bill(doc, p.claim.statement, d.digest, d.window)


def test_every_request_billed_twice_in_an_unsorted_bill_tree_is_caught(pool, asked, workdir):
    # The review's attack: every request run again at the end of the log, and the bill tree
    # signed as all first copies, then all copies, each half sorted. The neighbour checks alone
    # missed it (one descent in the middle); the ordered tree's nodes carry their keys, and every
    # proof climbing through the root sees the halves overlap.
    n = len(asked)
    entries = asked + [renumbered(e, n + i) for i, e in enumerate(asked)]

    def halves(bill):
        return sorted((e for e in bill if e.index < n), key=lambda e: e.key) + sorted((e for e in bill if e.index >= n), key=lambda e: e.key)

    p = _lie("11i unsorted", str(workdir / "unsorted.poe"), entries, asked, set(range(n, 2 * n)), layout=halves)
    assert p.epsilon == Fraction(1, 2)
    trials = c.run_trials(pool, p, "11i", TRIALS, WEIGHTED)
    check_row(p, trials, f"11i every request billed twice, bill tree unsorted ({n}/{2 * n})", {"bill order (billed twice)"},
              note="review's attack; footprint = every leaf under the root's out-of-order join")
