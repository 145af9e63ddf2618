"""A seeded mutation fuzzer over claims, challenges and openings: every changed document is
refused with a poe error (never an internal one), or, if it still audits ACCEPT, decodes to the
very objects the original did (its meaning did not change)."""

from __future__ import annotations

import copy
import importlib.util
import json
import random

from poe.audit.verifier import audit
from poe.errors import InternalError, PoEError
from poe.protocol.challenge import Challenge
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.protocol.openings import Openings

from .conftest import ROOT
from .test_audit import SERVICE

ITERATIONS = 300
_HUGE = [10**30, 2**64, 2**64 - 1, -1, 10**400]


def _generator():
    spec = importlib.util.spec_from_file_location("poe_vector_generator", ROOT / "vectors" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def _containers(doc, path=()):
    """(path, container) for every object and array in a document."""
    yield path, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        if isinstance(v, (dict, list)):
            yield from _containers(v, path + (k,))


def _mutate(rng: random.Random, doc) -> str:
    """Change one place in `doc` in one of the ways a hostile or broken file would; say how."""
    path, node = rng.choice([c for c in _containers(doc) if c[1]] or [((), doc)])
    key = rng.choice(list(node) if isinstance(node, dict) else list(range(len(node))))
    value = node[key]
    choices = ["drop", "null", "nest", "bool", "string", "extra"]
    if isinstance(value, int) and not isinstance(value, bool):
        choices += ["half", "float", "huge", "inf", "neg"]
    if isinstance(value, str):
        choices += ["nibble", "space", "upper", "truncate"]
    how = rng.choice(choices)
    if how == "drop":
        if isinstance(node, dict):
            del node[key]
        else:
            node.pop(key)
    elif how == "extra":
        if isinstance(node, dict):
            node["unexpected"] = 1
        else:
            node.append(copy.deepcopy(value))
    else:
        node[key] = {
            "null": None, "nest": [value], "bool": True, "string": str(value) if not isinstance(value, str) else value + "0",
            "half": value + 0.5 if isinstance(value, int) else 0, "float": float(value) if isinstance(value, int) else 0,
            "huge": rng.choice(_HUGE), "inf": float("inf"), "neg": -1 - (value if isinstance(value, int) else 0),
            "nibble": (("1" if value[:1] != "1" else "2") + value[1:]) if isinstance(value, str) else "",
            "space": (value[:2] + " " + value[2:]) if isinstance(value, str) else "",
            "upper": value.upper() if isinstance(value, str) else "",
            "truncate": value[:-2] if isinstance(value, str) else "",
        }[how]
    return f"{how} at {'/'.join(map(str, path + (key,)))}"


def test_mutated_claims_challenges_and_openings_are_refused_or_mean_the_same():
    gen = _generator()
    vector = json.loads((ROOT / "vectors" / "audit" / "honest_accept.json").read_text())
    assert gen.check_audit(vector) == "ACCEPT"
    deal = Deal.from_json(vector["claim"]["deal"])
    original = (Claim.from_json(vector["claim"]), Challenge.from_json(vector["challenge"]))
    doc_openings = {"format": "poe openings v1", "claim_id": original[0].claim_id.hex(), "seed": original[1].seed.hex(),
                    "openings": vector["openings"]}
    original_openings = Openings.from_json(doc_openings)
    rng = random.Random(20261202)
    internal, changed_accepts, refused = [], [], 0
    for _ in range(ITERATIONS):
        docs = {"claim": copy.deepcopy(vector["claim"]), "challenge": copy.deepcopy(vector["challenge"]), "openings": copy.deepcopy(doc_openings)}
        part = rng.choice(list(docs))
        what = f"{part}: " + _mutate(rng, docs[part])
        try:
            claim, challenge = Claim.from_json(docs["claim"]), Challenge.from_json(docs["challenge"])
            answer = Openings.from_json(docs["openings"])
            answer.answers(claim.claim_id, challenge.seed)
            verdict = audit(claim, challenge, list(answer.openings), SERVICE, deal=deal, states=answer.states,
                            min_uniform=len(original[1].uniform)).verdict  # the auditor's policy, not the file's
        except InternalError as exc:
            internal.append((what, exc.message))
            continue
        except PoEError:
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - what this test exists to find
            internal.append((what, f"{type(exc).__name__}: {exc}"))
            continue
        if verdict == "ACCEPT" and ((claim, challenge) != original or answer != original_openings):
            changed_accepts.append(what)
        elif verdict != "ACCEPT":
            refused += 1
    assert internal == [], internal
    assert changed_accepts == [], changed_accepts
    assert refused > ITERATIONS // 2  # the fuzzer really changes meanings, and they are caught
