"""Claims, challenges and audits: an honest provider is paid, every lie is caught or refused."""

from __future__ import annotations

import dataclasses
import json
import os
from fractions import Fraction

import pytest
from click.testing import CliRunner

from poe import CostModel, Execution, Executor, Invocation, Limits, Service, TraceStore
from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest
from poe.audit.fraud import check_fraud_proof
from poe.audit.settle import settle
from poe.audit.verifier import audit
from poe.provider.respond import open_targets
from poe.protocol.challenge import Challenge, samples_needed
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.crypto.schemes import get_scheme
from poe.cli import main
from poe.errors import EncodingError, InputError, VerificationError

from .conftest import data_bytes, module_bytes, with_root

CM = CostModel.current(Limits(fuel=50_000_000, memory_pages=64))
SERVICE = Service(module_bytes("csv_agg.wasm"), name="csv_agg.wasm")
SCHEME = get_scheme("secp256k1")
SK = SCHEME.generate_key(b"poe audit tests: provider key seed 01")
PK = SCHEME.public_key(SK)
BEACON = bytes(range(32))


@pytest.fixture(scope="module")
def executions() -> list[Execution]:
    """One honest history of 120 segments, executed once for every test here."""
    ex = Executor(SERVICE, CM)
    rows = data_bytes("sales_small.csv").splitlines(keepends=True)
    return [ex.run(Invocation.build(argv=["csv_agg"], stdin=b"".join(rows[: 2 + i % 20]), seed=i.to_bytes(32, "little")), i) for i in range(120)]


def _deal(**kw) -> Deal:
    d = {"format": "poe deal v1", "deal_id": "deal-audit", "provider": {"scheme": SCHEME.name, "public_key": PK.hex()},
         "module_digest": SERVICE.digest.hex(), "cost_model_digest": CM.digest.hex(),
         "prices": {"fuel": 2, "mem": 1, "io": 5}, "subscription": 700, "penalty": {"kind": "slash", "amount": 9000}}
    d.update(kw)
    return Deal.from_json(d)


def provide(path: str, executions: list[Execution], lie=None) -> tuple[Claim, TraceStore]:
    """A provider: appends the executions (after `lie` rewrites them), seals, attests, claims."""
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SERVICE)
        for e in executions:
            store.append(lie(e) if lie else e)
    store = TraceStore.open(path, seal=True)
    sealed = store.seal()
    st = Statement(SCHEME.name, CM.digest, SERVICE.digest, PK, "deal-audit", sealed.epoch, sealed.first_index, sealed.end_index,
                   sealed.root, EMPTY_ROOT, consistency_digest(None), 1_764_000_000)
    env = Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), CM.to_json(), None)
    deal = _deal()
    return Claim(deal, env, deal.amount(st.totals)), store


def run_audit(claim: Claim, store: TraceStore, *, epsilon="1/20", uniform=8, tamper=None):
    ch = Challenge.draw(claim, BEACON, Fraction(epsilon), Fraction("1/1000"), uniform)
    openings = open_targets(store, claim, ch)
    if tamper:
        openings = tamper(openings)
    return audit(claim, ch, openings, SERVICE, deal=claim.deal), ch


