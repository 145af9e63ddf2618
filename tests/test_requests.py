"""Customer requests (poe request v1, spec §14): what a customer signs, and the lies about it a
provider or a thief might tell, each refused."""

from __future__ import annotations

import copy
import json
import random

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from poe.crypto.schemes import get_scheme
from poe.errors import EncodingError, InputError, PoEError, SignatureError
from poe.protocol.request import MAX_U64, SignedRequest, sign_request

K1 = get_scheme("secp256k1")
CUSTOMER = K1.generate_key(b"poe request tests: the customer's key")
OTHER = K1.generate_key(b"poe request tests: someone else's key")
DEAL = bytes(range(32))
TERMS = dict(chain_id=1, deal=DEAL, sequence=41, invocation=b"\x5a" * 32, fuel_budget=5_000_000, not_before=3, not_after=9)


def _signed(**changes) -> SignedRequest:
    return sign_request(CUSTOMER, **{**TERMS, **changes})


def _doc(**changes) -> dict:
    return _signed(**changes).to_json()


def test_request_round_trips_and_verifies():
    sr = _signed()
    sr.verify()
    assert SignedRequest.from_json(json.loads(json.dumps(sr.to_json()))) == sr
    assert sr.request.customer.hex() == K1.identity(K1.public_key(CUSTOMER))[2:].lower()


def test_a_wallet_signs_the_same_bytes_and_poe_accepts_its_signature():
    sr = _signed()
    message = encode_typed_data(full_message=sr.request.typed_data())
    wallet = Account.from_key(CUSTOMER).sign_message(message)
    assert bytes(wallet.signature) == sr.signature  # deterministic nonces: the same signature
    assert Account.recover_message(message, signature=sr.signature) == K1.identity(K1.public_key(CUSTOMER))
    SignedRequest(sr.request, bytes(wallet.signature)).verify()


@pytest.mark.parametrize("member, value", [
    ("fuelBudget", 5_000_001), ("sequence", 40), ("notAfter", 10), ("notBefore", 2),
    ("invocation", "0x" + "5b" * 32), ("deal", "0x" + "00" * 32),
])
def test_request_changed_after_signing_is_rejected(member, value):
    doc = _doc()
    doc["request"][member] = value
    with pytest.raises(SignatureError):
        SignedRequest.from_json(doc).verify()


def test_request_signed_for_another_chain_is_rejected():
    doc = _doc()
    doc["chain_id"] = 5
    with pytest.raises(SignatureError):
        SignedRequest.from_json(doc).verify()


def test_request_billed_to_another_customer_is_rejected():
    doc = _doc()
    doc["request"]["customer"] = K1.identity(K1.public_key(OTHER))
    with pytest.raises(SignatureError, match="not signed by its customer"):
        SignedRequest.from_json(doc).verify()


def test_request_signed_by_someone_else_in_the_customers_name_is_rejected():
    theirs = sign_request(OTHER, **TERMS)
    forged = SignedRequest(_signed().request, theirs.signature)
    with pytest.raises(SignatureError):
        forged.verify()


def test_high_s_twin_of_a_valid_signature_is_rejected():
    sr = _signed()
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(sr.signature[32:64], "big")
    twin = sr.signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - sr.signature[64]])
    with pytest.raises(SignatureError, match="upper half"):
        SignedRequest(sr.request, twin).verify()


def test_request_for_another_deal_is_refused_before_anything_runs():
    with pytest.raises(InputError, match="another deal"):
        _signed().request.check_terms(bytes(32), epoch=4)


@pytest.mark.parametrize("epoch", [2, 10])
def test_request_outside_its_window_is_refused(epoch):
    with pytest.raises(InputError, match="may be billed in epochs 3..9"):
        _signed().request.check_terms(DEAL, epoch=epoch)


def test_budget_beyond_the_deals_limit_is_refused():
    with pytest.raises(InputError, match="beyond the deal's per-segment limit"):
        _signed(fuel_budget=10**9).request.check_terms(DEAL, epoch=3, fuel_limit=10**8)
    _signed(fuel_budget=10**8).request.check_terms(DEAL, epoch=9, fuel_limit=10**8)


@pytest.mark.parametrize("changes", [{"fuel_budget": 0}, {"not_before": 5, "not_after": 4}, {"sequence": MAX_U64 + 1},
                                     {"chain_id": 0}, {"deal": b"\x01" * 31}])
def test_requests_that_mean_nothing_are_refused_when_made(changes):
    with pytest.raises(InputError):
        _signed(**changes)


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("signature"),
    lambda d: d.update(extra=1),
    lambda d: d["request"].pop("sequence"),
    lambda d: d["request"].update(tip=1),
    lambda d: d.update(format="poe request v2"),
    lambda d: d["request"].update(sequence=41.0),
    lambda d: d["request"].update(sequence=True),
    lambda d: d["request"].update(sequence="41"),
    lambda d: d["request"].update(fuelBudget=-1),
    lambda d: d["request"].update(fuelBudget=0),
    lambda d: d["request"].update(notAfter=2 ** 64),
    lambda d: d["request"].update(customer=d["request"]["customer"].lower()),
    lambda d: d["request"].update(deal=d["request"]["deal"][2:]),
    lambda d: d.update(signature=d["signature"][:-2]),
    lambda d: d.update(chain_id=0),
])
def test_malformed_request_documents_are_refused_with_a_typed_error(mutate):
    doc = _doc()
    mutate(doc)
    with pytest.raises((EncodingError, InputError)):
        SignedRequest.from_json(doc)


def test_mutated_requests_never_verify_with_another_meaning():
    # Seeded mutation fuzz: any change to a signed document is refused as malformed, fails its
    # signature, or decodes to exactly the request that was signed.
    original = _signed()
    rng = random.Random(20261205)
    leaves = [("chain_id",), ("signature",)] + [("request", m) for m in original.to_json()["request"]]
    values = [0, 1, -1, 2 ** 64, 0.5, "", "0x", None, True, [], {}, "0x" + "00" * 32, "0x" + "ff" * 65]
    for _ in range(600):
        doc = copy.deepcopy(original.to_json())
        path = rng.choice(leaves)
        target = doc if len(path) == 1 else doc["request"]
        current = target[path[-1]]
        if isinstance(current, str) and rng.random() < 0.6:
            i = rng.randrange(2, len(current))
            target[path[-1]] = current[:i] + rng.choice("0123456789abcdefABCDEF") + current[i + 1:]
        elif isinstance(current, int) and rng.random() < 0.6:
            target[path[-1]] = current + rng.choice([-1, 1])
        else:
            target[path[-1]] = rng.choice(values)
        try:
            decoded = SignedRequest.from_json(doc)
            decoded.verify()
        except PoEError:
            continue
        assert decoded.request == original.request


def test_request_digest_is_the_eip712_digest_eth_account_computes():
    sr = _signed(sequence=2 ** 63, fuel_budget=MAX_U64, not_after=MAX_U64, chain_id=2 ** 64 - 1)
    message = encode_typed_data(full_message=sr.request.typed_data())
    from poe.crypto.keccak import keccak256

    assert keccak256(b"\x19" + message.version + message.header + message.body) == sr.digest


# -- the command line: `poe deal new` and `poe request` ----------------------------------------


def _cli(*args):
    from click.testing import CliRunner

    from poe.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def parties(tmp_path):
    from .conftest import module_bytes

    (tmp_path / "funcs.wasm").write_bytes(module_bytes("funcs.wasm"))
    (tmp_path / "trap.wasm").write_bytes(module_bytes("trap.wasm"))
    assert _cli("keygen", "--scheme", "bls", "--out", tmp_path / "p.key").exit_code == 0
    assert _cli("keygen", "--scheme", "secp256k1", "--out", tmp_path / "c.key").exit_code == 0
    r = _cli("deal", "new", tmp_path / "funcs.wasm", "--id", "d1", "--provider", tmp_path / "p.key", "--price-fuel", "3", "--window", "16", "--out", tmp_path / "deal.json")
    assert r.exit_code == 0, r.output
    return tmp_path


