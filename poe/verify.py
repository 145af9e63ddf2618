"""The verifier's public API: what an auditor's or a customer's own program needs.

    from poe.verify import Claim, Challenge, Deal, Openings, audit, load_json
    deal = Deal.from_json(load_json("deal.json"))
    claim = Claim.from_json(load_json("claim.json"))
    challenge = Challenge.draw(claim, beacon, Fraction(1, 100), Fraction(1, 1000), 16)
    ...
    verdict = audit(claim, challenge, list(openings.openings), Service(wasm), deal=deal, states=openings.states)

Everything here is pure or reads only what it is given; wasmtime is imported when a segment is
re-executed, py-ecc when a signature is checked. Failures raise `poe.errors` types, never a
silent False.
"""

from __future__ import annotations

import json
from typing import Any

from poe.audit.chain import check_state_chain
from poe.audit.fraud import check_fraud_proof, fraud_proof_of
from poe.audit.reexec import LocalPool, Mapper
from poe.audit.settle import settle
from poe.audit.verifier import audit
from poe.errors import EncodingError, InputError
from poe.formats.moduleset import Service
from poe.formats.record import Record
from poe.merkle.hasher import Root
from poe.merkle.verify import ConsistencyProof, InclusionProof, RangeProof, verify_consistency, verify_inclusion, verify_range
from poe.protocol.attestation import Envelope, Statement, verify_chain, verify_envelope, verify_envelopes
from poe.protocol.challenge import Challenge, samples_needed
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.protocol.openings import Opening, Openings
from poe.protocol.proofs import check_proof_bundle
from poe.protocol.verdict import SignedVerdict, Verdict

__all__ = [
    "load_json", "get_scheme",
    "Deal", "Claim", "Challenge", "Opening", "Openings", "Verdict", "SignedVerdict", "Envelope", "Statement",
    "Service", "Record", "Root", "InclusionProof", "ConsistencyProof", "RangeProof",
    "samples_needed", "audit", "Mapper", "LocalPool", "check_state_chain", "check_fraud_proof", "fraud_proof_of",
    "verify_envelope", "verify_envelopes", "verify_chain", "verify_inclusion", "verify_consistency", "verify_range", "check_proof_bundle",
    "settle",
]


def load_json(path: str) -> Any:
    """A JSON document from a file, or an InputError/EncodingError that says why not."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EncodingError(f"{path} is not valid JSON ({exc})") from None


def get_scheme(name: str) -> Any:
    """The signature scheme called `name` ("bls12-381" or "secp256k1"); loads its backend."""
    from poe.crypto.schemes import get_scheme as load

    return load(name)