def test_honest_provider_is_accepted_with_the_stated_guarantee(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    verdict, ch = run_audit(claim, store)
    assert verdict.verdict == "ACCEPT", verdict.problems
    assert len(ch.weighted) == samples_needed(Fraction(1, 20), Fraction(1, 1000)) == 135
    assert "below 5.0000%" in verdict.statement and "99.9000%" in verdict.statement


def test_samples_needed_is_the_least_k_with_the_bound():
    for eps, delta in ((Fraction(1, 100), Fraction(1, 1000)), (Fraction(1, 2), Fraction(1, 2)), (Fraction(1, 3), Fraction(1, 10**6))):
        k = samples_needed(eps, delta)
        assert (1 - eps) ** k <= delta < (1 - eps) ** (k - 1)


def test_inflated_fuel_on_some_segments_is_caught_with_a_fraud_proof(tmp_path, executions):
    def lie(e):
        if e.record.index % 4 == 1:
            return Execution(dataclasses.replace(e.record, fuel=e.record.fuel * 3), e.invocation, e.output)
        return e

    claim, store = provide(str(tmp_path / "c.poe"), executions, lie)
    verdict, _ = run_audit(claim, store)
    assert verdict.verdict == "REJECT" and verdict.fraud_proof
    proven = check_fraud_proof(json.loads(json.dumps(verdict.fraud_proof)), SERVICE)
    assert set(proven["differences"]) == {"fuel", "mem"}


def test_fake_outputs_from_skipped_execution_are_caught_by_uniform_samples(tmp_path, executions):
    def lie(e):
        return Execution(dataclasses.replace(e.record, output_digest=b"\x00" * 32), e.invocation, e.output)

    claim, store = provide(str(tmp_path / "c.poe"), executions, lie)
    verdict, _ = run_audit(claim, store, epsilon="1/2", uniform=4)
    assert verdict.verdict == "REJECT"
    assert any("output_digest" in p for p in verdict.problems)


def test_inflated_totals_with_honest_leaves_are_rejected(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    st = claim.statement
    from poe.merkle.hasher import Root, Sums

    inflated = Root(st.root.size, st.root.hash, Sums(st.root.sums.fuel * 2, st.root.sums.mem, st.root.sums.io))
    forged = with_root(st, inflated)
    env = Envelope(forged.encode(), SCHEME.sign(SK, forged.digest), SCHEME.identity(PK), CM.to_json(), None)
    lying = Claim(claim.deal, env, claim.deal.amount(forged.totals))
    ch = Challenge.draw(lying, BEACON, Fraction(1, 20), Fraction(1, 1000), 4)
    openings = open_targets_lenient(store, claim, ch, lying)
    verdict = audit(lying, ch, openings, SERVICE, deal=lying.deal)
    assert verdict.verdict == "REJECT"


def open_targets_lenient(store, honest_claim, ch, lying_claim):
    """The liar answers the challenge as well as it can: from its real tree."""
    real = Challenge(ch.claim_id, honest_claim.statement.root, ch.beacon, ch.epsilon, ch.delta,
                     tuple(r % max(1, honest_claim.deal.weight(honest_claim.statement.totals)) for r in ch.weighted), ch.uniform)
    return open_targets(store, honest_claim, real)


def test_amount_that_is_not_price_times_totals_is_rejected(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    greedy = Claim(claim.deal, claim.envelope, claim.amount + 1)
    ch = Challenge.draw(greedy, BEACON, Fraction(1, 20), Fraction(1, 1000), 0)
    verdict = audit(greedy, ch, [], SERVICE, deal=greedy.deal)
    assert verdict.verdict == "REJECT" and "price x totals" in verdict.reason


def test_records_from_another_cost_model_are_rejected(tmp_path, executions):
    other = CostModel.current(Limits(fuel=50_000_001, memory_pages=64))
    claim, store = provide(str(tmp_path / "c.poe"), executions)
    # the store refuses another cost model's segments, so the liar swaps records in its openings
    verdict, _ = run_audit(claim, store, tamper=lambda ops: [dataclasses.replace(o, record=lie_record(o.record, other.digest)) for o in ops])
    assert verdict.verdict == "REJECT"


def lie_record(raw: bytes, cm_digest: bytes) -> bytes:
    from poe import Record

    return dataclasses.replace(Record.decode(raw), cost_model_digest=cm_digest).encode()


def test_opening_that_does_not_answer_its_target_is_rejected(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)

    def swap(ops):
        w = [o for o in ops if o.target.startswith("w")]
        far = next(o for o in w if o.index != w[0].index)
        return [dataclasses.replace(w[0], index=far.index, record=far.record, proof=far.proof, invocation=far.invocation, payloads=far.payloads)] + ops[1:]

    verdict, _ = run_audit(claim, store, tamper=swap)
    assert verdict.verdict == "REJECT" and any("covers" in p for p in verdict.problems)


def test_reordered_segments_are_rejected(tmp_path, executions):
    swapped = list(executions)
    swapped[10], swapped[11] = swapped[11], swapped[10]
    claim, store = provide_raw(str(tmp_path / "c.poe"), swapped)
    verdict, _ = run_audit(claim, store, epsilon="1/2", uniform=120)
    assert verdict.verdict == "REJECT" and any("index" in p for p in verdict.problems)


def provide_raw(path, executions):
    """Like provide(), but commits the records in the order given, whatever their index fields."""
    import sqlite3

    _, store = provide(path, [dataclasses.replace(e, record=dataclasses.replace(e.record, index=i)) for i, e in enumerate(executions)])
    store.close()
    db = sqlite3.connect(path)
    for i, e in enumerate(executions):
        db.execute("UPDATE segments SET record = ? WHERE idx = ?", (e.record.encode(), i))
    db.execute("UPDATE epochs SET status = 'closed', root = NULL, frontier = NULL WHERE epoch = 0")
    db.commit()
    db.close()
    store = TraceStore.open(path, seal=True)
    sealed = store.seal(0)
    st = Statement(SCHEME.name, CM.digest, SERVICE.digest, PK, "deal-audit", 0, 0, sealed.end_index, sealed.root, EMPTY_ROOT, consistency_digest(None), 1)
    env = Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), CM.to_json(), None)
    deal = _deal()
    return Claim(deal, env, deal.amount(st.totals)), store


def test_missing_openings_or_another_module_are_a_refusal_not_a_reject(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    ch = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 2)
    openings = open_targets(store, claim, ch)
    assert audit(claim, ch, openings[:-1], SERVICE, deal=claim.deal).verdict == "REFUSED"
    assert audit(claim, ch, openings, Service(module_bytes("funcs.wasm")), deal=claim.deal).verdict == "REFUSED"


def test_unreproducible_cost_model_is_a_refusal(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    foreign = dict(CM.to_json(), wasmtime="45.0.0")
    fcm = CostModel.from_json(foreign)
    st = dataclasses.replace(claim.statement, cost_model_digest=fcm.digest)
    env = Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), foreign, None)
    deal = dataclasses.replace(claim.deal, cost_model_digest=fcm.digest)
    c = Claim(deal, env, deal.amount(st.totals))
    ch = Challenge.draw(c, BEACON, Fraction(1, 20), Fraction(1, 1000), 0)
    assert audit(c, ch, [], SERVICE, deal=c.deal).verdict == "REFUSED"