def test_deal_new_writes_the_deal_a_provider_would_write_by_hand(parties):
    from poe import CostModel, Service
    from poe.crypto.keys import read_key_file
    from poe.protocol.deal import Deal

    from .conftest import module_bytes

    deal = Deal.from_json(json.loads((parties / "deal.json").read_text()))
    assert deal.module_digest == Service(module_bytes("funcs.wasm")).digest
    assert deal.cost_model_digest == CostModel.current().digest
    assert deal.provider_key == read_key_file(str(parties / "p.key"), unlock=False).public_key
    assert deal.prices == (3, 0, 0) and deal.penalty == {"kind": "forfeit"}


def test_deal_that_prices_nothing_is_refused_and_not_written(parties):
    r = _cli("deal", "new", parties / "funcs.wasm", "--id", "d2", "--provider", parties / "p.key", "--out", parties / "free.json")
    assert r.exit_code == 3 and not (parties / "free.json").exists()


def test_deal_new_takes_the_cost_model_a_store_was_run_under(parties):
    from poe.protocol.deal import Deal
    from poe.store.tracestore import TraceStore

    store = parties / "s.poe"
    assert _cli("run", parties / "funcs.wasm", "--invoke", "add", "--arg", "1", "--arg", "2", "--fuel", "123456", "--store", store).exit_code == 0
    r = _cli("deal", "new", parties / "funcs.wasm", "--id", "d3", "--provider", parties / "p.key", "--price-io", "1", "--store", store, "--json")
    assert r.exit_code == 0, r.output
    with TraceStore.open(str(store)) as s:
        assert Deal.from_json({k: v for k, v in json.loads(r.stdout).items() if k != "digest"}).cost_model_digest == s.cost_model.digest


def test_request_from_the_command_line_signs_the_invocation_poe_run_would_record(parties):
    from poe import Invocation, Value
    from poe.protocol.deal import Deal

    r = _cli("request", parties / "funcs.wasm", "--deal", parties / "deal.json", "--key", parties / "c.key", "--sequence", "4",
             "--budget", "100000", "--epochs", "2..5", "--invoke", "add", "--arg", "2", "--arg", "40", "--out", parties / "req.json")
    assert r.exit_code == 0, r.output
    signed = SignedRequest.from_json(json.loads((parties / "req.json").read_text()))
    signed.verify()
    expected = Invocation.build("add", params=[Value.of("i32", 2), Value.of("i32", 40)], argv=["funcs.wasm", "2", "40"])
    assert signed.request.invocation == expected.digest
    assert signed.request.deal == Deal.from_json(json.loads((parties / "deal.json").read_text())).digest
    assert (signed.request.sequence, signed.request.fuel_budget, signed.request.not_before, signed.request.not_after) == (4, 100000, 2, 5)


@pytest.mark.parametrize("change, code", [
    ({"module": "trap.wasm"}, 3),  # not the deal's module
    ({"key": "p.key"}, 3),  # a BLS key cannot be a customer
    ({"epochs": "5..2"}, 3),  # an empty window
    ({"epochs": "soon"}, 2),
    ({"budget": "0"}, 2),
])
def test_request_that_cannot_be_billed_is_refused_before_anything_is_signed(parties, change, code):
    opts = {"module": "funcs.wasm", "key": "c.key", "epochs": "0..9", "budget": "1000", **change}
    r = _cli("request", parties / opts["module"], "--deal", parties / "deal.json", "--key", parties / opts["key"], "--sequence", "1",
             "--budget", opts["budget"], "--epochs", opts["epochs"], "--invoke", "add", "--arg", "1", "--arg", "2", "--out", parties / "r.json")
    assert r.exit_code == code, r.output
    assert not (parties / "r.json").exists() and "Traceback" not in r.output


# -- a provider running requests (invocation version 2, poe run --request) -----------------------


def _request_cli(parties, *extra, sequence=1, budget=100_000, epochs="0..9", call=("--arg", "2", "--arg", "40"), out="req.json"):
    r = _cli("request", parties / "funcs.wasm", "--deal", parties / "deal.json", "--key", parties / "c.key", "--sequence", sequence,
             "--budget", budget, "--epochs", epochs, "--invoke", "add", *call, "--out", parties / out, *extra)
    assert r.exit_code == 0, r.output
    return parties / out


def _run_request(parties, req, call=("--arg", "2", "--arg", "40"), store="s.poe"):
    return _cli("run", parties / "funcs.wasm", "--store", parties / store, "--request", req, "--deal", parties / "deal.json",
                "--invoke", "add", *call, "--json")


def _segments(path) -> int:
    from poe.store.tracestore import TraceStore

    if not path.exists():
        return 0
    with TraceStore.open(str(path)) as s:
        return s.count()


