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
