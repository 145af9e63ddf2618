"""Stateful segments (spec §13): state roots, the chain, snapshots, resumption and audits.

Tests mutate honest objects and are named after the lie or the bad input they reject.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from fractions import Fraction

import blake3
import pytest
import wasmtime
from click.testing import CliRunner

from poe import CostModel, Execution, Executor, Invocation, Limits, Outcome, Service, TraceStore
from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest
from poe.audit.fraud import check_fraud_proof
from poe.audit.verifier import audit
from poe.provider.respond import open_states, open_targets
from poe.protocol.challenge import Challenge
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.formats.invocation import Value
from poe.crypto.schemes import get_scheme
from poe.formats.state import CHUNK_SIZE, State, bundle_states, manifest_of, memory_root, open_bundle
from poe.wasm.binary import POE_GLOBAL_EXPORT_PREFIX, instrument, state_hazards
from poe.cli import main
from poe.errors import (
    EncodingError,
    ModuleError,
    StatefulModuleError,
    StateMismatchError,
    StateUnavailableError,
)

from .conftest import module_bytes

CM = CostModel.current(Limits(fuel=2_000_000_000, memory_pages=160))
COUNTER = Service(module_bytes("counter.wasm"), name="counter.wasm")
SORT = Service(module_bytes("step_sort.wasm"), name="step_sort.wasm")
SCHEME = get_scheme("secp256k1")
SK = SCHEME.generate_key(b"poe stateful tests: provider key 1")
PK = SCHEME.public_key(SK)
BEACON = bytes(range(32))
STEP = Invocation.build("step")


def i64(v: int) -> Value:
    return Value.parse("i64", str(v))


def i32(v: int) -> Value:
    return Value.parse("i32", str(v))


def inv(export: str, *params: Value) -> Invocation:
    return Invocation.build(export, params=list(params))


# -- instrumenter: every mutable global reachable, state hazards named --------------------------


def test_non_exported_mutable_globals_are_exported_under_reserved_names():
    wasm = wasmtime.wat2wasm('(module (global $a (mut i64) (i64.const 7)) (global $c i32 (i32.const 1)) (global $b (mut f32) (f32.const 1.5)))')
    result = instrument(wasm)
    assert result.global_exports == ((f"{POE_GLOBAL_EXPORT_PREFIX}0", "i64"), (f"{POE_GLOBAL_EXPORT_PREFIX}2", "f32"))
    module = wasmtime.Module(wasmtime.Engine(), result.wasm)
    assert {e.name for e in module.exports} == {"__poe_global_0", "__poe_global_2"}


def test_module_exporting_a_reserved_global_name_is_refused():
    wasm = wasmtime.wat2wasm('(module (global (mut i32) (i32.const 0)) (export "__poe_global_0" (global 0)))')
    with pytest.raises(ModuleError, match="reserved"):
        instrument(wasm)


@pytest.mark.parametrize("body, name", [
    ("(table.set 0 (i32.const 0) (ref.null func))", "table.set"),
    ("(drop (table.grow 0 (ref.null func) (i32.const 1)))", "table.grow"),
    ("(table.fill 0 (i32.const 0) (ref.null func) (i32.const 1))", "table.fill"),
    ("(data.drop 0)", "data.drop"),
    ("(elem.drop 0)", "elem.drop"),
])
def test_module_that_changes_state_a_snapshot_misses_cannot_run_statefully(body, name):
    wasm = wasmtime.wat2wasm(f'(module (memory 1) (table 2 funcref) (data "x") (elem func $f) (func $f) (func (export "go") {body}))')
    assert any(h.startswith(name) for h in state_hazards(wasm))
    ex = Executor(Service(wasm), CM)
    with pytest.raises(StatefulModuleError, match=name):
        ex.session()
    ex.run(inv("go"))  # stateless mode is unaffected


def test_linked_service_cannot_run_statefully():
    svc = Service(module_bytes("linked_main.wasm"), {"mathlib": module_bytes("mathlib.wasm")})
    with pytest.raises(StatefulModuleError, match="single-module"):
        Executor(svc, CM).session()


# -- the session: state roots and the chain -----------------------------------------------------


def test_state_root_commits_memory_globals_and_clock():
    ex = Executor(COUNTER, CM)
    with ex.session() as s:
        genesis = s.state
        e1 = s.run(inv("add", i64(5)), 0)
        e2 = s.run(inv("add", i64(6)), 1)
        image = s.image()
    assert e1.record.pre_state == genesis.root and e1.record.post_state == e2.record.pre_state == e1.state.root
    assert e2.output.results == (i64(11),)
    # $total (not exported by the module) and `count` are both in the state
    assert dict((i, b) for i, _, b in e2.state.globals) == {0: 11, 1: 2}
    assert e2.state.memory == blake3.blake3(image).digest() == memory_root(image)
    assert e2.state.clock == e1.record.fuel + e2.record.fuel  # one virtual ns per unit of fuel
    assert [i for i, _ in e1.changed] == [0]  # the segment wrote one chunk


def test_genesis_is_the_same_for_every_executor():
    a = Executor(COUNTER, CM).genesis()
    b = Executor(COUNTER, CM).genesis()
    assert a == b and a[0].clock == 0 and len(a[1]) == 65536


def test_restored_instance_reexecutes_to_the_same_record():
    ex = Executor(COUNTER, CM)
    with ex.session() as s:
        for k in range(3):
            s.run(inv("add", i64(k + 1)), k)
        pre = (s.state, s.image())
        live = s.run(inv("add", i64(100)), 3)
    again = Executor(COUNTER, CM).run_stateful(pre, inv("add", i64(100)), 3)
    assert again.record_bytes == live.record_bytes


def test_memory_grown_to_the_limit_mid_lineage_is_a_recorded_outcome():
    cm = CostModel.current(Limits(fuel=10_000_000, memory_pages=4))
    ex = Executor(COUNTER, cm)
    with ex.session() as s:
        ok = s.run(inv("grow", i32(2)), 0)
        refused = s.run(inv("grow", i32(5)), 1)
        trap = s.run(inv("trap"), 2)
        after = s.run(inv("add", i64(1)), 3)
    assert ok.record.outcome is Outcome.OK and ok.state.pages == 3
    assert refused.record.outcome is Outcome.MEMORY_LIMIT and refused.state.pages == 3
    assert refused.record.post_state == trap.record.pre_state
    # the guard's flag is reset per segment: a later plain trap is not called a memory limit
    assert trap.record.describe_outcome() == "trap(unreachable)"
    assert after.record.outcome is Outcome.OK and after.record.pre_state == trap.record.post_state


def test_state_whose_image_does_not_hash_to_its_root_is_refused():
    ex = Executor(COUNTER, CM)
    state, image = ex.genesis()
    forged = bytearray(image)
    forged[100] ^= 1
    with pytest.raises(StateMismatchError, match="does not hash"):
        ex.run_stateful((state, bytes(forged)), inv("get"))


def test_state_for_another_module_is_refused():
    other = Executor(SORT, CM).genesis()
    with pytest.raises(StateMismatchError, match="another module"):
        Executor(COUNTER, CM).run_stateful(other, inv("get"))


def test_state_header_with_a_short_image_is_refused():
    state, image = Executor(COUNTER, CM).genesis()
    with pytest.raises(StateMismatchError):
        Executor(COUNTER, CM).run_stateful((state, image[:-1]), inv("get"))


def test_state_header_decoding_is_strict():
    state = Executor(COUNTER, CM).genesis()[0]
    assert State.decode(state.encoded) == state
    for bad in (state.encoded[:-1], state.encoded + b"\0", b"\x02" + state.encoded[1:]):
        with pytest.raises(EncodingError):
            State.decode(bad)


# -- the step example ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sort_run():
    """The bundled step example, run to completion once: every execution, plus images at a few steps."""
    ex = Executor(SORT, CM)
    images = {}
    out = []
    with ex.session() as s:
        genesis = (s.state, s.image())
        for k in range(5000):
            if k in (0, 1, 45, 127, 128, 700, 2000):
                images[k] = s.image()
            e = s.run(STEP, k)
            out.append(e)
            if e.output.results[0].bits == 0:
                break
    return genesis, out, images


def test_step_example_sorts_a_million_values_in_thousands_of_steps(sort_run):
    _, runs, _ = sort_run
    assert len(runs) > 2000
    assert all(r.record.outcome is Outcome.OK for r in runs)
    assert runs[-1].output.stdout.data.startswith(b"sorted 1048576 values in ")
    assert runs[-1].output.stdout.data.rstrip().endswith(b"ok")
    for a, b in zip(runs, runs[1:]):
        assert a.record.post_state == b.record.pre_state


def test_store_keeps_about_the_dirty_bytes_per_step_and_rebuilds_every_pre_state(tmp_path, sort_run):
    genesis, runs, images = sort_run
    with TraceStore.create_or_open(str(tmp_path / "s.poe"), CM) as store:
        store.register_service(SORT)
        store.put_snapshot(*genesis)
        for e in runs:
            store.append(e)
        store.flush()
        usage = store.state_usage()
        dirty = sum(len(e.changed) for e in runs) * CHUNK_SIZE
        stored = usage["chunk_bytes"] + usage["delta_bytes"] + usage["manifest_bytes"]
        assert dirty <= stored + len(genesis[1]) <= 1.2 * (dirty + len(genesis[1]))
        for k, image in images.items():
            state, manifest = store.pre_state(k)
            assert state.root == runs[k].record.pre_state
            assert store.image(state, manifest) == image


def sort_store(path: str, genesis, executions) -> None:
    """A store holding the step example's genesis and these executions."""
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SORT)
        store.put_snapshot(*genesis)
        for e in executions:
            store.append(e)