def test_requested_segment_commits_its_request_and_is_audited_end_to_end(parties):
    from poe.formats.invocation import Invocation
    from poe.protocol.request import request_of
    from poe.store.tracestore import TraceStore

    req = _request_cli(parties)
    r = _run_request(parties, req)
    assert r.exit_code == 0, r.output
    with TraceStore.open(str(parties / "s.poe")) as s:
        record, inv, _ = s.segment(0)
    assert isinstance(inv, Invocation) and record.input_digest == inv.digest
    assert request_of(inv) == SignedRequest.from_json(json.loads(req.read_text()))
    shown = _cli("inspect", parties / "s.poe", "--segment", "0", "--json")
    assert json.loads(shown.stdout)["request"]["digest"] == request_of(inv).digest.hex()
    # The auditor re-executes the version-2 invocation from the openings and gets the same record.
    p = parties
    assert _cli("attest", p / "s.poe", "--key", p / "p.key", "--deal", "d1", "--out", p / "a.json").exit_code == 0
    assert _cli("claim", p / "a.json", "--deal", p / "deal.json", "--out", p / "claim.json").exit_code == 0
    assert _cli("challenge", p / "claim.json", "--beacon", "ab" * 16, "--out", p / "ch.json").exit_code == 0
    assert _cli("respond", p / "s.poe", p / "claim.json", p / "ch.json", "--out", p / "o.json").exit_code == 0
    r = _cli("audit", p / "claim.json", p / "ch.json", p / "o.json", "--deal", p / "deal.json", "--module", p / "funcs.wasm", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["verdict"] == "ACCEPT", r.output


def test_request_run_twice_is_refused_and_leaves_one_record(parties):
    req = _request_cli(parties)
    assert _run_request(parties, req).exit_code == 0
    r = _run_request(parties, req)
    assert r.exit_code == 3 and "already run" in r.output
    assert _segments(parties / "s.poe") == 1


def test_request_for_another_call_is_refused_before_it_runs(parties):
    req = _request_cli(parties)
    r = _run_request(parties, req, call=("--arg", "2", "--arg", "41"))
    assert r.exit_code == 3 and "names another invocation" in r.output
    assert _segments(parties / "s.poe") == 0


def test_request_outside_its_epoch_window_is_refused(parties):
    req = _request_cli(parties, epochs="5..9")
    r = _run_request(parties, req)
    assert r.exit_code == 3 and "not in epoch 0" in r.output
    assert _segments(parties / "s.poe") == 0


def test_budget_beyond_the_cost_models_fuel_limit_is_refused(parties):
    from poe.formats.costmodel import Limits

    req = _request_cli(parties, budget=Limits().fuel + 1)
    r = _run_request(parties, req)
    assert r.exit_code == 3 and "beyond the deal's per-segment limit" in r.output


def test_request_whose_signature_was_tampered_is_refused(parties):
    req = _request_cli(parties)
    doc = json.loads(req.read_text())
    doc["request"]["fuelBudget"] += 1
    (parties / "tampered.json").write_text(json.dumps(doc))
    r = _run_request(parties, parties / "tampered.json")
    assert r.exit_code == 3 and "not signed by its customer" in r.output
    assert _segments(parties / "s.poe") == 0


def test_request_for_another_deal_is_refused(parties):
    req = _request_cli(parties)
    r = _cli("deal", "new", parties / "funcs.wasm", "--id", "d9", "--provider", parties / "p.key", "--price-fuel", "1", "--out", parties / "d9.json")
    assert r.exit_code == 0
    r = _cli("run", parties / "funcs.wasm", "--store", parties / "s.poe", "--request", req, "--deal", parties / "d9.json",
             "--invoke", "add", "--arg", "2", "--arg", "40")
    assert r.exit_code == 3 and "another deal" in r.output


def test_call_beyond_its_budget_ends_out_of_fuel_at_the_budget():
    from poe import CostModel, Executor, Invocation, Service, Value
    from poe.protocol.request import answer

    from .conftest import module_bytes

    ex = Executor(Service(module_bytes("funcs.wasm")), CostModel.current())
    call = Invocation.build("work", params=[Value.of("i32", 100_000)])
    needed = ex.run(call).record.fuel
    for budget, outcome in ((needed * 2, "ok"), (needed // 3, "out-of-fuel")):
        record = ex.run(answer(call, _signed(invocation=call.call_digest, fuel_budget=budget))).record
        assert record.describe_outcome() == outcome and record.fuel <= budget
        assert record.fuel == (needed if outcome == "ok" else budget)


def test_requested_invocation_commits_every_byte_of_its_request():
    from poe import Invocation
    from poe.errors import ArgumentError
    from poe.protocol.request import answer

    call = Invocation.build("add", params=[])
    inv = answer(call, _signed(invocation=call.call_digest))
    assert inv.call_digest == call.digest and inv.digest != call.digest
    for i in range(len(inv.request)):
        changed = bytearray(inv.request)
        changed[i] ^= 1
        assert Invocation(inv.export, inv.params, inv.argv, inv.env, inv.stdin, inv.files, inv.seed, bytes(changed)).digest != inv.digest
    with pytest.raises(ArgumentError, match="seed"):
        inv.with_seed(b"\x01" * 32)
    with pytest.raises(InputError, match="another invocation"):
        answer(Invocation.build("add", argv=["x"]), _signed(invocation=call.call_digest))


def test_a_request_appended_twice_through_the_library_is_refused_after_a_flush_too(tmp_path):
    # The store remembers requests it found unanswered; appending one must forget that, or a
    # second append after the batch was flushed would slip past the check.
    from poe import CostModel, Executor, Invocation, Service, TraceStore
    from poe.protocol.request import answer

    from .conftest import module_bytes

    cm, service = CostModel.current(), Service(module_bytes("funcs.wasm"))
    ex, call = Executor(service, cm), Invocation.build("nan_bits")
    inv = answer(call, _signed(invocation=call.call_digest, not_before=0))
    with TraceStore.create_or_open(str(tmp_path / "s.poe"), cm) as store:
        store.register_service(service)
        assert store.request_answered_by(inv_customer := _signed().request.customer, 41) is None
        store.append(ex.run(inv, 0))
        store.flush()
        assert store.request_answered_by(inv_customer, 41) == 0
        with pytest.raises(InputError, match="already run"):
            store.append(ex.run(inv, 1))


# -- the bill tree (spec §14.2): each customer's segments one contiguous range ---------------------


def test_bill_tree_orders_an_epoch_by_customer_and_sequence_and_adds_up_to_its_totals(tmp_path):
    from poe import CostModel, Executor, Invocation, Service, TraceStore, Value
    from poe.merkle.build import ANONYMOUS
    from poe.merkle.verify import encode_bill_range, verify_bill_range
    from poe.protocol.request import answer

    from .conftest import module_bytes

    cm, service = CostModel.current(), Service(module_bytes("funcs.wasm"))
    ex = Executor(service, cm)
    customers = [K1.generate_key(bytes([i]) * 40) for i in range(3)]
    with TraceStore.create_or_open(str(tmp_path / "s.poe"), cm) as store:
        store.register_service(service)
        plan = [(2, 9), (0, 4), (None, None), (2, 1), (1, 7), (0, 2), (None, None)]  # (customer, sequence) in arrival order
        for who, seq in plan:
            call = Invocation.build("add", params=[Value.of("i32", seq or 0), Value.of("i32", store.next_index)])
            inv = call if who is None else answer(call, sign_request(customers[who], **{**TERMS, "sequence": seq, "invocation": call.call_digest, "not_before": 0}))
            store.append(ex.run(inv, store.next_index))
        sealed = store.seal()
        entries, tree = store.bill(sealed.epoch)
    addresses = [bytes.fromhex(K1.identity(K1.public_key(c))[2:]) for c in customers]
    keys = [(e.customer, e.sequence) for e in entries]
    assert keys == sorted(keys) and len(entries) == len(plan)
    assert [e.index for e in entries if e.customer == ANONYMOUS] == [2, 6]
    assert tree.root.sums == sealed.root.sums  # epoch 0: the bill adds up to the epoch's totals
    # One customer's bill: one contiguous range, proven by one range proof.
    mine = [i for i, e in enumerate(entries) if e.customer == addresses[2]]
    assert mine == list(range(mine[0], mine[-1] + 1)) and [entries[i].index for i in mine] == [3, 0]
    proof = encode_bill_range(mine[0], mine[-1] + 1, tree.range_path(mine[0], mine[-1] + 1))
    _, _, _, total = verify_bill_range([entries[i].leaf for i in mine], proof, tree.root)
    assert total == entries[mine[0]].record.sums + entries[mine[-1]].record.sums


# -- a customer's bill (spec §14.4): everything billed to it, and nothing else -------------------


@pytest.fixture
def billed_epoch(tmp_path):
    """An attested epoch of three customers' requests and two anonymous segments: (claim,
    store path, customer secret keys, their addresses, {customer: [signed requests]})."""
    from poe import CostModel, Executor, Invocation, Service, TraceStore, Value
    from poe.protocol.deal import Deal
    from poe.protocol.request import answer
    from poe.provider.attest import make_claim, sign_epoch

    from .conftest import module_bytes

    cm, service = CostModel.current(), Service(module_bytes("funcs.wasm"))
    ex = Executor(service, cm)
    provider = K1.generate_key(b"the provider of the billing tests, key")
    deal = Deal("bills", "secp256k1", K1.public_key(provider), service.digest, cm.digest, (2, 0, 1), 0, {"kind": "forfeit"})
    keys = [K1.generate_key(bytes([i + 7]) * 40) for i in range(3)]
    addresses = [bytes.fromhex(K1.identity(K1.public_key(k))[2:]) for k in keys]
    sent: dict[int, list] = {0: [], 1: [], 2: []}
    path = str(tmp_path / "bills.poe")
    with TraceStore.create_or_open(path, cm) as store:
        store.register_service(service)
        for who, seq in [(1, 3), (0, 1), (None, 0), (1, 4), (2, 8), (0, 2), (None, 0), (1, 5)]:
            call = Invocation.build("add", params=[Value.of("i32", seq), Value.of("i32", store.next_index)])
            inv = call
            if who is not None:
                signed = sign_request(keys[who], chain_id=1, deal=deal.digest, sequence=seq, invocation=call.call_digest,
                                      fuel_budget=10**6, not_before=0, not_after=3)
                sent[who].append(signed)
                inv = answer(call, signed)
            store.append(ex.run(inv, store.next_index))
        claim = make_claim(sign_epoch(store, K1, provider, deal.deal_id), deal)
    return claim, path, keys, addresses, sent


def _bill(path, epoch, customer):
    from poe import TraceStore
    from poe.provider.bill import make_bill

    with TraceStore.open(path) as store:
        return make_bill(store, epoch, customer)


def test_customer_bill_proves_its_segments_and_that_nothing_else_is_billed_to_it(billed_epoch):
    from poe.protocol.bill import check_bill

    claim, path, _, addresses, sent = billed_epoch
    total = None
    for who, address in enumerate(addresses):
        checked = check_bill(_bill(path, 0, address), claim.statement, claim.deal.digest)
        assert {s["request"] for s in checked.segments} == {r.digest.hex() for r in sent[who]}
        total = checked.sums if total is None else total + checked.sums
    # The three bills and the two anonymous segments add up to the epoch.
    assert total.fuel < claim.statement.totals.fuel


def test_bill_that_hides_one_of_the_customers_segments_is_rejected(billed_epoch):
    # The provider shows a range one leaf short, with a valid range proof for it: the leaf it
    # hid is then the right neighbour, and it is still this customer's.
    from poe import TraceStore
    from poe.merkle.verify import encode_bill_range
    from poe.protocol.bill import bill_document, check_bill

    claim, path, _, addresses, _ = billed_epoch
    honest = _bill(path, 0, addresses[1])
    start, end = honest["range"]
    with TraceStore.open(path) as store:
        entries, tree = store.bill(0)
        hidden = entries[end - 1]
        shown = [(e, *store.segment_bytes(e.index), store.inclusion_proofs([e.index], 0)[0][1].encode()) for e in entries[start : end - 1]]
    left = entries[start - 1] if start else None
    lo = start - (left is not None)
    forged = bill_document(0, addresses[1], start, end - 1, tree.size, shown, left, hidden,
                           encode_bill_range(lo, end, tree.range_path(lo, end)))
    with pytest.raises(PoEError, match="the bill is not all of it"):
        check_bill(forged, claim.statement, claim.deal.digest)


def test_bill_that_lists_another_customers_segment_is_rejected(billed_epoch):
    from poe.protocol.bill import check_bill

    claim, path, _, addresses, _ = billed_epoch
    mine, theirs = _bill(path, 0, addresses[0]), _bill(path, 0, addresses[2])
    mine["entries"].append(theirs["entries"][0])
    mine["range"][1] += 1
    with pytest.raises(PoEError, match="another request"):
        check_bill(mine, claim.statement, claim.deal.digest)


def test_bill_whose_neighbour_is_relabelled_to_hide_a_segment_is_rejected(billed_epoch):
    from poe.protocol.bill import check_bill

    claim, path, _, addresses, _ = billed_epoch
    doc = _bill(path, 0, addresses[1])
    assert doc["left"] is not None or doc["right"] is not None
    side = "right" if doc["right"] is not None else "left"
    doc[side]["customer"] = "0x" + ("ff" if side == "right" else "00") * 19 + "01"
    with pytest.raises(PoEError):
        check_bill(doc, claim.statement, claim.deal.digest)


def test_bill_of_a_customer_with_nothing_billed_proves_zero(billed_epoch):
    from poe.merkle.hasher import Sums
    from poe.protocol.bill import check_bill

    claim, path, _, _, _ = billed_epoch
    stranger = bytes.fromhex(K1.identity(K1.public_key(OTHER))[2:])
    checked = check_bill(_bill(path, 0, stranger), claim.statement, claim.deal.digest)
    assert checked.segments == [] and checked.sums == Sums()


def test_bill_against_an_attestation_without_a_bill_root_cannot_be_checked(billed_epoch):
    import dataclasses

    from poe.errors import VerificationError
    from poe.protocol.bill import check_bill

    claim, path, _, addresses, _ = billed_epoch
    with pytest.raises(VerificationError, match="no ordered bill tree"):
        check_bill(_bill(path, 0, addresses[0]), dataclasses.replace(claim.statement, bill_root=None), claim.deal.digest)
    # nor against a version-2 statement: its bill tree proves no order, so no bill is complete
    with pytest.raises(VerificationError, match=r"no ordered bill tree \(statement version 2\)"):
        check_bill(_bill(path, 0, addresses[0]), dataclasses.replace(claim.statement, ordered=False), claim.deal.digest)


def test_request_promised_but_left_out_of_the_bill_is_reported_by_the_customer(billed_epoch, tmp_path):
    claim, path, keys, addresses, sent = billed_epoch
    (tmp_path / "claim.json").write_text(json.dumps(claim.to_json()))
    (tmp_path / "bill.json").write_text(json.dumps(_bill(path, 0, addresses[0])))
    for i, signed in enumerate(sent[0]):
        (tmp_path / f"r{i}.json").write_text(json.dumps(signed.to_json()))
    never_run = sign_request(keys[0], chain_id=1, deal=claim.deal.digest, sequence=99, invocation=b"\x01" * 32, fuel_budget=10, not_before=0, not_after=3)
    (tmp_path / "lost.json").write_text(json.dumps(never_run.to_json()))
    (tmp_path / "deal.json").write_text(json.dumps(claim.deal.to_json()))
    me = ("--customer", "0x" + addresses[0].hex(), "--deal", tmp_path / "deal.json")
    ok = _cli("bill", "verify", tmp_path / "bill.json", "--claim", tmp_path / "claim.json", *me, "--request", tmp_path / "r0.json",
              "--request", tmp_path / "r1.json", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["amount"] == claim.deal.weight(
        __import__("poe.merkle.hasher", fromlist=["Sums"]).Sums(**json.loads(ok.stdout)["totals"]))
    lost = _cli("bill", "verify", tmp_path / "bill.json", "--claim", tmp_path / "claim.json", *me, "--request", tmp_path / "lost.json")
    assert lost.exit_code == 1 and "not in the bill" in lost.output
    # another customer's bill, however valid, is not this customer's
    other = _cli("bill", "verify", tmp_path / "bill.json", "--claim", tmp_path / "claim.json", "--customer", "0x" + addresses[1].hex(),
                 "--deal", tmp_path / "deal.json")
    assert other.exit_code == 1 and "not yours" in other.output


def test_request_whose_epoch_a_concurrent_seal_closed_is_not_recorded_in_the_next(tmp_path):
    # The window is checked against the open epoch before anything runs; a seal from another
    # process may close that epoch before the batch is written. The batch is then dropped rather
    # than recorded in an epoch its request may not be billed in.
    from poe import CostModel, Executor, Invocation, Service, TraceStore, Value
    from poe.errors import StoreError
    from poe.protocol.deal import Deal
    from poe.provider.run import run_batch, run_requests

    from .conftest import module_bytes

    cm, service = CostModel.current(), Service(module_bytes("funcs.wasm"))
    ex = Executor(service, cm)
    deal = Deal("race", "secp256k1", K1.public_key(OTHER), service.digest, cm.digest, (1, 0, 0), 0, {"kind": "forfeit"})
    path = str(tmp_path / "s.poe")
    run_batch(ex, Invocation.build("add", params=[Value.of("i32", 1), Value.of("i32", 2)]), path, 1)
    call = Invocation.build("add", params=[Value.of("i32", 5), Value.of("i32", 6)])
    signed = sign_request(CUSTOMER, **{**TERMS, "deal": deal.digest, "invocation": call.call_digest, "not_before": 0, "not_after": 0})

    def seal_meanwhile(n):
        with TraceStore.open(path, seal=True) as sealer:
            sealer.seal()

    with pytest.raises(StoreError, match="not billable in epoch 1"):
        run_requests(ex, [(call, signed)], deal, path, tick=seal_meanwhile)
    with TraceStore.open(path) as store:
        assert store.count() == 1 and store.request_answered_by(signed.request.customer, signed.request.sequence) is None


def test_bill_with_a_made_up_record_in_a_real_leafs_place_is_rejected(billed_epoch):
    # The provider re-signs a bill tree in which an anonymous segment's leaf is replaced by a
    # made-up record (same sums, so the totals still add up) answering a request that never ran.
    # The bill tree alone cannot tell; the record tree, which a bill entry must be proven in, can.
    import dataclasses

    from poe import Invocation, TraceStore, Value
    from poe.formats.record import Record
    from poe.merkle.build import ANONYMOUS, BillEntry, bill_tree
    from poe.merkle.hasher import leaf
    from poe.merkle.verify import encode_bill_range
    from poe.protocol.bill import bill_document, check_bill
    from poe.protocol.request import answer

    claim, path, keys, addresses, _ = billed_epoch
    st = claim.statement
    with TraceStore.open(path) as store:
        entries, _ = store.bill(0)
        anon = next(e for e in entries if e.customer == ANONYMOUS)
        segs = {e.index: (*store.segment_bytes(e.index), store.inclusion_proofs([e.index], 0)[0][1].encode()) for e in entries}
    call = Invocation.build("add", params=[Value.of("i32", 99), Value.of("i32", 99)])
    never_run = answer(call, sign_request(keys[0], chain_id=1, deal=claim.deal.digest, sequence=99, invocation=call.call_digest,
                                          fuel_budget=10**6, not_before=0, not_after=3))
    fake = dataclasses.replace(Record.decode(segs[anon.index][0]), input_digest=never_run.digest).encode()
    ordered, forged_tree = bill_tree([e for e in entries if e is not anon] + [BillEntry(addresses[0], 99, anon.index, leaf(fake))])
    resigned = dataclasses.replace(st, bill_root=forged_tree.root)  # what the provider would sign instead
    mine = [i for i, e in enumerate(ordered) if e.customer == addresses[0]]
    s, t = mine[0], mine[-1] + 1
    left, right = (ordered[s - 1] if s else None), (ordered[t] if t < len(ordered) else None)
    lo, hi = s - (left is not None), t + (right is not None)
    rows = [(e, fake, never_run.encoded, segs[e.index][2]) if e.sequence == 99 else (e, *segs[e.index]) for e in ordered[s:t]]
    doc = bill_document(0, addresses[0], s, t, forged_tree.size, rows, left, right, encode_bill_range(lo, hi, forged_tree.range_path(lo, hi)))
    with pytest.raises(PoEError, match="different root"):
        check_bill(json.loads(json.dumps(doc)), resigned, claim.deal.digest)


@pytest.mark.parametrize("args, code", [
    (["bill", "prove", "{store}", "--epoch", "0", "--customer", "0x1234"], 2),  # not an address
    (["bill", "prove", "{store}", "--epoch", "0", "--customer", "zz" * 20], 2),
    (["bill", "prove", "{store}", "--epoch", "0", "--customer", "0x" + "00" * 20], 3),  # the anonymous marker is no customer
    (["bill", "prove", "{store}", "--epoch", "7", "--customer", "0x" + "11" * 20], 3),  # no such epoch
    (["bill", "verify", "{garbage}", "--claim", "{garbage}", "--customer", "0x" + "11" * 20, "--deal", "{deal}"], 3),
    (["bill", "verify", "{truncated}", "--claim", "{garbage}", "--customer", "0x" + "11" * 20, "--deal", "{deal}"], 3),
    (["bill", "verify", "{garbage}", "--claim", "{garbage}", "--customer", "0x" + "11" * 20, "--deal", "{garbage}"], 3),
    (["deal", "new", "{wasm}", "--id", "d", "--provider", "{key}", "--price-fuel", "1", "--penalty", "slash:lots"], 2),
    (["deal", "new", "{wasm}", "--id", "d", "--provider", "{garbage}", "--price-fuel", "1"], 3),
])
def test_bill_and_deal_commands_refuse_garbage_with_a_clear_error(parties, args, code):
    assert _run_request(parties, _request_cli(parties)).exit_code == 0
    assert _cli("seal", parties / "s.poe").exit_code == 0
    (parties / "garbage.json").write_text("{not json")
    (parties / "truncated.json").write_text('{"format": "poe bill v1", "epoch": 0')
    names = {"store": parties / "s.poe", "garbage": parties / "garbage.json", "truncated": parties / "truncated.json",
             "wasm": parties / "funcs.wasm", "key": parties / "p.key", "deal": parties / "deal.json"}
    r = _cli(*[a.format(**names) for a in args])
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output


def test_bill_verify_of_a_tampered_bill_exits_1(billed_epoch, tmp_path):
    claim, path, _, addresses, _ = billed_epoch
    (tmp_path / "claim.json").write_text(json.dumps(claim.to_json()))
    doc = _bill(path, 0, addresses[0])
    doc["entries"][0]["record"] = doc["entries"][0]["record"][:-2] + ("00" if doc["entries"][0]["record"][-2:] != "00" else "01")
    (tmp_path / "bill.json").write_text(json.dumps(doc))
    (tmp_path / "deal.json").write_text(json.dumps(claim.deal.to_json()))
    r = _cli("bill", "verify", tmp_path / "bill.json", "--claim", tmp_path / "claim.json", "--customer", "0x" + addresses[0].hex(),
             "--deal", tmp_path / "deal.json")
    assert r.exit_code == 1 and "merkle.root-mismatch" in r.output


# -- deal v2: who may be billed (spec §12.1, §14.3) ---------------------------------------------


def _deal_v2(**customers) -> dict:
    from poe.protocol.deal import Deal

    base = Deal.from_json({"format": "poe deal v1", "deal_id": "d", "provider": {"scheme": "secp256k1", "public_key": K1.public_key(OTHER).hex()},
                           "module_digest": "00" * 32, "cost_model_digest": "11" * 32, "prices": {"fuel": 1, "mem": 0, "io": 0},
                           "subscription": 0, "penalty": {"kind": "forfeit"}}).to_json()
    return {**base, "format": "poe deal v2", "customers": {"anonymous": False, "window": 1, **customers}}


def test_deal_v2_round_trips_and_its_policy_changes_its_digest():
    from poe.protocol.deal import Deal

    d = Deal.from_json(_deal_v2())
    assert (d.anonymous, d.window, d.format) == (False, 1, "poe deal v2")
    assert Deal.from_json(d.to_json()) == d
    assert Deal.from_json(_deal_v2(window=2)).digest != d.digest != Deal.from_json(_deal_v2(anonymous=True)).digest
    v1 = Deal.from_json({k: v for k, v in d.to_json().items() if k != "customers"} | {"format": "poe deal v1"})
    assert (v1.anonymous, v1.window) == (True, None) and "customers" not in v1.to_json()


@pytest.mark.parametrize("customers", [{"window": 0}, {"window": 1 << 16}, {"anonymous": 1}, {"anonymous": "no"}, {"extra": 1}])
def test_deal_v2_with_a_policy_that_means_nothing_is_refused(customers):
    from poe.protocol.deal import Deal

    with pytest.raises(EncodingError):
        Deal.from_json(_deal_v2(**customers))


def test_deal_v1_carrying_a_customers_policy_is_refused():
    from poe.protocol.deal import Deal

    with pytest.raises(EncodingError):
        Deal.from_json({**_deal_v2(), "format": "poe deal v1"})


def test_request_whose_window_is_wider_than_the_deal_allows_is_refused_before_it_runs(parties):
    from poe.protocol.deal import Deal

    p = parties
    r = _cli("deal", "new", p / "funcs.wasm", "--id", "narrow", "--provider", p / "p.key", "--price-fuel", "1", "--out", p / "narrow.json")
    assert r.exit_code == 0, r.output
    assert Deal.from_json(json.loads((p / "narrow.json").read_text())).window == 1
    # `poe request` refuses it for the customer; a request made elsewhere is refused by the provider.
    r = _cli("request", p / "funcs.wasm", "--deal", p / "narrow.json", "--key", p / "c.key", "--sequence", "1", "--budget", "1000",
             "--epochs", "0..1", "--invoke", "add", "--arg", "2", "--arg", "40", "--out", p / "wide.json")
    assert r.exit_code == 3 and "at most 1" in r.output and not (p / "wide.json").exists()
    from poe.customer import request_for
    from poe.formats.invocation import Invocation, Value
    from poe.crypto.keys import read_key_file

    call = Invocation.build("add", params=[Value.of("i32", 2), Value.of("i32", 40)], argv=["funcs.wasm", "2", "40"])
    sk = read_key_file(str(p / "c.key")).secret_key
    wide = request_for(Deal.from_json(json.loads((p / "narrow.json").read_text())), call, key=sk, sequence=1, fuel_budget=1000, epochs=(0, 1))
    (p / "wide.json").write_text(json.dumps(wide.to_json()))
    r = _cli("run", p / "funcs.wasm", "--store", p / "s.poe", "--request", p / "wide.json", "--deal", p / "narrow.json",
             "--invoke", "add", "--arg", "2", "--arg", "40")
    assert r.exit_code == 3 and "the deal allows at most 1" in r.output
    assert _segments(p / "s.poe") == 0


def _audited(parties, mutate):
    """Run two requests, claim, challenge and answer honestly; `mutate` the openings; audit."""
    p = parties
    for seq in (1, 2):
        assert _run_request(p, _request_cli(p, sequence=seq, out=f"r{seq}.json")).exit_code == 0
    for args in (("attest", p / "s.poe", "--key", p / "p.key", "--deal", "d1", "--out", p / "a.json"),
                 ("claim", p / "a.json", "--deal", p / "deal.json", "--out", p / "claim.json"),
                 ("challenge", p / "claim.json", "--beacon", "cd" * 16, "--epsilon", "0.5", "--delta", "0.5", "--out", p / "ch.json"),
                 ("respond", p / "s.poe", p / "claim.json", p / "ch.json", "--out", p / "o.json")):
        r = _cli(*args)
        assert r.exit_code == 0, r.output
    doc = json.loads((p / "o.json").read_text())
    mutate(doc["openings"][0])
    (p / "o.json").write_text(json.dumps(doc))
    r = _cli("audit", p / "claim.json", p / "ch.json", p / "o.json", "--deal", p / "deal.json", "--module", p / "funcs.wasm", "--json")
    return r.exit_code, json.loads(r.stdout)


def test_weighted_opening_of_a_billed_epoch_shows_its_bill_leaf_and_neighbours(parties):
    code, verdict = _audited(parties, lambda o: None)
    assert code == 0 and verdict["verdict"] == "ACCEPT", verdict
    assert "billed work answers requests its customers signed" in verdict["guarantee"]  # the fixture deal has a 16-epoch window


def test_weighted_opening_without_its_bill_leaf_is_rejected(parties):
    code, verdict = _audited(parties, lambda o: o.pop("bill"))
    assert code == 1 and verdict["verdict"] == "REJECT" and "does not show its leaf in the bill tree" in " ".join(verdict["problems"])


def test_weighted_opening_that_hides_a_neighbour_is_rejected(parties):
    def hide(o):
        o["bill"]["leaves"] = [o["bill"]["leaves"][o["bill"]["position"] - max(0, o["bill"]["position"] - 1)]]

    code, verdict = _audited(parties, hide)
    assert code == 1 and "each neighbour it has" in " ".join(verdict["problems"])


def test_weighted_opening_whose_neighbour_is_relabelled_is_rejected(parties):
    def relabel(o):
        leaves = o["bill"]["leaves"]
        other = next(i for i, e in enumerate(leaves) if i != o["bill"]["position"] - max(0, o["bill"]["position"] - 1))
        leaves[other]["sequence"] += 7

    code, verdict = _audited(parties, relabel)
    assert code == 1 and "[merkle." in " ".join(verdict["problems"])


# -- receipts (spec §14.5) -------------------------------------------------------------------------


def _served(parties, n=3):
    """n requests run with receipts, the epoch attested and claimed, and the customer's bill."""
    p = parties
    for seq in range(1, n + 1):
        req = _request_cli(p, sequence=seq, out=f"r{seq}.json")
        r = _cli("run", p / "funcs.wasm", "--store", p / "s.poe", "--request", req, "--deal", p / "deal.json", "--invoke", "add",
                 "--arg", "2", "--arg", "40", "--receipt", p / f"receipt{seq}.json", "--key", p / "p.key", "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["receipt"]["sequence"] == seq


def _attest_and_bill(parties):
    p = parties
    from poe.crypto.keys import read_key_file

    customer = K1.identity(read_key_file(str(p / "c.key")).public_key)
    for args in (("attest", p / "s.poe", "--key", p / "p.key", "--deal", "d1", "--out", p / "a.json"),
                 ("claim", p / "a.json", "--deal", p / "deal.json", "--out", p / "claim.json"),
                 ("bill", "prove", p / "s.poe", "--epoch", "0", "--customer", customer, "--out", p / "bill.json")):
        r = _cli(*args)
        assert r.exit_code == 0, r.output


def _verify_receipts(parties, *names, extra=()):
    p = parties
    return _cli("receipts", "verify", *[p / n for n in names], "--claim", p / "claim.json", "--deal", p / "deal.json", "--bill", p / "bill.json",
                "--json", *extra)


def test_receipts_of_served_requests_are_honoured_by_the_attested_bill(parties):
    _served(parties)
    _attest_and_bill(parties)
    r = _verify_receipts(parties, "receipt1.json", "receipt2.json", "receipt3.json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["honoured"], out["broken"], out["billed_segments"]) == (3, [], 3)


def test_receipt_whose_request_the_provider_left_out_is_a_fraud_proof_anyone_can_check(parties):
    import sqlite3

    p = parties
    _served(parties)
    # The provider drops the last request's segment (and its ledger row) before sealing: the
    # epoch no longer holds what receipt3 promised.
    db = sqlite3.connect(p / "s.poe")
    with db:
        db.execute("DELETE FROM segments WHERE idx = 2")
        db.execute("DELETE FROM requests WHERE idx = 2")
    db.close()
    _attest_and_bill(parties)
    r = _verify_receipts(parties, "receipt1.json", "receipt3.json", extra=("--fraud-proof", p / "fraud.json"))
    assert r.exit_code == 1, r.output
    assert json.loads(r.stdout)["broken"] == [str(p / "receipt3.json")]
    checked = _cli("receipts", "check-fraud", p / "fraud.json", "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["sequence"] == 3
    # The proof rests on signed bytes only: a receipt changed after signing proves nothing.
    doc = json.loads((p / "fraud.json").read_text())
    doc["receipt"]["index"] = 1
    (p / "forged.json").write_text(json.dumps(doc))
    assert _cli("receipts", "check-fraud", p / "forged.json").exit_code == 1


def test_fraud_proof_over_an_honoured_receipt_proves_nothing(parties):
    from poe.protocol.claim import Claim
    from poe.protocol.receipt import Receipt, receipt_fraud_proof

    p = parties
    _served(parties, 2)
    _attest_and_bill(parties)
    proof = receipt_fraud_proof(Receipt.from_json(json.loads((p / "receipt2.json").read_text())),
                                Claim.from_json(json.loads((p / "claim.json").read_text())), json.loads((p / "bill.json").read_text()))
    (p / "fraud.json").write_text(json.dumps(proof))
    assert _cli("receipts", "check-fraud", p / "fraud.json").exit_code == 5


def test_receipt_not_signed_by_the_deals_provider_is_rejected(parties):
    p = parties
    _served(parties, 1)
    _attest_and_bill(parties)
    doc = json.loads((p / "receipt1.json").read_text())
    doc["sequence"] = 9  # changed after signing
    (p / "changed.json").write_text(json.dumps(doc))
    r = _verify_receipts(parties, "changed.json")
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_receipt_for_another_epoch_is_refused_as_bad_input(parties):
    from poe.crypto.keys import read_key_file
    from poe.crypto.schemes import get_scheme
    from poe.protocol.receipt import Receipt, sign_receipt

    p = parties
    _served(parties, 1)
    _attest_and_bill(parties)
    key = read_key_file(str(p / "p.key"))
    r1 = Receipt.from_json(json.loads((p / "receipt1.json").read_text()))
    later = sign_receipt(get_scheme(key.scheme), key.secret_key, deal=r1.deal, request=r1.request, customer=r1.customer, sequence=r1.sequence,
                         epoch=1, index=r1.index, record_leaf=r1.record_leaf)
    (p / "later.json").write_text(json.dumps(later.to_json()))
    r = _verify_receipts(parties, "later.json")
    assert r.exit_code == 3 and "epoch 1" in r.output


def test_run_refuses_a_receipt_key_that_is_not_the_deals_before_anything_runs(parties):
    p = parties
    req = _request_cli(p)
    r = _cli("run", p / "funcs.wasm", "--store", p / "s.poe", "--request", req, "--deal", p / "deal.json", "--invoke", "add",
             "--arg", "2", "--arg", "40", "--receipt", p / "receipt.json", "--key", p / "c.key")
    assert r.exit_code == 3 and "not the deal's provider key" in r.output
    assert _segments(p / "s.poe") == 0 and not (p / "receipt.json").exists()


# -- invoices (spec §14.6) ---------------------------------------------------------------------------


def _invoice(billed_epoch):
    from poe import TraceStore
    from poe.provider.invoice import make_invoice

    claim, path, *_ = billed_epoch
    with TraceStore.open(path) as store:
        return make_invoice(store, claim)


def test_invoice_splits_the_claim_by_customer_as_each_customers_bill_proves(billed_epoch):
    from poe.protocol.bill import check_bill
    from poe.protocol.invoice import check_invoice

    claim, path, _, addresses, _ = billed_epoch
    doc = _invoice(billed_epoch)
    checked = check_invoice(doc, claim)
    assert checked.total == claim.amount
    by_customer = {line["customer"]: line["amount"] for line in checked.lines}
    for address in addresses:
        bill = check_bill(_bill(path, 0, address), claim.statement, claim.deal.digest)
        check_invoice(doc, claim, bill)  # each customer's line is its bill's range and sums
        assert by_customer["0x" + address.hex()] == claim.deal.weight(bill.sums)
    anonymous = [line for line in checked.lines if line["anonymous"]]
    assert len(anonymous) == 1 and anonymous[0]["range"][1] - anonymous[0]["range"][0] == 2


def _shift_boundary(doc, claim, path):
    """Move the first customer line's last leaf into the next line, with covering nodes rebuilt
    from the real tree: the root still rebuilds, the sums move between customers."""
    from poe import TraceStore

    with TraceStore.open(path) as store:
        _, tree = store.bill(0)
    a, b = doc["lines"][1], doc["lines"][2]
    cut = a["range"][1] - 1
    for line, (lo, hi) in ((a, (a["range"][0], cut)), (b, (cut, b["range"][1]))):
        nodes = tree.cover(lo, hi)
        total = nodes[0].sums
        for n in nodes[1:]:
            total = total + n.sums
        line.update(range=[lo, hi], nodes=b"".join(n.encode() for n in nodes).hex(), sums=total.to_json(), amount=claim.deal.weight(total))


def test_invoice_that_moves_a_segment_between_customers_is_rejected(billed_epoch):
    # The covering nodes of the ordered bill tree carry their keys: a boundary moved by one leaf,
    # with its nodes rebuilt from the real tree so the root still rebuilds, bills one customer's
    # leaf on another's line, which its keys show.
    from poe.errors import VerificationError
    from poe.protocol.invoice import check_invoice

    claim, path, _, _, _ = billed_epoch
    doc = _invoice(billed_epoch)
    _shift_boundary(doc, claim, path)
    with pytest.raises(VerificationError, match="covers leaves of another customer"):
        check_invoice(doc, claim)


@pytest.mark.parametrize("lie", ["amount", "sums", "total", "subscription", "drop line", "swap lines", "node"])
def test_invoice_that_does_not_add_up_is_rejected(billed_epoch, lie):
    from poe.protocol.invoice import check_invoice

    claim = billed_epoch[0]
    doc = _invoice(billed_epoch)
    line = doc["lines"][1]
    if lie == "amount":
        line["amount"] += 1
        doc["total"] += 1
    elif lie == "sums":
        line["sums"]["fuel"] += 1
    elif lie == "total":
        doc["total"] += 1
    elif lie == "subscription":
        doc["subscription"] += 5
        doc["total"] += 5
    elif lie == "drop line":
        del doc["lines"][1]
    elif lie == "swap lines":
        doc["lines"][1], doc["lines"][2] = doc["lines"][2], doc["lines"][1]
    else:
        raw = bytearray(bytes.fromhex(line["nodes"]))
        raw[40] ^= 1  # a covering node's fuel
        line["nodes"] = raw.hex()
    with pytest.raises(PoEError):
        check_invoice(doc, claim)


def test_invoice_from_the_command_line(billed_epoch, tmp_path):
    claim, path, _, addresses, _ = billed_epoch
    (tmp_path / "claim.json").write_text(json.dumps(claim.to_json()))
    r = _cli("invoice", "make", path, "--claim", tmp_path / "claim.json", "--out", tmp_path / "inv.json")
    assert r.exit_code == 0, r.output
    (tmp_path / "bill.json").write_text(json.dumps(_bill(path, 0, addresses[0])))
    (tmp_path / "deal.json").write_text(json.dumps(claim.deal.to_json()))
    trusted = ("--deal", tmp_path / "deal.json")
    r = _cli("invoice", "verify", tmp_path / "inv.json", "--claim", tmp_path / "claim.json", "--bill", tmp_path / "bill.json", "--json", *trusted)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["total"] == claim.amount
    doc = json.loads((tmp_path / "inv.json").read_text())
    doc["lines"][0]["amount"] += 1
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    r = _cli("invoice", "verify", tmp_path / "bad.json", "--claim", tmp_path / "claim.json", *trusted)
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_invoice_priced_by_a_claim_carrying_other_terms_is_refused(billed_epoch, tmp_path):
    # The review's finding: the statement signs the deal's id, not its terms, so the claim's deal
    # is the writer's word. An invoice priced at ten times the deal, wrapped in a claim that carries
    # those prices with the same signed attestation, verified; it is checked against the deal the
    # customer trusts instead.
    import dataclasses

    from poe.protocol.claim import Claim
    from poe.provider.invoice import make_invoice
    from poe.store.tracestore import TraceStore

    claim, path, _, _, _ = billed_epoch
    inflated = dataclasses.replace(claim.deal, prices=tuple(10 * p for p in claim.deal.prices))
    assert inflated.digest != claim.deal.digest and inflated.mismatch(claim.statement) is None
    lying = Claim.bill(claim.envelope, inflated)
    with TraceStore.open(path) as store:
        doc = make_invoice(store, lying)
    (tmp_path / "inv.json").write_text(json.dumps(doc))
    (tmp_path / "claim.json").write_text(json.dumps(lying.to_json()))
    (tmp_path / "deal.json").write_text(json.dumps(claim.deal.to_json()))
    (tmp_path / "inflated.json").write_text(json.dumps(inflated.to_json()))
    r = _cli("invoice", "verify", tmp_path / "inv.json", "--claim", tmp_path / "claim.json", "--deal", tmp_path / "deal.json")
    assert r.exit_code == 1 and "other deal terms" in r.output, r.output
    # the same files against the inflated deal verify: what differs is which deal the customer trusts
    r = _cli("invoice", "verify", tmp_path / "inv.json", "--claim", tmp_path / "claim.json", "--deal", tmp_path / "inflated.json")
    assert r.exit_code == 0, r.output


# -- stateful jobs (spec §14.7) ------------------------------------------------------------------


@pytest.fixture
def job_parties(parties):
    from .conftest import module_bytes

    p = parties
    (p / "counter.wasm").write_bytes(module_bytes("counter.wasm"))
    r = _cli("deal", "new", p / "counter.wasm", "--id", "jobs", "--provider", p / "p.key", "--price-fuel", "1", "--window", "4",
             "--out", p / "jobs.json")
    assert r.exit_code == 0, r.output
    r = _cli("request", p / "counter.wasm", "--deal", p / "jobs.json", "--key", p / "c.key", "--sequence", "100", "--budget", "100000",
             "--epochs", "0..3", "--job-steps", "5", "--invoke", "add", "--arg", "1", "--out", p / "job.json")
    assert r.exit_code == 0, r.output
    return p


def _run_job(p, steps, *extra):
    return _cli("run", p / "counter.wasm", "--store", p / "j.poe", "--stateful", "--steps", steps, "--request", p / "job.json",
                "--deal", p / "jobs.json", "--invoke", "add", "--arg", "1", "--json", *extra)


def test_job_runs_at_most_its_steps_each_billed_under_its_own_sequence_and_is_audited(job_parties):
    from poe.store.tracestore import TraceStore

    p = job_parties
    signed = SignedRequest.from_json(json.loads((p / "job.json").read_text()))
    assert signed.is_job and signed.request.steps == 5
    r = _run_job(p, 10, "--receipt", p / "job-receipt.json", "--key", p / "p.key")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["steps"] == 5 and summary["job"]["last_step"] == 4  # capped at what the customer signed
    with TraceStore.open(str(p / "j.poe"), seal=True) as s:
        s.seal()
        entries, _ = s.bill(0)
    assert [e.sequence for e in entries] == [100, 101, 102, 103, 104]
    receipt = json.loads((p / "job-receipt.json").read_text())
    assert (receipt["sequence"], receipt["index"], receipt["request"]) == (104, 4, signed.digest.hex())
    for args in (("attest", p / "j.poe", "--key", p / "p.key", "--deal", "jobs", "--out", p / "a.json"),
                 ("claim", p / "a.json", "--deal", p / "jobs.json", "--out", p / "claim.json"),
                 ("challenge", p / "claim.json", "--beacon", "ef" * 16, "--out", p / "ch.json"),
                 ("respond", p / "j.poe", p / "claim.json", p / "ch.json", "--out", p / "o.json")):
        r = _cli(*args)
        assert r.exit_code == 0, r.output
    r = _cli("audit", p / "claim.json", p / "ch.json", p / "o.json", "--deal", p / "jobs.json", "--module", p / "counter.wasm", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["verdict"] == "ACCEPT", r.output


def test_job_resumed_runs_only_the_steps_left_and_then_refuses(job_parties):
    p = job_parties
    assert json.loads(_run_job(p, 2).stdout)["job"] == {"request": SignedRequest.from_json(json.loads((p / "job.json").read_text())).digest.hex(),
                                                         "first_step": 0, "last_step": 1, "steps": 5}
    r = _run_job(p, 10, "--resume")
    assert r.exit_code == 0, r.output
    assert (json.loads(r.stdout)["job"]["first_step"], json.loads(r.stdout)["steps"]) == (2, 3)
    r = _run_job(p, 1, "--resume")
    assert r.exit_code == 3 and "have all been run" in r.output
    r = _run_job(p, 1)  # a second lineage of the same job would bill its steps again
    assert r.exit_code == 3 and "already billed" in r.output
    assert _segments(p / "j.poe") == 5


def test_request_and_job_are_refused_in_the_other_mode(job_parties):
    p = job_parties
    r = _cli("run", p / "counter.wasm", "--store", p / "j.poe", "--request", p / "job.json", "--deal", p / "jobs.json", "--invoke", "add", "--arg", "1")
    assert r.exit_code == 3 and "--stateful" in r.output
    r = _cli("request", p / "counter.wasm", "--deal", p / "jobs.json", "--key", p / "c.key", "--sequence", "7", "--budget", "1000",
             "--epochs", "0", "--invoke", "add", "--arg", "1", "--out", p / "one.json")
    assert r.exit_code == 0, r.output
    r = _cli("run", p / "counter.wasm", "--store", p / "j.poe", "--stateful", "--steps", "3", "--request", p / "one.json", "--deal", p / "jobs.json",
             "--invoke", "add", "--arg", "1")
    assert r.exit_code == 3 and "answers a job" in r.output
    assert _segments(p / "j.poe") == 0


def test_job_document_round_trips_and_its_digest_is_the_eip712_digest_eth_account_computes():
    from poe.protocol.request import Job

    signed = sign_request(CUSTOMER, **TERMS, steps=12)
    assert isinstance(signed.request, Job) and signed.to_json()["format"] == "poe job v1"
    assert SignedRequest.from_json(json.loads(json.dumps(signed.to_json()))) == signed
    signed.verify()
    from eth_utils import keccak

    m = encode_typed_data(full_message=signed.request.typed_data())
    assert keccak(b"\x19" + m.version + m.header + m.body) == signed.digest
    assert Account.recover_message(m, signature=signed.signature) == K1.identity(K1.public_key(CUSTOMER))
    # a job and a request with the same members sign different digests
    assert sign_request(CUSTOMER, **TERMS).digest != signed.digest


def test_job_whose_sequences_another_request_took_is_refused_before_any_step_runs(job_parties):
    # A request already billed under sequence 102 would stop the job at its step 2 for good.
    p = job_parties
    r = _cli("request", p / "counter.wasm", "--deal", p / "jobs.json", "--key", p / "c.key", "--sequence", "102", "--budget", "100000",
             "--epochs", "0", "--invoke", "add", "--arg", "1", "--out", p / "r102.json")
    assert r.exit_code == 0, r.output
    r = _cli("run", p / "counter.wasm", "--store", p / "j.poe", "--request", p / "r102.json", "--deal", p / "jobs.json", "--invoke", "add", "--arg", "1")
    assert r.exit_code == 0, r.output
    r = _run_job(p, 5)
    assert r.exit_code == 3 and "step 2 of this job (sequence 102) was already billed" in r.output
    assert _segments(p / "j.poe") == 1


# -- signatures checked on a second core (provider.run.SignatureChecks) ------------------------


@pytest.fixture
def batch(tmp_path, monkeypatch):
    """Twenty signed requests of one customer under a deal, with the worker used from 8 requests
    on, in chunks of 4, so the parallel path runs on a small batch."""
    from poe import CostModel, Executor, Invocation, Service, Value
    from poe.protocol.deal import Deal
    from poe._workers import SignatureChecks

    from .conftest import module_bytes

    monkeypatch.setattr(SignatureChecks, "PARALLEL_AT", 8)
    monkeypatch.setattr(SignatureChecks, "CHUNK", 4)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    cm, service = CostModel.current(), Service(module_bytes("funcs.wasm"))
    deal = Deal("parallel", "secp256k1", K1.public_key(OTHER), service.digest, cm.digest, (1, 0, 0), 0, {"kind": "forfeit"})
    calls = [Invocation.build("add", params=[Value.of("i32", i), Value.of("i32", 1)]) for i in range(20)]
    items = [(c, sign_request(CUSTOMER, **{**TERMS, "deal": deal.digest, "sequence": i, "invocation": c.call_digest,
                                            "not_before": 0, "not_after": 0})) for i, c in enumerate(calls)]
    return Executor(service, cm), deal, items, str(tmp_path / "s.poe")


def _answered(path) -> int:
    from poe import TraceStore

    if not __import__("os").path.exists(path):
        return 0
    with TraceStore.open(path) as store:
        return store.count()


def test_batch_checked_on_the_signature_worker_records_every_request(batch):
    from poe._workers import _Worker
    from poe.provider.run import run_requests

    ex, deal, items, path = batch
    summary, _ = run_requests(ex, items, deal, path)
    assert _answered(path) == 20 and summary["totals"]["segments"] == 20
    assert _Worker._proc is not None and _Worker._proc.poll() is None  # the worker ran, and stays for the next batch
    assert not _Worker._lock.locked()


@pytest.mark.parametrize("forged_at", [1, 17])  # in the first chunk, and in a chunk checked after others ran
def test_batch_with_a_forged_signature_in_any_chunk_records_nothing(batch, forged_at):
    import dataclasses

    from poe.errors import InputError
    from poe._workers import _Worker
    from poe.provider.run import run_requests

    ex, deal, items, path = batch
    call, signed = items[forged_at]
    forged = dataclasses.replace(signed, request=dataclasses.replace(signed.request, fuel_budget=signed.request.fuel_budget - 1))
    items = items[:forged_at] + [(call, forged)] + items[forged_at + 1 :]
    with pytest.raises(InputError, match="signature does not verify"):
        run_requests(ex, items, deal, path)
    assert _answered(path) == 0
    # the worker's answers still in flight were drained: the next batch reads its own
    run_requests(ex, batch[2], deal, path)
    assert _answered(path) == 20 and not _Worker._lock.locked()


def test_signature_worker_that_dies_mid_batch_is_replaced_by_inline_checks(batch):
    from poe._workers import _Worker
    from poe.provider.run import run_requests

    ex, deal, items, path = batch
    run_requests(ex, items[:10], deal, path)  # starts the worker
    _Worker._proc.kill()
    _Worker._proc.wait()
    run_requests(ex, items[10:], deal, path)  # finds it dead: a new one, or inline checks
    assert _answered(path) == 20
    killed = {"n": 0}
    original = _Worker.acquire.__func__

    def kill_after_start(cls):
        proc = original(cls)
        if proc is not None:
            proc.kill()
            killed["n"] += 1
        return proc

    with pytest.MonkeyPatch.context() as m:
        m.setattr(_Worker, "acquire", classmethod(kill_after_start))
        path2 = path + ".2"
        run_requests(ex, items, deal, path2)
    assert killed["n"] == 1 and _answered(path2) == 20 and not _Worker._lock.locked()