def test_tampered_challenge_or_one_for_another_claim_is_refused_as_input(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    ch = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 2)
    easier = dataclasses.replace(ch, weighted=ch.weighted[:-1])
    with pytest.raises(EncodingError):
        audit(claim, easier, open_targets(store, claim, ch), SERVICE, deal=claim.deal)
    with pytest.raises(EncodingError):
        audit(claim, dataclasses.replace(ch, claim_id=b"\x00" * 32), [], SERVICE, deal=claim.deal)


def test_challenge_seed_depends_on_the_beacon_not_only_the_root(tmp_path, executions):
    claim, _ = provide(str(tmp_path / "p.poe"), executions)
    a = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 3)
    b = Challenge.draw(claim, bytes(32), Fraction(1, 20), Fraction(1, 1000), 3)
    assert a.seed != b.seed and a.weighted != b.weighted
    with pytest.raises(InputError):
        Challenge.draw(claim, b"short", Fraction(1, 20), Fraction(1, 1000), 3)


@pytest.mark.parametrize("prices", [{"fuel": -1}, {"fuel": 1.5}, {"fuel": True}, {"gas": 1}, {}])
def test_deals_with_negative_non_integer_or_no_prices_are_refused(prices):
    with pytest.raises(InputError):
        _deal(prices=prices, subscription=0)


def test_fraud_proof_of_an_honest_record_is_not_proven(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    ch = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 1)
    o = open_targets(store, claim, ch)[0]
    fake = {"format": "poe fraud proof v1", "kind": "re-execution", "claim": claim.to_json(), "opening": o.to_json(), "observed_record": ""}
    with pytest.raises(VerificationError, match="no fraud"):
        check_fraud_proof(fake, SERVICE)