def test_store_refuses_a_state_chunk_whose_bytes_were_damaged(tmp_path, sort_run):
    genesis, runs, _ = sort_run
    path = str(tmp_path / "s.poe")
    sort_store(path, genesis, runs[:200])
    import sqlite3

    db = sqlite3.connect(path)
    digest = next(d for (d,) in db.execute("SELECT digest FROM chunks") if bytes(d) != blake3.blake3(bytes(1024)).digest())
    db.execute("UPDATE chunks SET data = ? WHERE digest = ?", (bytes(1024), digest))
    db.commit()
    db.close()
    store = TraceStore.open(path)
    with pytest.raises(StateUnavailableError, match="damaged"):
        for k in range(1, 200):
            state, manifest = store.pre_state(k)
            store.image(state, manifest)
    store.close()


def test_collected_epoch_frees_its_chunks_and_later_epochs_still_open(tmp_path, sort_run):
    genesis, runs, images = sort_run
    path = str(tmp_path / "s.poe")
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SORT)
        store.put_snapshot(*genesis)
        for e in runs[:700]:
            store.append(e)
    with TraceStore.open(path, seal=True) as s:
        s.seal()
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SORT)
        for e in runs[700:900]:
            store.append(e)
        before = store.state_usage()
        freed = store.collect(0)
        after = store.state_usage()
        assert freed["chunks"] > 0 and after["chunk_bytes"] < before["chunk_bytes"]
        assert after["states"] == 200
        state, manifest = store.pre_state(700)
        assert store.image(state, manifest) == images[700]
        with pytest.raises(StateUnavailableError):
            store.pre_state(128)


