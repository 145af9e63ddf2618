"""Regressions for holes found in the attack run of issue 10, each named after the attack."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import pytest
from click.testing import CliRunner

from poe.audit.verifier import audit
from poe.cli import main
from poe.errors import EncodingError, InputError, SignatureError
from poe.protocol.attestation import Envelope
from poe.protocol.challenge import DEFAULT_UNIFORM, Challenge
from poe.provider.attest import make_claim
from poe.provider.respond import open_targets

from .test_audit import BEACON, SERVICE, executions, provide  # noqa: F401 (fixture)


def test_challenge_with_its_uniform_list_emptied_is_refused_by_the_auditors_policy(tmp_path, executions):  # noqa: F811
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    ch = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 16)
    emptied = dataclasses.replace(ch, uniform=())
    emptied.matches(claim)  # the draw is a prefix sequence: the file alone cannot tell
    openings = open_targets(store, claim, ch)
    with pytest.raises(EncodingError, match="policy asks for at least 16"):
        audit(claim, emptied, openings, SERVICE, deal=claim.deal, min_uniform=16)
    assert audit(claim, ch, openings, SERVICE, deal=claim.deal, min_uniform=16).verdict == "ACCEPT"


def test_claim_over_an_attestation_with_a_tampered_signature_is_refused(tmp_path, executions):  # noqa: F811
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    store.close()
    forged = dataclasses.replace(claim.envelope, signature=bytes(a ^ (i == 5) for i, a in enumerate(claim.envelope.signature)))
    with pytest.raises(SignatureError):
        make_claim(forged, claim.deal)
    (tmp_path / "att.json").write_text(forged.dumps())
    (tmp_path / "deal.json").write_text(json.dumps(claim.deal.to_json()))
    r = CliRunner().invoke(main, ["claim", str(tmp_path / "att.json"), "--deal", str(tmp_path / "deal.json")])
    assert r.exit_code == 1 and "Traceback" not in r.stderr


def test_claim_whose_envelope_drops_the_cost_models_engine_section_is_refused(tmp_path, executions):  # noqa: F811
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    doc = claim.to_json()
    del doc["attestation"]["cost_model"]["engine"]
    from poe.protocol.claim import Claim

    with pytest.raises(EncodingError):
        Claim.from_json(doc)
    with pytest.raises(InputError):
        Envelope.from_json(doc["attestation"])


def test_deal_without_a_penalty_is_refused_not_defaulted(tmp_path, executions):  # noqa: F811
    claim, _ = provide(str(tmp_path / "p.poe"), executions)
    doc = claim.deal.to_json()
    del doc["penalty"]
    from poe.protocol.deal import Deal

    with pytest.raises(EncodingError, match="penalty"):
        Deal.from_json(doc)


@pytest.mark.parametrize("bad", [-1, 0.5, 2**64, float("inf"), "3", True])
def test_challenge_with_an_epoch_out_of_range_or_of_the_wrong_type_is_an_input_error(tmp_path, executions, bad):  # noqa: F811
    claim, _ = provide(str(tmp_path / "p.poe"), executions)
    doc = Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 2).to_json()
    doc["epoch"] = bad
    with pytest.raises(EncodingError):
        Challenge.from_json(doc)


def test_openings_whose_integers_are_x_plus_a_half_are_refused(tmp_path, executions):  # noqa: F811
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    from poe.protocol.openings import Opening

    o = open_targets(store, claim, Challenge.draw(claim, BEACON, Fraction(1, 20), Fraction(1, 1000), 1))[0].to_json()
    with pytest.raises(EncodingError):
        Opening.from_json(dict(o, index=o["index"] + 0.5))


def _cli_provider(tmp_path, executions):  # noqa: F811
    """A provider's store, its claim, the deal and module as files, and a challenge drawn by the
    CLI's defaults (ch.json); returns the CLI runner."""
    claim, store = provide(str(tmp_path / "p.poe"), executions)
    store.close()
    (tmp_path / "claim.json").write_text(json.dumps(claim.to_json()))
    (tmp_path / "deal.json").write_text(json.dumps(claim.deal.to_json()))
    (tmp_path / "m.wasm").write_bytes(SERVICE.main)
    run = lambda *a: CliRunner().invoke(main, list(a))  # noqa: E731
    assert run("challenge", str(tmp_path / "claim.json"), "--beacon", BEACON.hex(), "--out", str(tmp_path / "ch.json")).exit_code == 0
    return run


def test_audit_out_refuses_to_overwrite_and_writes_nothing_into_a_missing_directory(tmp_path, executions):  # noqa: F811
    run = _cli_provider(tmp_path, executions)
    assert run("respond", str(tmp_path / "p.poe"), str(tmp_path / "claim.json"), str(tmp_path / "ch.json"), "--out", str(tmp_path / "o.json")).exit_code == 0
    args = [str(tmp_path / "claim.json"), str(tmp_path / "ch.json"), str(tmp_path / "o.json"), "--deal", str(tmp_path / "deal.json"), "--module", str(tmp_path / "m.wasm")]
    (tmp_path / "v.json").write_text("precious")
    r = run("audit", *args, "--out", str(tmp_path / "v.json"))
    assert r.exit_code == 3 and (tmp_path / "v.json").read_text() == "precious"
    r = run("audit", *args, "--out", str(tmp_path / "missing" / "v.json"))
    assert r.exit_code == 3 and "directory does not exist" in r.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".poe-")] == []


def test_cli_audit_refuses_a_challenge_whose_uniform_list_was_emptied_by_default(tmp_path, executions):  # noqa: F811
    # The auditor's policy defaults to what `poe challenge` draws, so a file cut short is refused
    # without the auditor having to remember --uniform.
    run = _cli_provider(tmp_path, executions)
    ch = json.loads((tmp_path / "ch.json").read_text())
    assert len(ch["uniform"]) == DEFAULT_UNIFORM
    (tmp_path / "cut.json").write_text(json.dumps(dict(ch, uniform=[])))
    assert run("respond", str(tmp_path / "p.poe"), str(tmp_path / "claim.json"), str(tmp_path / "cut.json"), "--out", str(tmp_path / "o.json")).exit_code == 0
    args = [str(tmp_path / "claim.json"), str(tmp_path / "cut.json"), str(tmp_path / "o.json"), "--deal", str(tmp_path / "deal.json"), "--module", str(tmp_path / "m.wasm")]
    r = run("audit", *args)
    assert r.exit_code == 3 and "policy asks for at least" in r.stderr
    assert run("audit", *args, "--uniform", "0").exit_code == 0  # an auditor may opt out, knowingly
