"""Settlement pays what signed inputs and the deal imply, never what a verdict file says."""

from __future__ import annotations

import copy

import pytest

from poe import TraceStore
from poe.audit.settle import settle
from poe.crypto.schemes import get_scheme
from poe.errors import EncodingError, PoEError, SignatureError, VerificationError
from poe.protocol.claim import Claim
from poe.protocol.verdict import Verdict
from poe.provider.attest import make_claim, sign_epoch

from .test_audit import CM, SCHEME, SERVICE, SK, _deal, executions  # noqa: F401 (fixture)

AUDITOR = get_scheme("secp256k1")
AUDITOR_SK = AUDITOR.generate_key(b"poe settlement tests: auditor key seed 1")
TRUSTED = [(AUDITOR.name, AUDITOR.public_key(AUDITOR_SK))]
OTHER_SK = AUDITOR.generate_key(b"poe settlement tests: someone else's key")


@pytest.fixture(scope="module")
def claims(tmp_path_factory, executions) -> list[Claim]:  # noqa: F811
    """Three attested epochs of one provider, claimed under the deal."""
    path = str(tmp_path_factory.mktemp("settle") / "p.poe")
    envelopes = []
    for k in range(3):
        with TraceStore.create_or_open(path, CM) as store:
            store.register_service(SERVICE)
            for e in executions[k * 10 : (k + 1) * 10]:
                store.append(e)
        with TraceStore.open(path, seal=True) as store:
            envelopes.append(sign_epoch(store, SCHEME, SK, "deal-audit", issued_at=1_764_000_000))
    return [make_claim(e, _deal()) for e in envelopes]


def signed(claim: Claim, verdict: str = "ACCEPT", sk: bytes = AUDITOR_SK, **kw) -> dict:
    return Verdict(verdict, claim, "test verdict", **kw).sign(AUDITOR, sk, 1_764_000_000)


def test_settlement_pays_accepted_penalises_rejected_and_withholds_refused(claims):
    deal = _deal()
    docs = [signed(claims[0]), signed(claims[1], "REJECT"), signed(claims[2], "REFUSED", refused_by="provider")]
    result = settle(docs, deal, TRUSTED)
    expected = [deal.amount(claims[0].statement.totals), deal.penalty_payout(), 0]
    assert [r["payout"] for r in result["payouts"]] == expected and result["total"] == sum(expected)
    assert deal.penalty_payout() == -deal.penalty["amount"] < 0
    assert "same challenge" in result["payouts"][2]["status"]


@pytest.mark.parametrize("huge", [10**400, 2**64])
def test_verdict_with_inflated_integers_pays_only_what_the_signed_claim_implies(claims, huge):
    doc = signed(claims[0])
    doc["claimed_amount"] = huge
    doc["checked"] = {"weighted": huge}
    if huge < 2**256:  # the claim id covers the deal and the signed statement, not this number
        doc["claim"]["amount"] = huge
        doc["claim"].pop("breakdown")
    paid = settle([doc], _deal(), TRUSTED)["payouts"][0]
    assert paid["payout"] == paid["claimed"] == _deal().amount(claims[0].statement.totals) != huge


def test_unsigned_verdict_is_refused(claims):
    with pytest.raises(EncodingError, match="not signed"):
        settle([Verdict("ACCEPT", claims[0], "unsigned").to_json()], _deal(), TRUSTED)


def test_verdict_of_the_old_unsigned_format_is_refused(claims):
    doc = Verdict("ACCEPT", claims[0], "old").to_json()
    doc["format"] = "poe verdict v1"
    with pytest.raises(EncodingError):
        settle([doc], _deal(), TRUSTED)


def test_verdict_signed_by_an_untrusted_auditor_is_refused(claims):
    with pytest.raises(VerificationError, match="did not trust"):
        settle([signed(claims[0], sk=OTHER_SK)], _deal(), TRUSTED)


def test_verdict_whose_outcome_was_flipped_to_accept_is_refused(claims):
    doc = signed(claims[0], "REJECT")
    raw = bytearray.fromhex(doc["statement"])
    raw[1] = 1  # REJECT -> ACCEPT in the signed statement
    doc["statement"], doc["verdict"] = raw.hex(), "ACCEPT"
    with pytest.raises(SignatureError):
        settle([doc], _deal(), TRUSTED)


def test_verdict_whose_json_outcome_alone_was_flipped_still_settles_as_signed(claims):
    doc = signed(claims[0], "REJECT")
    doc["verdict"] = "ACCEPT"  # informational: settlement reads the signed statement
    assert settle([doc], _deal(), TRUSTED)["payouts"][0]["verdict"] == "REJECT"


def test_verdict_whose_claim_was_swapped_for_another_epoch_is_refused(claims):
    doc = signed(claims[0], "REJECT")
    doc["claim"] = signed(claims[1])["claim"]
    with pytest.raises(EncodingError, match="not the claim"):
        settle([doc], _deal(), TRUSTED)


def test_verdict_whose_claim_attestation_signature_was_tampered_is_refused(claims):
    doc = signed(claims[0])
    sig = doc["claim"]["attestation"]["signatures"][0]
    sig["sig"] = ("A" if sig["sig"][0] != "A" else "B") + sig["sig"][1:]
    with pytest.raises(PoEError) as info:
        settle([doc], _deal(), TRUSTED)
    assert info.value.exit_code in (1, 3)


def test_verdict_under_other_deal_terms_is_refused(claims):
    with pytest.raises(EncodingError, match="other deal terms"):
        settle([signed(claims[0])], _deal(subscription=1), TRUSTED)


def test_verdict_with_a_swapped_fraud_proof_is_refused(claims):
    doc = signed(claims[0], "REJECT", fraud_proof={"format": "poe fraud proof v1", "kind": "state-chain"})
    doc["fraud_proof"] = {"format": "poe fraud proof v1", "kind": "re-execution"}
    with pytest.raises(EncodingError, match="fraud proof"):
        settle([doc], _deal(), TRUSTED)


def test_settling_the_same_epoch_twice_is_refused(claims):
    with pytest.raises(EncodingError, match="settle each epoch once"):
        settle([signed(claims[0]), signed(claims[0], "REJECT")], _deal(), TRUSTED)


def test_malformed_verdicts_are_input_errors_not_crashes(claims):
    good = signed(claims[0])
    bad = [None, [], "x", {"format": "poe verdict v2"}, dict(good, statement="zz"), dict(good, statement=good["statement"][:40]),
           dict(good, statement=good["statement"] + "00"), dict(good, signature=17), dict(good, auditor={"scheme": "rsa"}),
           dict(good, auditor={"scheme": "secp256k1", "public_key": "00" * 33}), dict(good, claim={"format": "poe claim v1"}),
           dict(good, extra=1)]
    nested = copy.deepcopy(good)
    nested["claim"]["deal"]["penalty"] = {"kind": "slash", "amount": 2.5}
    bad.append(nested)
    for doc in bad:
        with pytest.raises(PoEError) as info:
            settle([doc], _deal(), TRUSTED)
        assert info.value.exit_code in (1, 3), doc