# -- resumption and crashes ---------------------------------------------------------------------


def test_run_resumes_the_lineage_after_an_interruption(tmp_path):
    path = str(tmp_path / "r.poe")
    runner = CliRunner()
    wasm = str(tmp_path / "counter.wasm")
    with open(wasm, "wb") as f:
        f.write(module_bytes("counter.wasm"))
    r1 = runner.invoke(main, ["run", wasm, "--stateful", "--steps", "2", "--store", path, "--json"])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(main, ["run", wasm, "--stateful", "--steps", "10", "--resume", "--store", path, "--json"])
    assert r2.exit_code == 0, r2.output
    doc = json.loads(r2.stdout)
    assert doc["first_index"] == 2 and doc["steps"] == 3 and doc["done"]  # count reaches 5 after 5 steps
    with TraceStore.open(path) as store:
        recs = list(store.records())
    assert all(a.post_state == b.pre_state for a, b in zip(recs, recs[1:]))


def test_run_killed_mid_lineage_loses_no_committed_step_and_resumes(tmp_path):
    path = str(tmp_path / "k.poe")
    wasm = str(tmp_path / "step_sort.wasm")
    with open(wasm, "wb") as f:
        f.write(module_bytes("step_sort.wasm"))
    proc = subprocess.Popen([sys.executable, "-m", "poe", "run", wasm, "--stateful", "--steps", "5000", "--store", path, "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if os.path.exists(path):
            try:
                with TraceStore.open(path) as st:
                    if st.count() >= 300:
                        break
            except Exception:
                pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with TraceStore.open(path) as st:
        assert not st.check_integrity()
        n = st.count()
    assert 0 < n < 2689
    r = CliRunner().invoke(main, ["run", wasm, "--stateful", "--steps", "5000", "--resume", "--store", path, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["done"]
    with TraceStore.open(path) as st:
        recs = list(st.records())
        last = st.segment(len(recs) - 1)[2]
    assert all(a.post_state == b.pre_state for a, b in zip(recs, recs[1:]))
    assert last.stdout.data.startswith(b"sorted 1048576 values in 2689 steps")


def test_resume_of_a_stateless_store_is_a_clear_error(tmp_path):
    wasm = str(tmp_path / "counter.wasm")
    with open(wasm, "wb") as f:
        f.write(module_bytes("counter.wasm"))
    path = str(tmp_path / "x.poe")
    r = CliRunner().invoke(main, ["run", wasm, "--invoke", "get", "--store", path])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", wasm, "--stateful", "--resume", "--store", path])
    assert r.exit_code == 2 or r.exit_code == 3
    assert "no lineage to continue" in r.output


def test_failed_resume_with_another_module_registers_nothing_so_the_epoch_still_attests(tmp_path):
    # A refused --resume used to leave its module registered: the next attest saw "2 services".
    path = str(tmp_path / "r.poe")
    for name in ("counter.wasm", "step_sort.wasm"):
        (tmp_path / name).write_bytes(module_bytes(name))
    r = CliRunner().invoke(main, ["run", str(tmp_path / "counter.wasm"), "--stateful", "--steps", "2", "--store", path])
    assert r.exit_code == 0, r.output
    with TraceStore.open(path) as store:
        before = store.services()
    r = CliRunner().invoke(main, ["run", str(tmp_path / "step_sort.wasm"), "--stateful", "--resume", "--store", path])
    assert r.exit_code in (2, 3) and "another module" in r.output
    with TraceStore.open(path) as store:
        assert store.services() == before and len(before) == 1
    key = tmp_path / "p.key"
    assert CliRunner().invoke(main, ["keygen", "--scheme", "secp256k1", "--out", str(key)]).exit_code == 0
    r = CliRunner().invoke(main, ["attest", path, "--key", str(key), "--deal", "d1", "--out", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output


def test_steps_without_stateful_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["run", "x.wasm", "--steps", "3", "--store", str(tmp_path / "y.poe")])
    assert r.exit_code != 0


# -- audits --------------------------------------------------------------------------------------


def _deal() -> Deal:
    return Deal.from_json({
        "format": "poe deal v1", "deal_id": "deal-stateful", "provider": {"scheme": SCHEME.name, "public_key": PK.hex()},
        "module_digest": SORT.digest.hex(), "cost_model_digest": CM.digest.hex(),
        "prices": {"fuel": 1, "mem": 0, "io": 0}, "subscription": 0, "penalty": {"kind": "forfeit"},
    })


def provide(path: str, genesis, executions: list[Execution], lie=None) -> tuple[Claim, TraceStore]:
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SORT)
        store.put_snapshot(*genesis)
        for e in executions:
            store.append(lie(e) if lie else e)
    store = TraceStore.open(path, seal=True)
    sealed = store.seal()
    st = Statement(SCHEME.name, CM.digest, SORT.digest, PK, "deal-stateful", sealed.epoch, sealed.first_index, sealed.end_index,
                   sealed.root, EMPTY_ROOT, consistency_digest(None), 1_764_000_000)
    env = Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), CM.to_json(), None)
    deal = _deal()
    return Claim(deal, env, deal.amount(st.totals)), store


def run_audit(claim, store, *, epsilon="1/10", uniform=4, tamper=None, tamper_states=None):
    ch = Challenge.draw(claim, BEACON, Fraction(epsilon), Fraction("1/100"), uniform)
    openings = open_targets(store, claim, ch)
    states = open_states(store, openings, Executor(SORT, CM).genesis())
    if tamper:
        openings = tamper(openings)
    if tamper_states:
        states = tamper_states(states)
    return audit(claim, ch, openings, SORT, deal=claim.deal, states=json.loads(json.dumps(states))), ch


def test_honest_stateful_epoch_is_accepted(tmp_path, sort_run):
    genesis, runs, _ = sort_run
    claim, store = provide(str(tmp_path / "h.poe"), genesis, runs)
    verdict, ch = run_audit(claim, store)
    assert verdict.verdict == "ACCEPT", verdict.problems
    assert verdict.checked["re_executed"] > 10


def challenge_opening(claim: Claim, index: int, uniform: int = 64) -> Challenge:
    """The first of a fixed list of beacons whose challenge opens segment `index` by index."""
    for n in range(10_000):
        ch = Challenge.draw(claim, n.to_bytes(32, "little"), Fraction("1/2"), Fraction("1/100"), uniform)
        if index in ch.uniform:
            return ch
    raise AssertionError("no beacon opens the segment")


def audit_with(claim: Claim, store: TraceStore, ch: Challenge):
    openings = open_targets(store, claim, ch)
    states = open_states(store, openings, Executor(SORT, CM).genesis())
    return audit(claim, ch, openings, SORT, deal=claim.deal, states=json.loads(json.dumps(states)))


def test_segment_with_a_forged_pre_state_is_rejected_with_a_chain_fraud_proof(tmp_path, sort_run):
    genesis, runs, images = sort_run
    # Skip steps 40..44: segment 40 is committed as if it ran from the state step 45 starts
    # from. Every record is an honest execution of its own pre-state; only the chain breaks.
    skipped = runs[:40] + [dataclasses.replace(e, record=dataclasses.replace(e.record, index=e.record.index - 5)) for e in runs[45:]]
    path = str(tmp_path / "f.poe")
    with TraceStore.create_or_open(path, CM) as store:  # the cheater's store holds the state it jumped to
        store.register_service(SORT)
        store.put_snapshot(runs[44].state, images[45])
    claim, store = provide(path, genesis, skipped)
    verdict = audit_with(claim, store, challenge_opening(claim, 40))
    assert verdict.verdict == "REJECT"
    assert any("state.chain-broken" in p for p in verdict.problems), verdict.problems
    assert verdict.fraud_proof["kind"] == "state-chain"
    proven = check_fraud_proof(json.loads(json.dumps(verdict.fraud_proof)), SORT)
    assert proven["segment"] == 40 and "forged pre-state" in proven["reason"]


def test_stateful_segment_with_inflated_fuel_is_rejected_with_a_self_contained_fraud_proof(tmp_path, sort_run):
    genesis, runs, _ = sort_run
    bad = {1500}
    lie = (lambda e: dataclasses.replace(e, record=dataclasses.replace(e.record, fuel=e.record.fuel * 2)) if e.record.index in bad else e)
    claim, store = provide(str(tmp_path / "i.poe"), genesis, runs, lie)
    verdict = audit_with(claim, store, challenge_opening(claim, 1500))
    assert verdict.verdict == "REJECT"
    fp = json.loads(json.dumps(verdict.fraud_proof))
    assert fp["kind"] == "re-execution" and "states" in fp
    proven = check_fraud_proof(fp, SORT)
    assert proven["segment"] == 1500 and set(proven["differences"]) == {"fuel", "mem"}


def test_state_bundle_with_a_tampered_chunk_is_rejected(tmp_path, sort_run):
    genesis, runs, _ = sort_run
    claim, store = provide(str(tmp_path / "t.poe"), genesis, runs[:600])

    def flip(states):
        import base64
        import zlib

        blob = bytearray(zlib.decompress(base64.b64decode(states["chunks"])))
        blob[5] ^= 0xFF
        return {**states, "chunks": base64.b64encode(zlib.compress(bytes(blob))).decode()}

    verdict, _ = run_audit(claim, store, tamper_states=flip)
    assert verdict.verdict == "REJECT"
    assert any("state.mismatch" in p for p in verdict.problems)


def test_stateful_opening_without_its_neighbours_is_rejected(tmp_path, sort_run):
    genesis, runs, _ = sort_run
    claim, store = provide(str(tmp_path / "n.poe"), genesis, runs[:600])
    verdict, _ = run_audit(claim, store, tamper=lambda ops: [dataclasses.replace(o, neighbors=()) for o in ops])
    assert verdict.verdict == "REJECT"
    assert any("was not opened" in p for p in verdict.problems)


def test_bundle_missing_a_pre_state_is_rejected(tmp_path, sort_run):
    genesis, runs, _ = sort_run
    claim, store = provide(str(tmp_path / "m.poe"), genesis, runs[:600])
    verdict, _ = run_audit(claim, store, tamper_states=lambda st: {**st, "states": st["states"][:1]})
    assert verdict.verdict == "REJECT"
    assert any("not in the provider's state bundle" in p for p in verdict.problems)


def test_bundle_round_trip_rebuilds_each_image():
    g_state, g_image = Executor(COUNTER, CM).genesis()
    ex = Executor(COUNTER, CM)
    states = []
    chunks = {}
    with ex.session() as s:
        for k in range(4):
            s.run(inv("poke", i32(k * 5000), i32(k + 1)), k)
            img = s.image()
            for off in range(0, len(img), CHUNK_SIZE):
                chunks[blake3.blake3(img[off:off + CHUNK_SIZE]).digest()] = img[off:off + CHUNK_SIZE]
            states.append((s.state, img))
    bundle = bundle_states(bytes(manifest_of(g_image)), [(st, manifest_of(img)) for st, img in states], chunks.__getitem__)
    assert [(st, img) for st, img in open_bundle(json.loads(json.dumps(bundle)), g_image)] == states


# -- the whole loop through the CLI ----------------------------------------------------------------


def test_step_example_is_run_sealed_attested_audited_accepted_and_collected_through_the_cli(tmp_path):
    """The done-when of stateful segments: thousands of stateful segments of the bundled step
    example, sealed, attested, claimed, challenged, answered, audited and accepted; then gc."""
    def run(*args: str, ok: bool = True):
        r = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert (r.exit_code == 0) == ok, r.output
        return r

    store = str(tmp_path / "p.poe")
    wasm = tmp_path / "step_sort.wasm"
    wasm.write_bytes(module_bytes("step_sort.wasm"))
    doc = json.loads(run("run", str(wasm), "--stateful", "--steps", "5000", "--store", store, "--json").stdout)
    assert doc["done"] and doc["steps"] == 2689 and doc["state_bytes_per_step"] < 64 * 1024
    key = str(tmp_path / "k.key")
    run("keygen", "--scheme", "secp256k1", "--out", key)
    pk = json.loads(run("pubkey", key, "--json").stdout)["public_key"]
    with TraceStore.open(store) as st:
        cm_digest = st.cost_model.digest.hex()
    deal = {"format": "poe deal v1", "deal_id": "deal-steps", "provider": {"scheme": "secp256k1", "public_key": pk},
            "module_digest": SORT.digest.hex(), "cost_model_digest": cm_digest,
            "prices": {"fuel": 1, "mem": 0, "io": 0}, "subscription": 0, "penalty": {"kind": "forfeit"}}
    (tmp_path / "deal.json").write_text(json.dumps(deal))
    run("attest", store, "--key", key, "--deal", "deal-steps", "--out", str(tmp_path / "att.json"))
    run("claim", str(tmp_path / "att.json"), "--deal", str(tmp_path / "deal.json"), "--out", str(tmp_path / "claim.json"))
    run("challenge", str(tmp_path / "claim.json"), "--beacon", BEACON.hex(), "--epsilon", "0.05", "--delta", "0.01",
        "--uniform", "8", "--out", str(tmp_path / "ch.json"))
    run("respond", store, str(tmp_path / "claim.json"), str(tmp_path / "ch.json"), "--out", str(tmp_path / "o.json"))
    openings = json.loads((tmp_path / "o.json").read_text())
    assert openings["states"]["format"] == "poe state bundle v1"
    run("audit", str(tmp_path / "claim.json"), str(tmp_path / "ch.json"), str(tmp_path / "o.json"), "--deal", str(tmp_path / "deal.json"),
            "--module", str(wasm), "--uniform", "8", "--out", str(tmp_path / "v.json"))
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["verdict"] == "ACCEPT", verdict["problems"]
    assert verdict["checked"]["re_executed"] > 50
    gc = json.loads(run("gc", store, "--epoch", "0", "--json").stdout)
    assert gc["freed"]["chunks"] > 0 and gc["after"]["states"] == 0
    # the lineage can still be resumed after its states were collected
    resumed = json.loads(run("run", str(wasm), "--stateful", "--resume", "--store", store, "--json").stdout)
    assert resumed["first_index"] == 2689 and resumed["done"]


# -- regressions from review: hostile pre-states and bundles, stores that could not be defended -----


COUNTER_DEAL = Deal.from_json({
    "format": "poe deal v1", "deal_id": "deal-stateful", "provider": {"scheme": SCHEME.name, "public_key": PK.hex()},
    "module_digest": COUNTER.digest.hex(), "cost_model_digest": CM.digest.hex(),
    "prices": {"fuel": 1, "mem": 0, "io": 0}, "subscription": 0, "penalty": {"kind": "forfeit"},
})


def counter_claim(path: str) -> tuple[Claim, TraceStore]:
    store = TraceStore.open(path, seal=True)
    sealed = store.seal()
    st = Statement(SCHEME.name, CM.digest, COUNTER.digest, PK, "deal-stateful", sealed.epoch, sealed.first_index, sealed.end_index,
                   sealed.root, EMPTY_ROOT, consistency_digest(None), 1_764_000_000)
    env = Envelope(st.encode(), SCHEME.sign(SK, st.digest), SCHEME.identity(PK), CM.to_json(), None)
    return Claim(COUNTER_DEAL, env, COUNTER_DEAL.amount(st.totals)), store


def counter_lineage_claim(path: str, n: int) -> tuple[Claim, TraceStore]:
    """A sealed and claimed counter lineage of n add() steps."""
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(COUNTER)
        with Executor(COUNTER, CM).session() as s:
            store.put_snapshot(s.state, s.image())
            for i in range(n):
                store.append(s.run(inv("add", i64(i)), i))
    return counter_claim(path)


def counter_audit(claim: Claim, store: TraceStore, index: int, states_edit=None):
    ch = None
    for n in range(20_000):
        ch = Challenge.draw(claim, n.to_bytes(32, "little"), Fraction("1/2"), Fraction("1/100"), 16)
        if index in ch.uniform:
            break
    openings = open_targets(store, claim, ch)
    states = json.loads(json.dumps(open_states(store, openings, Executor(COUNTER, CM).genesis())))
    if states_edit:
        states = states_edit(states)
    return audit(claim, ch, openings, COUNTER, deal=claim.deal, states=states)


@pytest.mark.parametrize("how", ["globals of another module", "beyond the memory limit"])
def test_pre_state_that_restore_refuses_is_a_rejected_sample_not_a_crash(tmp_path, how):
    ex = Executor(COUNTER, CM)
    g_state, g_image = ex.genesis()
    make = {
        "globals of another module": lambda i: State(1, 1000 + i, memory_root(g_image), ()),
        "beyond the memory limit": lambda i: State(161, 1000 + i, memory_root(bytes(161 * 65536)), g_state.globals),
    }[how]
    with ex.session() as s:
        honest = [s.run(STEP, i) for i in range(12)]
    path = str(tmp_path / "f.poe")
    with TraceStore.create_or_open(path, CM) as store:  # every state chains and hashes: only restore can refuse it
        store.register_service(COUNTER)
        store.put_snapshot(g_state, g_image)
        pre = g_state.root
        for i, e in enumerate(honest):
            q = make(i)
            store.append(dataclasses.replace(e, record=dataclasses.replace(e.record, pre_state=pre, post_state=q.root), state=q, changed=()))
            pre = q.root
    claim, store = counter_claim(path)
    verdict = counter_audit(claim, store, 5)
    assert verdict.verdict == "REJECT"
    assert any("cannot be re-executed" in p for p in verdict.problems)


def test_committed_invocation_of_a_missing_export_is_a_rejected_sample_not_a_crash(tmp_path):
    ex = Executor(COUNTER, CM)
    bogus = Invocation.build("no_such_export")
    path = str(tmp_path / "x.poe")
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(COUNTER)
        for i in range(6):
            e = ex.run(inv("get"), i)
            store.append(dataclasses.replace(e, record=dataclasses.replace(e.record, input_digest=bogus.digest), invocation=bogus))
    claim, store = counter_claim(path)
    verdict = counter_audit(claim, store, 2)
    assert verdict.verdict == "REJECT" and any("module.missing-export" in p for p in verdict.problems)


@pytest.mark.parametrize("junk", ["more states than asked for", "a state beyond the memory limit"])
def test_bundle_asking_for_work_nobody_needs_is_refused_cheaply(tmp_path, junk):
    ex = Executor(COUNTER, CM)
    claim, store = counter_lineage_claim(str(tmp_path / "j.poe"), 8)
    g_state = ex.genesis()[0]
    if junk == "more states than asked for":
        entry = lambda st: {"state": State(1, 7, g_state.memory, g_state.globals).encoded.hex(), "base": "genesis", "delta": ""}
        edit = lambda st: {**st, "states": [entry(st)] * 50 + st["states"]}
    else:  # 2 GiB claimed by a 200-byte entry, against a 160-page cost model
        entry = {"state": State(32768, 0, bytes(32), g_state.globals).encoded.hex(), "base": "genesis", "delta": ""}
        edit = lambda st: {**st, "states": [entry] + st["states"][1:]}
    verdict = counter_audit(claim, store, 5, edit)
    assert verdict.verdict == "REJECT"
    assert any("at most" in p or "beyond the memory limit" in p for p in verdict.problems), verdict.problems


def test_store_refuses_a_stateful_segment_after_a_stateless_one_broke_its_lineage(tmp_path):
    ex = Executor(COUNTER, CM)
    with TraceStore.create_or_open(str(tmp_path / "i.poe"), CM) as store:
        store.register_service(COUNTER)
        with ex.session() as s:
            store.put_snapshot(s.state, s.image())
            store.append(s.run(STEP, 0))
            store.append(ex.run(inv("get"), 1))  # stateless, in the middle of the lineage
            with pytest.raises(StateUnavailableError, match="continues its predecessor"):
                store.append(s.run(STEP, 2))


def test_resuming_step_by_step_still_writes_checkpoints(tmp_path):
    path = str(tmp_path / "r.poe")
    ex = Executor(COUNTER, CM)
    for i in range(300):  # each step writes a new chunk; a checkpoint is due every 64 delta entries
        with TraceStore.create_or_open(path, CM) as store:
            store.register_service(COUNTER)
            start = store.last_state() if i else None
            with ex.session(start) as s:
                if start is None:
                    store.put_snapshot(s.state, s.image())
                store.append(s.run(inv("poke", i32((i * 1024) % 65532), i32(i + 1)), store.next_index))
    with TraceStore.open(path) as store:
        assert store.state_usage()["snapshots"] >= 3


def test_gc_of_an_already_collected_epoch_does_nothing(tmp_path):
    path = str(tmp_path / "g.poe")
    ex = Executor(COUNTER, CM)
    with ex.session() as s:
        for epoch in range(3):
            with TraceStore.create_or_open(path, CM) as store:
                store.register_service(COUNTER)
                if epoch == 0:
                    store.put_snapshot(s.state, s.image())
                for _ in range(4):
                    store.append(s.run(STEP, store.next_index))
            with TraceStore.open(path, seal=True) as st:
                st.seal()
    with TraceStore.create_or_open(path, CM) as store:
        store.collect(1)
        assert store.collect(0)["states"] == 0
        state, manifest = store.pre_state(8)  # epoch 2 still opens
        assert state.root == store.record(8).pre_state


def test_store_refuses_a_state_whose_memory_shrank(tmp_path):
    ex = Executor(COUNTER, CM)
    g_state, g_image = ex.genesis()
    with ex.session() as s:
        e = s.run(STEP, 0)
    shrunk = State(0, 1, memory_root(b""), g_state.globals)
    with TraceStore.create_or_open(str(tmp_path / "s.poe"), CM) as store:
        store.register_service(COUNTER)
        store.put_snapshot(g_state, g_image)
        with pytest.raises(EncodingError, match="never shrinks"):
            store.append(dataclasses.replace(e, record=dataclasses.replace(e.record, post_state=shrunk.root), state=shrunk, changed=()))


def test_state_chain_fraud_proof_is_rechecked_by_the_cli(tmp_path, sort_run):
    genesis, runs, images = sort_run
    skipped = runs[:40] + [dataclasses.replace(e, record=dataclasses.replace(e.record, index=e.record.index - 5)) for e in runs[45:300]]
    path = str(tmp_path / "f.poe")
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SORT)
        store.put_snapshot(runs[44].state, images[45])
    claim, store = provide(path, genesis, skipped)
    verdict = audit_with(claim, store, challenge_opening(claim, 40))
    (tmp_path / "v.json").write_text(json.dumps(verdict.to_json()))
    (tmp_path / "m.wasm").write_bytes(SORT.main)
    r = CliRunner().invoke(main, ["check-fraud-proof", str(tmp_path / "v.json"), "--module", str(tmp_path / "m.wasm")])
    assert r.exit_code == 0 and "FRAUD PROVEN: segment 40" in r.output and "forged pre-state" in r.output


CAPPED = Service(wasmtime.wat2wasm("""(module
  (memory (export "memory") 1 2)
  (global $count (export "count") (mut i32) (i32.const 0))
  (func (export "step") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.lt_u (global.get $count) (i32.const 5))))"""), name="capped.wasm")


def test_pre_state_beyond_the_modules_declared_maximum_is_a_rejected_sample_not_a_crash():
    ex = Executor(CAPPED, CM)
    state, _ = ex.genesis()
    big = State(3, 5, memory_root(bytes(3 * 65536)), state.globals)  # 3 pages: under the cost model's 160, over the module's 2
    with pytest.raises(StateMismatchError, match="declared memory maximum"):
        ex.run_stateful((big, bytes(3 * 65536)), STEP)


def test_openings_nobody_asked_for_do_not_raise_the_bundle_bound(tmp_path):
    from poe.protocol.openings import Opening

    ex = Executor(COUNTER, CM)
    claim, store = counter_lineage_claim(str(tmp_path / "j.poe"), 8)
    g_state = ex.genesis()[0]
    ch = next(c for n in range(20_000)
              if 5 in (c := Challenge.draw(claim, n.to_bytes(32, "little"), Fraction("1/2"), Fraction("1/100"), 16)).uniform)
    openings = open_targets(store, claim, ch)
    states = json.loads(json.dumps(open_states(store, openings, ex.genesis())))
    junk_openings = [Opening(f"x{k}", 0, bytes(224) + k.to_bytes(32, "little") + bytes(32), b"", b"", {}) for k in range(1, 9)]
    junk_state = {"state": State(CM.limits.memory_pages, 0, bytes(32), g_state.globals).encoded.hex(), "base": "genesis", "delta": ""}
    verdict = audit(claim, ch, openings + junk_openings, COUNTER, deal=claim.deal, states={**states, "states": [junk_state] * 8 + states["states"]})
    assert verdict.verdict == "REJECT" and any("at most" in p for p in verdict.problems)


def test_gc_of_an_older_epoch_after_a_newer_one_keeps_the_state_to_resume_from(tmp_path):
    path = str(tmp_path / "g.poe")
    ex = Executor(COUNTER, CM)
    with ex.session() as s:
        for _ in range(2):
            with TraceStore.create_or_open(path, CM) as store:
                store.register_service(COUNTER)
                if store.next_index == 0:
                    store.put_snapshot(s.state, s.image())
                for _ in range(4):
                    store.append(s.run(inv("add", i64(3)), store.next_index))
            with TraceStore.open(path, seal=True) as st:
                st.seal()
        last = s.state
    with TraceStore.create_or_open(path, CM) as store:
        store.collect(1)
        store.collect(0)
        assert store.last_state()[0] == last


def test_store_missing_a_state_chunk_says_which(tmp_path, sort_run):
    genesis, runs, _ = sort_run
    path = str(tmp_path / "m.poe")
    sort_store(path, genesis, runs[:150])
    import sqlite3

    db = sqlite3.connect(path)
    (digest,) = db.execute("SELECT digest FROM chunks WHERE digest != ? LIMIT 1", (blake3.blake3(bytes(1024)).digest(),)).fetchone()
    db.execute("DELETE FROM chunks WHERE digest = ?", (digest,))
    db.commit()
    db.close()
    with TraceStore.open(path) as store:
        with pytest.raises(StateUnavailableError, match=f"missing state chunk {bytes(digest).hex()}"):
            for k in range(150):
                state, manifest = store.pre_state(k)
                store.image(state, manifest)


def test_a_dumped_memory_image_hashes_to_the_state_with_plain_blake3(tmp_path):
    wasm = tmp_path / "counter.wasm"
    wasm.write_bytes(module_bytes("counter.wasm"))
    store = str(tmp_path / "d.poe")
    assert CliRunner().invoke(main, ["run", str(wasm), "--stateful", "--steps", "3", "--store", store]).exit_code == 0
    r = CliRunner().invoke(main, ["inspect", store, "--segment", "2", "--dump-memory", str(tmp_path / "mem.bin"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    image = (tmp_path / "mem.bin").read_bytes()
    assert blake3.blake3(image).hexdigest() == doc["post_state"]["memory"] == doc["dumped"]["blake3"]
    with TraceStore.open(store) as st:
        assert st.state_after(2).root.hex() == doc["record"]["post_state"]
    r = CliRunner().invoke(main, ["inspect", store, "--dump-memory", str(tmp_path / "x.bin")])
    assert r.exit_code == 3 and "needs --segment" in r.output


def test_bundle_whose_image_is_not_its_headers_memory_is_rejected(tmp_path):
    from poe.formats.state import ZERO_CHUNK_DIGEST

    claim, store = counter_lineage_claim(str(tmp_path / "h.poe"), 12)

    def zero_a_chunk(states):
        # every header stays (so the roots the records name are all there), but each delta's
        # first chunk is pointed at the zero chunk: the images no longer hash to their headers
        entries = []
        for e in states["states"]:
            d = bytes.fromhex(e["delta"])
            if d:
                d = d[:4] + ZERO_CHUNK_DIGEST + d[36:]
            entries.append({**e, "delta": d.hex()})
        return {**states, "states": entries}

    verdict = counter_audit(claim, store, 5, zero_a_chunk)
    assert verdict.verdict == "REJECT"
    assert any("state.mismatch" in p and "does not hash" in p for p in verdict.problems), verdict.problems


@pytest.mark.parametrize("native", [True, False])
def test_manifest_is_every_chunks_plain_blake3_on_both_paths(monkeypatch, native):
    from poe import _native

    if native and not _native.AVAILABLE:
        pytest.skip(_native.LOAD_ERROR or "native kernel unavailable")
    monkeypatch.setattr(_native, "AVAILABLE", native and _native.AVAILABLE)
    image = os.urandom(3 * 1024) + bytes(2048) + os.urandom(1024)
    assert bytes(manifest_of(image)) == b"".join(blake3.blake3(image[k:k + 1024]).digest() for k in range(0, len(image), 1024))


def test_module_exporting_the_reserved_grow_flag_name_is_refused_even_without_memory():
    wasm = wasmtime.wat2wasm('(module (global i32 (i32.const 1)) (export "__poe_grow_refused" (global 0)))')
    with pytest.raises(ModuleError, match="reserved"):
        instrument(wasm)


def test_a_checkpoint_is_not_a_lineage_start(tmp_path):
    # 70 steps write checkpoints; a stateless segment then ends the lineage, and continuing it
    # from its last state (which may be a checkpoint) must be refused, not committed.
    ex = Executor(COUNTER, CM)
    with TraceStore.create_or_open(str(tmp_path / "c.poe"), CM) as store:
        store.register_service(COUNTER)
        with ex.session() as s:
            store.put_snapshot(s.state, s.image())
            for i in range(70):
                store.append(s.run(inv("poke", i32((i * 1024) % 65532), i32(i + 1)), i))
            store.flush()
            assert store.state_usage()["snapshots"] >= 2
            # make the last state a checkpoint, whatever the count since the last one
            store._pending_snapshots[s.state.root] = (s.state.encoded, bytes(store._lineage[1]), 0)
            store.append(ex.run(inv("get"), 70))
            with pytest.raises(StateUnavailableError, match="continues its predecessor"):
                store.append(s.run(STEP, 71))


def test_replaying_many_pre_states_on_one_executor_matches_fresh_instances(sort_run):
    """The auditor reuses one instance across samples (restoring each pre-state over the last);
    every record must be what a fresh instance gives, in any order, including smaller states."""
    genesis, runs, images = sort_run
    reused = Executor(SORT, CM)
    order = [700, 45, 2000, 1, 128, 700, 0]
    for k in order:
        pre = (runs[k - 1].state, images[k]) if k else genesis
        assert reused.run_stateful(pre, STEP, k).record_bytes == runs[k].record_bytes
    small = Executor(COUNTER, CM)
    with small.session() as s:
        s.run(inv("grow", i32(3)), 0)
        big = (s.state, s.image())
    g = small.genesis()
    a = small.run_stateful(big, inv("add", i64(1)), 1)
    b = small.run_stateful(g, inv("add", i64(1)), 1)  # fewer pages than the instance now has: a fresh one
    assert b.record_bytes == Executor(COUNTER, CM).run_stateful(g, inv("add", i64(1)), 1).record_bytes
    assert a.record.peak_pages == 4 and b.record.peak_pages == 1