def test_cli_loop_accepts_the_honest_and_rejects_the_cheat(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    store.close()
    (tmp_path / "claim.json").write_text(json.dumps(claim.to_json()))
    (tmp_path / "deal.json").write_text(json.dumps(claim.deal.to_json()))
    (tmp_path / "m.wasm").write_bytes(SERVICE.main)
    run = lambda *a: CliRunner().invoke(main, list(a), catch_exceptions=False)  # noqa: E731
    assert run("challenge", str(tmp_path / "claim.json"), "--beacon", BEACON.hex(), "--epsilon", "0.05", "--out", str(tmp_path / "ch.json")).exit_code == 0
    assert run("respond", str(tmp_path / "p.poe"), str(tmp_path / "claim.json"), str(tmp_path / "ch.json"), "--out", str(tmp_path / "o.json")).exit_code == 0
    assert run("keygen", "--scheme", "secp256k1", "--out", str(tmp_path / "auditor.key")).exit_code == 0
    auditor = json.loads(run("pubkey", str(tmp_path / "auditor.key"), "--json").stdout)
    r = run("audit", str(tmp_path / "claim.json"), str(tmp_path / "ch.json"), str(tmp_path / "o.json"), "--deal", str(tmp_path / "deal.json"),
            "--module", str(tmp_path / "m.wasm"), "--jobs", "2", "--key", str(tmp_path / "auditor.key"), "--out", str(tmp_path / "v.json"))
    assert r.exit_code == 0, r.stderr
    r = run("settle", str(tmp_path / "v.json"), "--deal", str(tmp_path / "deal.json"))
    assert r.exit_code == 2  # --auditor is required: nobody's verdict is trusted by default
    r = run("settle", str(tmp_path / "v.json"), "--deal", str(tmp_path / "deal.json"), "--auditor", f"{auditor['scheme']}:{auditor['public_key']}")
    assert r.exit_code == 0 and json.loads(r.stdout)["total"] == claim.amount
    for bad in ("garbage", "{}", json.dumps({"format": "poe openings v1", "openings": [{"target": "w0"}]})):
        (tmp_path / "bad.json").write_text(bad)
        r = run("audit", str(tmp_path / "claim.json"), str(tmp_path / "ch.json"), str(tmp_path / "bad.json"), "--deal", str(tmp_path / "deal.json"), "--module", str(tmp_path / "m.wasm"))
        assert r.exit_code == 3 and "Traceback" not in r.stderr
    assert os.path.exists(tmp_path / "v.json")


def test_fraud_proof_cannot_frame_an_honest_record_by_moving_its_index(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    ch = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 1)
    o = open_targets(store, claim, ch)[0]
    moved = dataclasses.replace(o, index=o.index + 1)
    frame = {"format": "poe fraud proof v1", "kind": "re-execution", "claim": claim.to_json(), "opening": moved.to_json(), "observed_record": ""}
    with pytest.raises(VerificationError, match="disagree"):
        check_fraud_proof(frame, SERVICE)


def _leaves(doc, path=()):
    """Every scalar in a JSON document, with its path."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, path + (i,))
    else:
        yield path, doc


def _mutated(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        if value and all(c in "0123456789abcdef" for c in value):
            return ("1" if value[0] != "1" else "2") + value[1:]  # a hex digest or payload, one nibble off
        return value + "x"
    return "x"


def test_tampering_with_any_field_never_yields_accept_or_a_traceback():
    """Every scalar of the claim, the challenge and the first openings, changed one at a time."""
    import copy
    import importlib.util

    from poe.protocol.openings import Opening
    from poe.errors import PoEError

    from .conftest import ROOT

    spec = importlib.util.spec_from_file_location("poe_vector_generator", ROOT / "vectors" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    vector = json.loads((ROOT / "vectors" / "audit" / "honest_accept.json").read_text())
    assert gen.check_audit(vector) == "ACCEPT"
    targets = [("claim", p) for p, _ in _leaves(vector["claim"])] + [("challenge", p) for p, _ in _leaves(vector["challenge"])]
    targets += [("openings", p) for p, _ in _leaves(vector["openings"][:2])]
    assert len(targets) > 100
    survived = []
    for part, path in targets:
        v = copy.deepcopy(vector)
        node = v[part]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = _mutated(node[path[-1]])
        try:
            claim = Claim.from_json(v["claim"])
            challenge = Challenge.from_json(v["challenge"])
            verdict = audit(claim, challenge, [Opening.from_json(o) for o in v["openings"]], SERVICE, deal=Deal.from_json(vector["claim"]["deal"])).verdict
        except PoEError:
            continue
        if verdict == "ACCEPT":
            survived.append((part, path))
    assert survived == []


# -- hardening after review -----------------------------------------------------------------


def test_claim_carrying_its_own_prices_is_rejected_against_the_pinned_deal(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    greedy_deal = dataclasses.replace(claim.deal, prices=tuple(p * 10 for p in claim.deal.prices))
    forged = Claim(greedy_deal, claim.envelope, greedy_deal.amount(claim.statement.totals))
    ch = Challenge.draw(forged, BEACON, Fraction(1, 20), Fraction(1, 1000), 2)
    verdict = audit(forged, ch, open_targets(store, forged, ch), SERVICE, deal=claim.deal)
    assert verdict.verdict == "REJECT" and "other deal terms" in verdict.reason


def test_re_signing_after_the_beacon_does_not_change_the_sample(tmp_path, executions):
    claim, _ = provide(str(tmp_path / "p.poe"), executions)
    st = dataclasses.replace(claim.statement, issued_at=claim.statement.issued_at + 1)
    resigned = Claim(claim.deal, Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), CM.to_json(), None), claim.amount)
    assert resigned.claim_id != claim.claim_id
    a = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 4)
    b = Challenge.draw(resigned, BEACON, Fraction(1, 20), Fraction(1, 1000), 4)
    assert (a.seed, a.weighted, a.uniform) == (b.seed, b.weighted, b.uniform)


def test_withheld_openings_are_a_provider_refusal_and_a_reject_after_the_deadline(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    ch = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 2)
    openings = open_targets(store, claim, ch)[1:]
    refused = audit(claim, ch, openings, SERVICE, deal=claim.deal)
    assert (refused.verdict, refused.refused_by) == ("REFUSED", "provider")
    assert audit(claim, ch, openings, SERVICE, deal=claim.deal, final=True).verdict == "REJECT"
    auditor = get_scheme("secp256k1")
    auditor_sk = auditor.generate_key(b"poe audit tests: auditor key seed 01")
    paid = settle([refused.sign(auditor, auditor_sk, 1)], claim.deal, [(auditor.name, auditor.public_key(auditor_sk))])["payouts"][0]
    assert paid["payout"] == 0 and "same challenge" in paid["status"]


def test_malformed_payloads_in_an_opening_are_an_encoding_error_not_a_crash(tmp_path, executions):
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    ch = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 1)
    doc = open_targets(store, claim, ch)[0].to_json()
    for payloads in ({"zz": "00"}, {"00" * 32: "not hex"}, {"00": "00"}):
        from poe.protocol.openings import Opening

        with pytest.raises(EncodingError):
            Opening.from_json(dict(doc, payloads=payloads))


@pytest.mark.parametrize(("eps", "delta"), [("1e-400", "0.001"), ("0.01", "1e-400"), ("1e-9", "0.001"), ("0", "0.5"), ("1", "0.5")])
def test_extreme_epsilon_or_delta_is_refused_quickly(eps, delta):
    with pytest.raises(InputError):
        samples_needed(Fraction(eps), Fraction(delta))


def test_fraud_proof_relabelled_to_another_deal_is_refused(tmp_path, executions):
    def lie(e):
        return Execution(dataclasses.replace(e.record, fuel=e.record.fuel * 2), e.invocation, e.output)

    claim, store = provide(str(tmp_path / "c.poe"), executions, lie)
    verdict, _ = run_audit(claim, store)
    fp = json.loads(json.dumps(verdict.fraud_proof))
    fp["claim"]["deal"]["deal_id"] = "someone-elses-deal"
    fp["claim"].pop("claim_id")
    fp["claim"].pop("breakdown")
    with pytest.raises(VerificationError, match="not the one the provider signed"):
        check_fraud_proof(fp, SERVICE)
    with pytest.raises(EncodingError):
        check_fraud_proof({"format": "poe fraud proof v1", "kind": "re-execution"}, SERVICE)
