"""Vectors pin every byte format: replay them, decode them, regenerate them, fold them."""

from __future__ import annotations

import importlib.util
import json

import pytest

from poe import CostModel, Executor, Record
from poe.wasm.replay import replay
from poe.errors import CostModelMismatchError

from .conftest import ROOT

VECTORS = ROOT / "vectors"
_spec = importlib.util.spec_from_file_location("poe_vector_generator", VECTORS / "generate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def _load(kind: str) -> list[tuple[str, dict]]:
    return [(p.stem, json.loads(p.read_text())) for p in sorted((VECTORS / kind).glob("*.json"))]


@pytest.mark.parametrize(("name", "vector"), _load("execution"), ids=lambda v: v if isinstance(v, str) else "")
def test_execution_vector_replays_to_the_same_record_bytes(name, vector):
    cm = CostModel.from_json(vector["cost_model"])
    here = CostModel.current(cm.limits)
    if cm.target != here.target:
        pytest.skip(f"vector pinned on {cm.target}; this machine is {here.target}")
    try:
        cm.check_reproducible()
    except CostModelMismatchError as exc:
        pytest.fail(
            f"{name}: the pinned cost model cannot be reproduced ({exc.message}). A wasmtime upgrade changes "
            "fuel: regenerate with vectors/generate.py, bump the host ABI or record version, and say so."
        )
    claimed = Record.decode(bytes.fromhex(vector["record"]))
    service = gen.build_service(vector["module"], vector["links"])
    inv = gen.build_invocation(vector["invocation"])
    execution = replay(claimed, inv, service, cm, executor=Executor(service, cm))
    assert execution.record_bytes.hex() == vector["record"]
    assert execution.record.to_json() == vector["record_fields"]


@pytest.mark.parametrize("kind", ["records", "invocation"])
def test_encoding_vectors_decode_to_their_expected_result(kind):
    for name, vector in _load(kind):
        assert gen.check_decodes(kind, vector) == vector["expect"], f"{kind}/{name}: {vector['desc']}"


def test_canonical_invocation_vector_pins_the_input_digest():
    (vector,) = [v for n, v in _load("invocation") if n == "canonical"]
    from poe import Invocation

    blobs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in vector["payloads"].items()}
    inv = Invocation.decode(bytes.fromhex(vector["invocation"]), blobs.__getitem__)
    assert inv.digest.hex() == vector["input_digest"]
    assert inv.payload_bytes == vector["payload_bytes"]


def test_every_negative_vector_is_a_named_mutation_of_a_valid_one():
    for kind in ("records", "invocation"):
        names = {n for n, _ in _load(kind)}
        assert "canonical" in names and len(names) > 4


def test_merkle_proof_vectors_verify_to_their_expected_result():
    proofs = [(n, v) for n, v in _load("merkle") if "kind" in v]
    assert len(proofs) > 25
    for name, vector in proofs:
        assert gen.check_merkle(vector) == vector["expect"], f"merkle/{name}: {vector['desc']}"


def test_merkle_root_and_leaf_vectors_are_reproduced_by_the_reference():
    from poe.merkle.build import Tree
    from poe.merkle.hasher import Root, leaf

    (leaves,) = [v for n, v in _load("merkle") if n == "leaves"]
    assert [leaf(bytes.fromhex(r)).encode().hex() for r in leaves["records"]] == leaves["leaves"]
    for name, vector in _load("merkle"):
        if name.startswith("root_"):
            records = [gen.synthetic_record(i) for i in range(vector["size"])]
            assert Tree([leaf(r) for r in records]).root == Root.from_json(vector["root"]), name


def test_attestation_vectors_verify_to_their_expected_result():
    cases = _load("attestation")
    assert {v["expect"] for _, v in cases} >= {"ok", "attest.bad-signature", "attest.chain-broken", "attest.bad-key", "encoding.malformed"}
    for name, vector in cases:
        assert gen.check_attestation(vector) == vector["expect"], f"attestation/{name}: {vector['desc']}"


