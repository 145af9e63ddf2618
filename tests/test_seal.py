"""Sealing epochs: the store's log committed in the sum tree, proofs anyone can check."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from poe import CostModel, Executor, Invocation, Limits, Service, TraceStore, Value
from poe.merkle.build import Tree
from poe.merkle.hasher import leaf
from poe.merkle.verify import verify_consistency, verify_inclusion
from poe.cli import main
from poe.errors import EncodingError, StoreError, VerificationError

from .conftest import MODULES, module_bytes

CM = CostModel.current(Limits(fuel=10_000_000, memory_pages=64))
SERVICE = Service(module_bytes("funcs.wasm"), name="funcs.wasm")
EXECUTOR = Executor(SERVICE, CM)


def _append(store: TraceStore, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.append(EXECUTOR.run(Invocation.build("fib", params=[Value.of("i32", i % 40)]), store.next_index))


def _fill(path: str, n: int, start: int = 0) -> None:
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SERVICE)
        _append(store, n, start)


def _all_records(path: str) -> list[bytes]:
    s = TraceStore.open(path)
    try:
        return [r.encode() for r in s.records()]
    finally:
        s.close()


def test_sealed_root_commits_to_every_record_and_the_epoch_totals(store_path):
    _fill(store_path, 23)
    store = TraceStore.open(store_path, seal=True)
    try:
        result = store.seal()
        assert result.root == Tree([leaf(r) for r in _all_records(store_path)]).root
        totals, _ = store.summary(0)
        assert result.totals.to_json() == {"fuel": totals.fuel, "mem": totals.mem, "io": totals.io}
        assert store.seal(0).already and store.seal(0).root == result.root
    finally:
        store.close()


def test_later_epochs_extend_the_log_and_bill_only_their_own_segments(store_path):
    _fill(store_path, 10)
    s = TraceStore.open(store_path, seal=True)
    first = s.seal()
    _fill(store_path, 6, start=10)
    second = s.seal()
    assert (second.first_index, second.end_index) == (10, 16)
    assert second.totals == second.root.sums - first.root.sums
    old, new, proof = s.consistency_proof(0, 1)
    verify_consistency(old, new, proof)
    s.close()


def test_sealing_while_a_writer_keeps_appending_loses_nothing(store_path):
    writer = TraceStore.create_or_open(store_path, CM)
    writer.register_service(SERVICE)
    _append(writer, 12)
    writer.flush()
    sealer = TraceStore.open(store_path, seal=True)
    first = sealer.seal()  # the writer holds the lock and keeps its batch open meanwhile
    _append(writer, 5, start=12)
    writer.close()
    second = sealer.seal()
    sealer.close()
    assert (first.end_index, second.first_index, second.end_index) == (12, 12, 17)
    assert second.root == Tree([leaf(r) for r in _all_records(store_path)]).root


def test_a_writer_sealing_its_own_queued_segments_does_not_leave_them_out(store_path):
    # append() only queues; sealing before the batch was flushed must not seal an empty epoch
    # and push the segments into the next one.
    with TraceStore.create_or_open(store_path, CM) as writer:
        writer.register_service(SERVICE)
        for epoch in range(3):
            _append(writer, 3, start=3 * epoch)
            sealed = writer.seal()
            assert (sealed.epoch, sealed.first_index, sealed.end_index) == (epoch, 3 * epoch, 3 * epoch + 3)
    assert Tree([leaf(r) for r in _all_records(store_path)]).root == sealed.root


def test_a_seal_interrupted_after_closing_the_epoch_completes_on_the_next_run(store_path):
    _fill(store_path, 9)
    s = TraceStore.open(store_path, seal=True)
    s._close(0)  # what a crash between the two phases leaves behind
    assert s.epoch_info(0).status == "closed"
    _fill(store_path, 4, start=9)  # goes to epoch 1
    result = s.seal(0)
    assert not result.already and result.root.size == 9
    assert s.seal().root.size == 13
    s.close()


def test_segment_changed_after_sealing_is_refused_on_reseal(store_path):
    _fill(store_path, 8)
    s = TraceStore.open(store_path, seal=True)
    s.seal()
    s.close()
    db = sqlite3.connect(store_path)
    (raw,) = db.execute("SELECT record FROM segments WHERE idx = 3").fetchone()
    forged = bytearray(raw)
    forged[16] ^= 1  # fuel
    forged[32:40] = (int.from_bytes(forged[16:24], "little") * int.from_bytes(forged[24:28], "little")).to_bytes(8, "little")
    db.execute("UPDATE segments SET record = ? WHERE idx = 3", (bytes(forged),))
    db.commit()
    db.close()
    s = TraceStore.open(store_path, seal=True)
    with pytest.raises(VerificationError, match="changed after sealing"):
        s.seal(0)
    s.close()


def test_proofs_for_unsealed_segments_are_refused(store_path):
    _fill(store_path, 3)
    s = TraceStore.open(store_path)
    with pytest.raises(StoreError, match="no sealed epoch"):
        s.inclusion_proof(1)
    s.close()


def test_every_segment_proves_against_its_epoch_and_later_heads(store_path):
    _fill(store_path, 7)
    s = TraceStore.open(store_path, seal=True)
    s.seal()
    _fill(store_path, 6, start=7)
    s.seal()
    for i in range(13):
        record, proof, root = s.inclusion_proof(i)
        verify_inclusion(record, proof, root)
        assert root.size == (7 if i < 7 else 13)
    record, proof, root = s.inclusion_proof(2, epoch=1)
    verify_inclusion(record, proof, root)
    s.close()


def _poe(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_seal_prove_verify_round_trip_with_a_trusted_root(store_path, tmp_path):
    r = _poe("run", f"{MODULES}/funcs.wasm", "--invoke", "fib", "--arg", "25", "--repeat", "9", "--store", store_path, "-q")
    assert r.exit_code == 0, r.stderr
    r = _poe("seal", store_path, "--json")
    assert r.exit_code == 0, r.stderr
    root_file = tmp_path / "root.json"
    root_file.write_text(json.dumps(json.loads(r.stdout)["root"]))
    bundle = tmp_path / "p.json"
    assert _poe("prove", store_path, "--index", "4", "--out", str(bundle)).exit_code == 0
    r = _poe("verify-proof", str(bundle), "--root", str(root_file), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["checked_against"] == "trusted root"


@pytest.mark.parametrize("tamper", ["record_fuel", "proof_bit", "root_hash", "trusted_root_differs"])
def test_cli_verify_proof_rejects_tampering_with_exit_1(store_path, tmp_path, tamper):
    _fill(store_path, 11)
    assert _poe("seal", store_path).exit_code == 0
    bundle = json.loads(_poe("prove", store_path, "--index", "5").stdout)
    args = []
    if tamper == "record_fuel":
        rec = bytearray.fromhex(bundle["record"])
        rec[16] ^= 1
        bundle["record"] = rec.hex()
    elif tamper == "proof_bit":
        p = bytearray.fromhex(bundle["proof"])
        p[30] ^= 0x80
        bundle["proof"] = p.hex()
    elif tamper == "root_hash":
        bundle["root"]["hash"] = "00" * 32
    else:
        other = dict(bundle["root"], totals=dict(bundle["root"]["totals"], io=bundle["root"]["totals"]["io"] - 1))
        (tmp_path / "trusted.json").write_text(json.dumps(other))
        args = ["--root", str(tmp_path / "trusted.json")]
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    r = _poe("verify-proof", str(tmp_path / "b.json"), *args)
    assert r.exit_code == 1 and "[merkle." in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("content", ["garbage", "{}", '{"format": "poe proof bundle v1", "kind": "inclusion"}', '{"format": "poe proof bundle v1", "kind": "inclusion", "record": "zz", "proof": "", "root": {}}'])
def test_cli_verify_proof_rejects_malformed_bundles_with_exit_3(tmp_path, content):
    (tmp_path / "b.json").write_text(content)
    r = _poe("verify-proof", str(tmp_path / "b.json"))
    assert r.exit_code == 3 and "Traceback" not in r.stderr


def test_cli_prove_needs_exactly_one_kind(store_path):
    _fill(store_path, 2)
    assert _poe("prove", store_path).exit_code == 2
    assert _poe("prove", store_path, "--index", "0", "--consistency", "0").exit_code == 2


def test_proof_bundle_checked_from_python_against_a_trusted_root_rejects_another_root(store_path):
    from poe.provider.proofs import consistency_bundle, inclusion_bundle
    from poe.verify import check_proof_bundle

    _fill(store_path, 10)
    with TraceStore.open(store_path, seal=True) as s:
        first = s.seal()
        _fill(store_path, 5, start=10)
        second = s.seal()
        bundle = inclusion_bundle(s, 7)
        consistency = consistency_bundle(s, 0)
    assert check_proof_bundle(bundle, root=first.root)["checked_against"] == "trusted root"
    assert check_proof_bundle(bundle)["checked_against"] == "the bundle's own root"
    with pytest.raises(VerificationError):
        check_proof_bundle(bundle, root=second.root)  # a root the segment's proof was not made for
    assert check_proof_bundle(consistency, root=second.root, old_root=first.root)["checked_against"] == "trusted root"
    with pytest.raises(VerificationError):
        check_proof_bundle(consistency, root=first.root, old_root=second.root)
    for extra in ({"note": "x"}, {"index": 8}):
        with pytest.raises(EncodingError):
            check_proof_bundle(dict(bundle, **extra))