def test_attestation_vectors_pin_statement_bytes_and_deterministic_keys():
    from poe.crypto.schemes import get_scheme

    for name, vector in _load("attestation"):
        if name.endswith("_epoch0"):
            env = vector["envelopes"][0]
            scheme = get_scheme(("bls12-381" if name.startswith("bls") else "secp256k1"))
            pk = scheme.public_key(scheme.generate_key(vector["secret_key_seed"].encode()))
            from poe.protocol.attestation import Statement

            st = Statement.decode(bytes.fromhex(vector["statement"]))
            assert st.public_key == pk and st.digest.hex() == vector["statement_digest"]
            assert env["signatures"][0]["keyid"] == scheme.identity(pk)


def test_audit_vectors_give_their_expected_verdicts():
    cases = _load("audit")
    assert {v["expect"] for _, v in cases} >= {"ACCEPT", "REJECT", "REFUSED", "proven", "encoding.malformed"}
    for name, vector in cases:
        assert gen.check_audit(vector) == vector["expect"], f"audit/{name}: {vector['desc']}"


def test_eip712_vectors_reproduce_the_published_example_and_refuse_their_mutations():
    cases = _load("eip712")
    assert {v["expect"] for _, v in cases} == {"ok", "encoding.malformed", "digest differs"}
    for name, vector in cases:
        assert gen.check_eip712(vector) == vector["expect"], f"eip712/{name}: {vector['desc']}"
    # The published values are the EIP's own, not this generator's output.
    assert dict(cases)["mail"]["published"] == gen.EIP712_MAIL_PUBLISHED


def test_request_vectors_verify_or_are_refused_as_named():
    cases = _load("request")
    assert {v["expect"] for _, v in cases} == {"ok", "encoding.malformed", "input.invalid", "attest.bad-signature"}
    for name, vector in cases:
        assert gen.check_request(vector) == vector["expect"], f"request/{name}: {vector['desc']}"
    # A wallet library's own EIP-712 hashing gives the pinned digest, and recovers the pinned signer.
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    for name in ("honest", "job"):
        signed = dict(cases)[name]
        message = encode_typed_data(full_message=signed["typed_data"])
        assert Account.recover_message(message, signature=bytes.fromhex(signed["document"]["signature"][2:])) == signed["signer"]


def test_bill_vectors_prove_or_are_refused_as_named():
    cases = _load("bill")
    assert {v["expect"] for _, v in cases} == {"ok", "encoding.malformed", "verify.failed", "merkle.root-mismatch"}
    for name, vector in cases:
        assert gen.check_bill(vector) == vector["expect"], f"bill/{name}: {vector['desc']}"


def test_customers_vectors_check_or_are_refused_as_named():
    cases = _load("customers")
    assert {"deal_v2", "receipt_honoured", "receipt_broken", "invoice"} <= {name for name, _ in cases}
    for name, vector in cases:
        assert gen.check_customers(vector) == vector["expect"], f"customers/{name}: {vector['desc']}"


def test_settlement_vectors_settle_to_their_expected_payouts_or_errors():
    cases = _load("settlement")
    assert {v["expect"] for _, v in cases} >= {"ok", "encoding.malformed", "verify.failed", "attest.bad-signature"}
    for name, vector in cases:
        assert gen.check_settlement(vector) == vector["expect"], f"settlement/{name}: {vector['desc']}"
    inflated = dict(cases)["inflated_integers_pay_the_signed_amount"]
    assert inflated["payouts"] == dict(cases)["accept_pays_the_claim"]["payouts"]


def test_state_vectors_check_to_their_expected_result():
    cases = _load("state")
    assert {v["expect"] for _, v in cases} >= {"ok", "encoding.malformed", "state.mismatch"}
    assert {v["kind"] for _, v in cases} == {"header", "memory", "lineage", "bundle"}
    for name, vector in cases:
        if vector["kind"] == "lineage" and CostModel.from_json(vector["cost_model"]).target != CostModel.current().target:
            continue  # fuel is pinned per target, like the execution vectors
        assert gen.check_state(vector) == vector["expect"], f"state/{name}: {vector['desc']}"


def test_native_memory_root_agrees_with_every_memory_vector():
    import base64
    import zlib

    from poe import _native

    if not _native.AVAILABLE:
        pytest.skip(_native.LOAD_ERROR or "native kernel unavailable")
    for name, vector in _load("state"):
        if vector["kind"] == "memory":
            image = zlib.decompress(base64.b64decode(vector["image_zlib_b64"]))
            assert _native.memory_root(image).hex() == vector["memory"], name


@pytest.mark.parametrize("kind", ["records", "invocation", "execution", "merkle", "attestation", "audit", "state", "request", "bill", "customers"])
def test_generator_reproduces_the_committed_vectors(kind):
    generated = getattr(gen, {"records": "record_vectors", "invocation": "invocation_vectors", "execution": "execution_vectors", "merkle": "merkle_vectors", "attestation": "attestation_vectors", "audit": "audit_vectors", "state": "state_vectors", "request": "request_vectors", "bill": "bill_vectors", "customers": "customers_vectors"}[kind])()
    if kind in ("execution", "state"):
        any_vector = next(v for v in generated.values() if "cost_model" in v)
        if any_vector["cost_model"]["target"] != json.loads((VECTORS / "execution" / "funcs_add.json").read_text())["cost_model"]["target"]:
            pytest.skip("execution vectors are pinned on another target")
    on_disk = {p.stem: p.read_text() for p in (VECTORS / kind).glob("*.json")}
    assert set(on_disk) == set(generated)
    for name, vector in generated.items():
        assert on_disk[name] == gen.render(vector), f"{kind}/{name} differs from what vectors/generate.py produces"


def test_vector_set_folds_to_the_committed_digest():
    assert gen.fold_digest(VECTORS) == (VECTORS / "DIGEST").read_text().strip(), (
        "a vector changed: if intended, run vectors/generate.py, bump the format version and say so"
    )


def test_native_kernel_agrees_with_every_merkle_vector():
    from poe import _native
    from poe.merkle.hasher import Root
    from poe.merkle.verify import InclusionProof

    from . import native_kernels as kernels

    if not _native.AVAILABLE:
        pytest.skip(f"native kernel not built: {_native.LOAD_ERROR}")
    from poe import errors

    for name, vector in _load("merkle"):
        if name.startswith("root_"):
            records = b"".join(gen.synthetic_record(i) for i in range(vector["size"]))
            digest, sums = _native.root(records)
            t = vector["root"]["totals"]
            assert (digest.hex(), kernels.sums_to_ints(sums)) == (vector["root"]["hash"], (t["fuel"], t["mem"], t["io"])), name
        elif vector.get("kind") == "inclusion":
            try:
                proof = InclusionProof.decode(bytes.fromhex(vector["proof"]))
            except errors.EncodingError:
                assert vector["expect"] == "encoding.malformed", name
                continue
            record = bytes.fromhex(vector["record"])
            leaf_hash, leaf_sums = _native.leaf_hashes(record)
            root = Root.from_json(vector["root"])
            if proof.size != root.size:
                continue  # the size check happens before the kernel is asked
            case = kernels.InclusionCase(leaf_hash, leaf_sums, proof.index, proof.size, [(p.hash, p.sums.encode()) for p in proof.path])
            (code,) = kernels.verify_inclusion_many([case], root=(root.hash, root.sums.encode()))
            got = "ok" if code == kernels.PROOF_OK else getattr(errors, kernels.RESULT_ERRORS[code]).code
            assert got == vector["expect"], f"merkle/{name}: native says {got}"
