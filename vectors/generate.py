#!/usr/bin/env python3
"""Generate the byte-format vectors under vectors/ (run from anywhere: python3 vectors/generate.py).

Kinds written:
  execution/   module + invocation under a pinned cost model -> the exact record bytes
  records/     record encodings: canonical ones, and named mutations that must be refused
  invocation/  canonical invocation encodings with their input digest, and named mutations
  attestation/ signed statements and envelopes for both schemes (deterministic keys), and named
               mutations: tampered root or totals, wrong key, replay, broken chain, non-canonical
               encoding, infinity public key, malformed envelope
  audit/       claims, challenges, openings, verdicts and fraud proofs of a small honest and a
               small cheating provider, and named mutations (wrong amount, missing opening,
               unanswered target, tampered challenge)
  merkle/      sum-tree roots for sizes 0..20 and large sizes, inclusion and consistency proofs,
               and named mutations of them (bit flip, wrong index, truncation, garbage, swapped
               roots, sums off by one, sums that overflow)
  state/       stateful mode: state headers and their roots, memory images and their BLAKE3,
               a lineage of stateful records, state bundles, and named mutations of them
  settlement/  signed verdicts and the payouts they settle to, and named mutations of them
  bill/        customers' bills (spec §14.4) against a signed statement of version 2, over
               synthetic records, and named lies, each refused
  request/     signed customer requests (EIP-712 typed data, spec §14): an honest one with its
               digest and the typed data a wallet signs, and named mutations, each refused
  eip712/      EIP-712's own worked example (its Mail message: every intermediate hash, the
               digest, and the signature with its key), published values typed in from the EIP
               rather than computed here, and named mutations poe's hashing must refuse

Each file is {"desc", inputs..., "expect": "ok" | <error code>}. DIGEST folds every vector file
into one BLAKE3 digest so that an unintended change shows up in review. Changing a vector is a
protocol change: bump the relevant version and say so.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import blake3  # noqa: E402

from poe import CostModel, Executor, Invocation, Limits, Record, Service, Value  # noqa: E402
from poe.errors import PoEError  # noqa: E402

MODULES = HERE / "modules"
# Small limits keep the hostile cases fast; they are part of the pinned cost model.
LIMITS = Limits(fuel=50_000_000, memory_pages=64, output_bytes=64 * 1024)

# name -> (description, main module, links, invocation spec)
EXECUTION_CASES: dict[str, tuple[str, str, dict[str, str], dict]] = {
    "csv_agg_small": ("Rust CSV aggregation of 21 rows from stdin, 2 malformed", "csv_agg.wasm", {}, {"argv": ["csv_agg"], "stdin": "data/sales_small.csv"}),
    "csv_agg_filter": ("Rust CSV aggregation with a region filter in argv", "csv_agg.wasm", {}, {"argv": ["csv_agg", "north"], "stdin": "data/sales_small.csv"}),
    "csv_agg_10k": ("Rust CSV aggregation of 10,000 rows", "csv_agg.wasm", {}, {"argv": ["csv_agg"], "stdin": "data/sales_10k.csv"}),
    "wordfreq_file": ("C program reading a file from the preopened directory", "wordfreq.wasm", {}, {"argv": ["wordfreq", "words.txt"], "files": {"words.txt": "data/words.txt"}}),
    "wordfreq_nested_path": ("C program reading a file in a subdirectory via ./", "wordfreq.wasm", {}, {"argv": ["wordfreq", "./in/words.txt"], "files": {"in/words.txt": "data/words.txt"}}),
    "wordfreq_missing_file": ("C program whose input file is absent: exit code 2", "wordfreq.wasm", {}, {"argv": ["wordfreq", "absent.txt"]}),
    "entropy_clock_seed0": ("random_get and clocks under the all-zero seed", "entropy_clock.wasm", {}, {"argv": ["entropy_clock"]}),
    "entropy_clock_seed1": ("random_get under another seed, with an environment variable", "entropy_clock.wasm", {}, {"argv": ["entropy_clock", "x"], "env": ["GREETING=hello"], "seed": "01" * 32}),
    "funcs_add": ("typed export add(i32, i32)", "funcs.wasm", {}, {"export": "add", "params": [["i32", "2"], ["i32", "40"]]}),
    "funcs_mul64_negative": ("typed export mul64 with a negative i64", "funcs.wasm", {}, {"export": "mul64", "params": [["i64", "-3"], ["i64", "7"]]}),
    "funcs_fdiv": ("typed export fdiv(f64, f64)", "funcs.wasm", {}, {"export": "fdiv", "params": [["f64", "1"], ["f64", "3"]]}),
    "funcs_work": ("compute loop of 100,000 iterations", "funcs.wasm", {}, {"export": "work", "params": [["i32", "100000"]]}),
    "funcs_store_sum": ("memory.grow within limits through the instrumented guard", "funcs.wasm", {}, {"export": "store_sum", "params": [["i32", "20000"]]}),
    "funcs_nan": ("NaN result is canonicalised", "funcs.wasm", {}, {"export": "nan_bits"}),
    "loop_out_of_fuel": ("infinite loop ends out of fuel", "loop.wasm", {}, {}),
    "membomb_memory_limit": ("memory.grow past the limit ends with memory-limit", "membomb.wasm", {}, {}),
    "membomb_c_memory_limit": ("C malloc bomb ends with memory-limit", "membomb_c.wasm", {}, {"argv": ["membomb"]}),
    "recurse_stack_overflow": ("unbounded recursion is a stack-overflow trap", "recurse.wasm", {}, {}),
    "trap_div0": ("integer division by zero trap", "trap.wasm", {}, {"export": "div0", "params": [["i32", "7"]]}),
    "trap_oob": ("out-of-bounds load trap", "trap.wasm", {}, {"export": "oob"}),
    "bigout_output_limit": ("endless stdout ends with output-limit", "bigout.wasm", {}, {"argv": ["bigout"]}),
    "exit_code_7": ("proc_exit(7) is recorded as exit(7)", "exit_code.wasm", {}, {"argv": ["exit_code", "7"]}),
    "linked_run": ("multi-module service: main imports from a linked library", "linked_main.wasm", {"mathlib": "mathlib.wasm"}, {"export": "run", "params": [["i32", "5"]]}),
    "funcs_work_requested": ("a customer's request with a budget above what the call needs: it runs to the end, and the record commits the request",
                             "funcs.wasm", {}, {"export": "work", "params": [["i32", "1000"]], "request": {"fuel_budget": 1_000_000, "sequence": 1}}),
    "funcs_work_over_budget": ("a customer's request whose fuel budget runs out: out-of-fuel at the budget, not the cost model's limit",
                               "funcs.wasm", {}, {"export": "work", "params": [["i32", "100000"]], "request": {"fuel_budget": 20_000, "sequence": 2}}),
}


def build_invocation(spec: dict) -> Invocation:
    def read(rel: str) -> bytes:
        return (MODULES / rel).read_bytes()

    inv = Invocation.build(
        spec.get("export", "_start"),
        params=[Value.parse(t, v) for t, v in spec.get("params", [])],
        argv=spec.get("argv", []),
        env=spec.get("env", []),
        stdin=read(spec["stdin"]) if "stdin" in spec else b"",
        files={name: read(rel) for name, rel in spec.get("files", {}).items()},
        seed=bytes.fromhex(spec.get("seed", "00" * 32)),
    )
    if "request" in spec:
        inv = _requested(inv, **spec["request"])
    return inv


def _requested(inv: Invocation, *, fuel_budget: int, sequence: int) -> Invocation:
    """``inv`` as the answer to a request the vectors' customer signed (request/honest's key)."""
    from poe.crypto.schemes import get_scheme
    from poe.protocol.request import answer, sign_request

    k1 = get_scheme("secp256k1")
    signed = sign_request(k1.generate_key(REQUEST_KEY_SEED), chain_id=1, deal=bytes.fromhex("d0" * 32), sequence=sequence,
                          invocation=inv.call_digest, fuel_budget=fuel_budget, not_before=0, not_after=9)
    return answer(inv, signed)


def _job_step(inv: Invocation, *, step: int) -> Invocation:
    """``inv`` as step `step` of a 5-step job the vectors' customer signed (request/job's key)."""
    from poe.crypto.schemes import get_scheme
    from poe.protocol.request import answer, sign_request

    k1 = get_scheme("secp256k1")
    signed = sign_request(k1.generate_key(REQUEST_KEY_SEED), chain_id=1, deal=bytes.fromhex("d0" * 32), sequence=40,
                          invocation=inv.call_digest, fuel_budget=1_000_000, not_before=0, not_after=9, steps=5)
    return answer(inv, signed, step)


def build_service(module: str, links: dict[str, str]) -> Service:
    return Service((MODULES / module).read_bytes(), {n: (MODULES / m).read_bytes() for n, m in links.items()}, name=module)


def execution_vectors() -> dict[str, dict]:
    cm = CostModel.current(LIMITS)
    out = {}
    for name, (desc, module, links, spec) in EXECUTION_CASES.items():
        service = build_service(module, links)
        inv = build_invocation(spec)
        e = Executor(service, cm).run(inv, index=len(out))
        out[name] = {
            "desc": desc,
            "module": module,
            "links": links,
            "invocation": spec,
            "index": len(out),
            "cost_model": cm.to_json(),
            "cost_model_digest": cm.digest.hex(),
            "expect": "ok",
            "record": e.record_bytes.hex(),
            "record_fields": e.record.to_json(),
        }
    return out


def _base_record() -> Record:
    from poe import Outcome

    return Record(
        index=41, outcome=Outcome.EXIT, outcome_code=3, fuel=1_000_003, peak_pages=18, input_bytes=2048,
        output_bytes=77, host_calls=12, module_digest=bytes(range(32)), cost_model_digest=bytes(range(32, 64)),
        input_digest=b"\xaa" * 32, output_digest=b"\xbb" * 32, io_digest=b"\xcc" * 32,
    )


def record_vectors() -> dict[str, dict]:
    raw = _base_record().encode()

    def mutated(*edits: tuple[int, bytes]) -> str:
        b = bytearray(raw)
        for offset, value in edits:
            b[offset : offset + len(value)] = value
        return bytes(b).hex()

    (mem,) = struct.unpack_from("<Q", raw, 32)
    (fuel,) = struct.unpack_from("<Q", raw, 16)
    cases = {
        "canonical": ("a canonical exit record", raw.hex(), "ok"),
        "truncated": ("truncation: last byte missing", raw[:-1].hex(), "encoding.malformed"),
        "trailing_garbage": ("one extra byte after the record", (raw + b"\x00").hex(), "encoding.malformed"),
        "future_version": ("version field bumped to 2", mutated((0, struct.pack("<H", 2))), "encoding.malformed"),
        "reserved_byte_set": ("bit flip in the reserved byte after the outcome", mutated((3, b"\x01")), "encoding.malformed"),
        "reserved_word_set": ("bit flip in the reserved word after peak pages", mutated((28, b"\x80")), "encoding.malformed"),
        "unknown_outcome": ("outcome byte out of range", mutated((2, b"\x09")), "encoding.malformed"),
        "mem_off_by_one": ("mem field one more than peak pages x fuel", mutated((32, struct.pack("<Q", mem + 1))), "encoding.malformed"),
        "fuel_off_by_one": ("fuel one more, mem left as it was: no longer consistent", mutated((16, struct.pack("<Q", fuel + 1))), "encoding.malformed"),
        "ok_with_code": ("outcome ok carrying a code", mutated((2, b"\x00")), "encoding.malformed"),
        "trap_kind_unknown": ("trap with an unknown trap kind", mutated((2, b"\x02"), (4, struct.pack("<I", 999))), "encoding.malformed"),
    }
    return {name: {"desc": d, "record": hexed, "expect": e} for name, (d, hexed, e) in cases.items()}


def invocation_vectors() -> dict[str, dict]:
    inv = Invocation.build(
        "_start", argv=["prog", "--flag", "ü"], env=["A=1", "B="], stdin=b"line one\nline two\n",
        files={"a.txt": b"alpha", "dir/b.txt": b"beta"}, seed=bytes(range(32)),
    )
    payloads = {p.digest.hex(): p.data.hex() for p in inv.blobs()}
    raw = inv.encoded

    def case(desc: str, data: bytes, expect: str, extra: dict | None = None) -> dict:
        d = {"desc": desc, "invocation": data.hex(), "payloads": payloads, "expect": expect}
        if extra:
            d.update(extra)
        return d

    a = raw.index(b"a.txt")
    flipped_payload = dict(payloads)
    flipped_payload[inv.stdin.digest.hex()] = b"line one\nline tw0\n".hex()
    out = {
        "canonical": case("argv, env, stdin, two files and a seed", raw, "ok", {"input_digest": inv.digest.hex(), "payload_bytes": inv.payload_bytes}),
        "truncated": case("truncation: seed cut short", raw[:-5], "encoding.malformed"),
        "trailing_garbage": case("extra byte after the seed", raw + b"\x00", "encoding.malformed"),
        "future_version": case("version byte bumped", b"\x02" + raw[1:], "encoding.malformed"),
        "file_escapes_directory": case("file name rewritten to ../x.txt", raw[: a - 2] + struct.pack("<H", 7) + b"../x.txt"[:7] + raw[a + 5 :], "encoding.malformed"),
    }
    requested = _requested(inv, fuel_budget=5_000_000, sequence=3)
    req_raw = requested.encoded
    out["requested"] = case("version 2: the same call answering a customer's signed request (its block after the seed)", req_raw, "ok",
                            {"input_digest": requested.digest.hex(), "call_digest": requested.call_digest.hex(), "payload_bytes": requested.payload_bytes})
    out["requested_block_truncated"] = case("version 2 with its request block cut short", req_raw[:-1], "encoding.malformed")
    out["version_3"] = case("version byte 3 over a version-1 body: the job block a version-3 invocation ends with is missing",
                            b"\x03" + raw[1:], "encoding.malformed")
    out["version_4"] = case("a version this format does not have", b"\x04" + raw[1:], "encoding.malformed")
    step = _job_step(inv, step=2)
    out["job_step"] = case("version 3: step 2 of a customer's signed job of 5 steps (the job block and the step number after the seed)",
                           step.encoded, "ok", {"input_digest": step.digest.hex(), "call_digest": step.call_digest.hex(),
                                                "payload_bytes": step.payload_bytes})
    out["job_step_truncated"] = case("version 3 with its step number cut short", step.encoded[:-1], "encoding.malformed")
    swapped = case("stdin payload does not match its digest", raw, "encoding.malformed")
    swapped["payloads"] = flipped_payload
    out["payload_swapped"] = swapped
    return out


def synthetic_record(i: int) -> bytes:
    """Leaf i of the Merkle vectors: a valid record whose every field is a fixed function of i."""
    from poe import Outcome

    mix = blake3.blake3(struct.pack("<Q", i), derive_key_context="poe 2026-11 synthetic record v1").digest(length=160)
    return Record(
        index=i, outcome=Outcome.OK, outcome_code=0, fuel=1 + int.from_bytes(mix[:4], "little"),
        peak_pages=int.from_bytes(mix[4:6], "little") % 300, input_bytes=int.from_bytes(mix[6:9], "little"),
        output_bytes=int.from_bytes(mix[9:12], "little"), host_calls=mix[12], module_digest=mix[32:64],
        cost_model_digest=mix[64:96], input_digest=mix[96:128], output_digest=mix[128:160], io_digest=mix[:32],
    ).encode()


def merkle_vectors() -> dict[str, dict]:
    from poe.merkle.build import Tree
    from poe.merkle.hasher import Node, Sums, leaf
    from poe.merkle.verify import ConsistencyProof, InclusionProof

    out: dict[str, dict] = {}
    leaves = [synthetic_record(i) for i in range(20)]
    out["leaves"] = {
        "desc": "records 0..19 of the synthetic sequence (vectors/generate.py: synthetic_record) with their leaves",
        "records": [r.hex() for r in leaves],
        "leaves": [leaf(r).encode().hex() for r in leaves],
        "expect": "ok",
    }
    for n in list(range(21)) + [1000, 4096, 65537]:
        root = Tree([leaf(synthetic_record(i)) for i in range(n)]).root
        out[f"root_{n:05d}"] = {"desc": f"root of the first {n} synthetic records", "size": n, "root": root.to_json(), "expect": "ok"}

    def bundle(desc, record, proof, root, expect):
        return {"desc": desc, "kind": "inclusion", "record": record.hex(), "proof": proof, "root": root.to_json(), "expect": expect}

    t13 = Tree([leaf(r) for r in leaves[:13]])
    good = InclusionProof(6, 13, tuple(t13.inclusion_path(6)))
    raw = good.encode()
    for n, i in ((1, 0), (2, 1), (7, 6), (13, 6), (16, 0), (20, 19)):
        t = Tree([leaf(r) for r in leaves[:n]])
        out[f"inclusion_n{n}_i{i}"] = bundle(f"leaf {i} of a tree of {n}", leaves[i], InclusionProof(i, n, tuple(t.inclusion_path(i))).encode().hex(), t.root, "ok")
    flipped = bytearray(raw)
    flipped[27 + 80 + 5] ^= 0x01
    sib = good.path[0]
    plus_one = (Node(sib.hash, Sums(sib.sums.fuel + 1, sib.sums.mem, sib.sums.io)),) + good.path[1:]
    overflow = (Node(sib.hash, Sums((1 << 128) - 1, 0, 0)),) + good.path[1:]
    r13 = t13.root
    mutations = {
        "inclusion_bit_flip_in_sibling": ("bit flip in the second sibling's hash", leaves[6], bytes(flipped).hex(), r13, "merkle.root-mismatch"),
        "inclusion_wrong_index": ("index 7 claimed for leaf 6's path", leaves[6], InclusionProof(7, 13, good.path).encode().hex(), r13, "merkle.root-mismatch"),
        "inclusion_other_leaf": ("leaf 5's record with leaf 6's proof", leaves[5], raw.hex(), r13, "merkle.root-mismatch"),
        "inclusion_truncated_bytes": ("last byte of the proof cut off", leaves[6], raw[:-1].hex(), r13, "encoding.malformed"),
        "inclusion_truncated_path": ("last sibling dropped, count adjusted", leaves[6], InclusionProof(6, 13, good.path[:-1]).encode().hex(), r13, "merkle.inclusion-invalid"),
        "inclusion_extra_garbage": ("a byte of garbage after the proof", leaves[6], (raw + b"\x00").hex(), r13, "encoding.malformed"),
        "inclusion_extra_entry": ("one sibling too many", leaves[6], InclusionProof(6, 13, good.path + good.path[:1]).encode().hex(), r13, "merkle.inclusion-invalid"),
        "inclusion_sum_off_by_one": ("first sibling's fuel sum one higher", leaves[6], InclusionProof(6, 13, plus_one).encode().hex(), r13, "merkle.root-mismatch"),
        "inclusion_sums_overflow": ("first sibling's fuel sum at 2^128 - 1", leaves[6], InclusionProof(6, 13, overflow).encode().hex(), r13, "merkle.inclusion-invalid"),
        "inclusion_index_outside": ("index equal to the tree size", leaves[6], InclusionProof(13, 13, good.path).encode().hex(), r13, "merkle.inclusion-invalid"),
        "inclusion_inflated_root_totals": ("root io total one higher", leaves[6], raw.hex(), type(r13)(13, r13.hash, Sums(r13.sums.fuel, r13.sums.mem, r13.sums.io + 1)), "merkle.root-mismatch"),
    }
    for name, (desc, rec, proof, root, expect) in mutations.items():
        out[name] = bundle(desc, rec, proof, root, expect)

    def cbundle(desc, old, new, proof, expect):
        return {"desc": desc, "kind": "consistency", "old_root": old.to_json(), "new_root": new.to_json(), "proof": proof, "expect": expect}

    roots = {n: Tree([leaf(r) for r in leaves[:n]]).root for n in range(21)}
    t20 = Tree([leaf(r) for r in leaves])
    for m, n in ((1, 2), (3, 7), (4, 8), (6, 13), (8, 20), (13, 20), (20, 20)):
        tn = Tree([leaf(r) for r in leaves[:n]])
        path = tuple(tn.consistency_path(m)) if m != n else ()
        out[f"consistency_{m}_{n}"] = cbundle(f"tree of {n} extends tree of {m}", roots[m], roots[n], ConsistencyProof(m, n, path).encode().hex(), "ok")
    cp = ConsistencyProof(6, 20, tuple(t20.consistency_path(6)))
    last = cp.path[-1]
    cmut = {
        "consistency_swapped_roots": ("old and new roots swapped", roots[20], roots[6], ConsistencyProof(6, 20, cp.path).encode().hex(), "merkle.consistency-invalid"),
        "consistency_truncated": ("last entry dropped, count adjusted", roots[6], roots[20], ConsistencyProof(6, 20, cp.path[:-1]).encode().hex(), "merkle.consistency-invalid"),
        "consistency_sum_off_by_one": ("last entry's mem sum one higher", roots[6], roots[20], ConsistencyProof(6, 20, cp.path[:-1] + (Node(last.hash, Sums(last.sums.fuel, last.sums.mem + 1, last.sums.io)),)).encode().hex(), "merkle.root-mismatch"),
        "consistency_rewritten_history": ("old root of a different prefix (leaves 1..6)", Tree([leaf(r) for r in leaves[1:7]]).root, roots[20], cp.encode().hex(), "merkle.root-mismatch"),
        "consistency_garbage": ("a byte of garbage after the proof", roots[6], roots[20], (cp.encode() + b"\x01").hex(), "encoding.malformed"),
    }
    for name, (desc, old, new, proof, expect) in cmut.items():
        out[name] = cbundle(desc, old, new, proof, expect)
    out.update(_range_vectors(leaves, roots, t20))
    return out


def _range_vectors(leaves: list[bytes], roots: dict, t20) -> dict[str, dict]:
    """Range proofs (spec §10): the records of leaves start..end-1, the proof, the root, and the
    sums the range adds up to; with named mutations."""
    from poe.merkle.build import Tree
    from poe.merkle.hasher import Sums, leaf
    from poe.merkle.verify import RangeProof

    def rbundle(desc, records, proof, root, expect, sums=None):
        d = {"desc": desc, "kind": "range", "records": [r.hex() for r in records], "proof": proof, "root": root.to_json(), "expect": expect}
        if sums is not None:
            d["sums"] = sums.to_json()
        return d

    out = {}
    for n, a, b in ((1, 0, 1), (13, 0, 13), (13, 5, 9), (20, 7, 8), (20, 3, 17), (20, 16, 20)):
        tn = Tree([leaf(r) for r in leaves[:n]])
        total = Sums()
        for r in leaves[a:b]:
            total = total + leaf(r).sums
        out[f"range_n{n}_{a}_{b}"] = rbundle(f"leaves {a}..{b - 1} of a tree of {n}", leaves[a:b],
                                             RangeProof(a, b, tuple(tn.range_path(a, b))).encode().hex(), tn.root, "ok", total)
    good = RangeProof(3, 17, tuple(t20.range_path(3, 17)))
    out["range_leaf_left_out"] = rbundle("the last record of the range withheld", leaves[3:16], good.encode().hex(), roots[20], "merkle.range-invalid")
    out["range_other_records"] = rbundle("the range's records shifted by one", leaves[4:18], good.encode().hex(), roots[20], "merkle.root-mismatch")
    out["range_path_truncated"] = rbundle("last path entry dropped, count adjusted", leaves[3:17],
                                          RangeProof(3, 17, good.path[:-1]).encode().hex(), roots[20], "merkle.range-invalid")
    out["range_garbage"] = rbundle("a byte of garbage after the proof", leaves[3:17], (good.encode() + b"\x00").hex(), roots[20], "encoding.malformed")
    return out


def check_merkle(vector: dict) -> str:
    """What verifying a merkle/ proof vector gives: "ok" or an error code."""
    from poe.merkle.hasher import Root
    from poe.merkle.verify import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion

    try:
        if vector["kind"] == "inclusion":
            verify_inclusion(bytes.fromhex(vector["record"]), InclusionProof.decode(bytes.fromhex(vector["proof"])), Root.from_json(vector["root"]))
        elif vector["kind"] == "range":
            from poe.merkle.hasher import leaf
            from poe.merkle.verify import RangeProof, verify_range

            total = verify_range([leaf(bytes.fromhex(r)) for r in vector["records"]], RangeProof.decode(bytes.fromhex(vector["proof"])),
                                 Root.from_json(vector["root"]))
            if "sums" in vector and total.to_json() != vector["sums"]:
                return "sums differ"
        else:
            verify_consistency(Root.from_json(vector["old_root"]), Root.from_json(vector["new_root"]), ConsistencyProof.decode(bytes.fromhex(vector["proof"])))
    except PoEError as exc:
        return exc.code
    return "ok"


ATTEST_SEEDS = {"bls12-381": b"poe attestation vector key, bls12-381 v1", "secp256k1": b"poe attestation vector key, secp256k1 v1"}


def attestation_vectors() -> dict[str, dict]:
    import dataclasses

    from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest
    from poe.crypto.schemes import get_scheme
    from poe.merkle.build import Tree
    from poe.merkle.hasher import Root, Sums, leaf

    from poe.merkle.build import ANONYMOUS, BillEntry, bill_tree

    records = [synthetic_record(i) for i in range(20)]
    heads = {n: Tree([leaf(r) for r in records[:n]]).root for n in (12, 20)}
    proof = _consistency_proof(records, 12, 20)
    cm = CostModel.current(LIMITS)
    out: dict[str, dict] = {}

    def envelope(scheme, sk, st: Statement, cons: bytes | None) -> Envelope:
        pop = scheme.pop_prove(sk) if scheme.aggregatable else None
        return Envelope(st.encode(), scheme.sign(sk, st.digest), scheme.identity(st.public_key), cm.to_json(), cons, pop)

    def case(desc: str, envs: list[Envelope], expect: str, **extra) -> dict:
        d = {"desc": desc, "envelopes": [e if isinstance(e, dict) else e.to_json() for e in envs], "expect": expect}
        d.update(extra)
        return d

    for name, seed in ATTEST_SEEDS.items():
        scheme = get_scheme(name)
        sk = scheme.generate_key(seed)
        pk = scheme.public_key(sk)
        tag = "bls" if name == "bls12-381" else "secp256k1"
        st0 = Statement(name, cm.digest, b"\x11" * 32, pk, "deal-vectors", 0, 0, 12, heads[12], EMPTY_ROOT, consistency_digest(None), 1_764_000_000)
        st1 = Statement(name, cm.digest, b"\x11" * 32, pk, "deal-vectors", 1, 12, 20, heads[20], heads[12], consistency_digest(proof), 1_764_003_600)
        e0, e1 = envelope(scheme, sk, st0, None), envelope(scheme, sk, st1, proof)
        out[f"{tag}_epoch0"] = case(f"{name}: epoch 0 over 12 synthetic records", [e0], "ok", secret_key_seed=seed.decode(), statement=e0.statement_bytes.hex(), statement_digest=st0.digest.hex())
        out[f"{tag}_chain"] = case(f"{name}: epochs 0 and 1, chained by a consistency proof", [e0, e1], "ok")
        forged_root = dataclasses.replace(st1, root=Root(20, bytes(32), heads[20].sums))
        out[f"{tag}_tampered_root"] = case("root hash replaced after signing", [dataclasses.replace(e1, statement_bytes=forged_root.encode())], "attest.bad-signature")
        inflated = Root(20, heads[20].hash, Sums(heads[20].sums.fuel + 1, heads[20].sums.mem, heads[20].sums.io))
        out[f"{tag}_tampered_totals"] = case("fuel total raised by one after signing", [dataclasses.replace(e1, statement_bytes=dataclasses.replace(st1, root=inflated).encode())], "attest.bad-signature")
        out[f"{tag}_signed_inflated_totals"] = case("provider signs a head with inflated totals: the consistency proof fails", [envelope(scheme, sk, dataclasses.replace(st1, root=inflated), proof)], "merkle.root-mismatch")
        other = scheme.public_key(scheme.generate_key(b"poe attestation vector: another key v1"))
        out[f"{tag}_wrong_key"] = case("statement names another key than the one that signed", [dataclasses.replace(e0, statement_bytes=dataclasses.replace(st0, public_key=other).encode())], "attest.bad-signature")
        out[f"{tag}_replay_old_epoch"] = case("epoch 0 presented after epoch 1 was accepted", [e0], "attest.chain-broken", previous=e1.to_json())
        broken = envelope(scheme, sk, dataclasses.replace(st1, previous_root=Root(12, b"\x07" * 32, heads[12].sums)), proof)
        out[f"{tag}_broken_chain"] = case("epoch 1 claims a previous head epoch 0 never had", [e0, broken], "merkle.root-mismatch")
        trailing = dataclasses.replace(e0, statement_bytes=e0.statement_bytes + b"\x00")
        out[f"{tag}_non_canonical"] = case("statement with a trailing byte", [trailing], "encoding.malformed")
        # Statement version 2 (spec §11.1, §14.2): epoch 1 also signs its bill root.
        bill = bill_tree([BillEntry(ANONYMOUS, i, i, leaf(records[i])) for i in range(12, 20)])[1].root
        st1b = dataclasses.replace(st1, bill_root=bill)
        e1b = envelope(scheme, sk, st1b, proof)
        out[f"{tag}_billed_chain"] = case(f"{name}: epoch 1 as statement version 2, signing its bill root too, after epoch 0 in version 1",
                                          [e0, e1b], "ok", statement=e1b.statement_bytes.hex(), statement_digest=st1b.digest.hex())
        cheaper = bytearray(e1b.statement_bytes)
        cheaper[-8 - 48] ^= 0x01  # the bill root's fuel total: no longer the epoch's
        out[f"{tag}_billed_totals_differ"] = case("a bill root whose totals are not the epoch's", [e0, dataclasses.replace(e1b, statement_bytes=bytes(cheaper))],
                                                  "encoding.malformed")
    e = Envelope.loads(json.dumps(out["bls_epoch0"]["envelopes"][0]))
    st = Statement.decode(e.statement_bytes)
    inf = dataclasses.replace(st, public_key=bytes([0xC0]) + bytes(47))
    out["bls_infinity_pubkey"] = case("the point at infinity as public key", [dataclasses.replace(e, statement_bytes=inf.encode(), key_id="0x" + inf.public_key.hex())], "attest.bad-key")
    bad = out["bls_epoch0"]["envelopes"][0]
    out["malformed_envelope_two_signatures"] = case("two signatures in one envelope", [dict(bad, signatures=bad["signatures"] * 2)], "encoding.malformed")
    out["malformed_envelope_payload_type"] = case("another payload type", [dict(bad, payloadType="application/json")], "encoding.malformed")
    return out


def _consistency_proof(records: list[bytes], m: int, n: int) -> bytes:
    from poe.merkle.build import Tree
    from poe.merkle.hasher import leaf
    from poe.merkle.verify import ConsistencyProof

    return ConsistencyProof(m, n, tuple(Tree([leaf(r) for r in records[:n]]).consistency_path(m))).encode()


def check_attestation(vector: dict) -> str:
    """What verifying an attestation/ vector gives: "ok" or an error code."""
    from poe.protocol.attestation import Envelope, verify_chain, verify_envelope
    from poe.crypto.schemes import get_scheme

    try:
        envs = [Envelope.loads(json.dumps(e)) for e in vector["envelopes"]]
        statements = [verify_envelope(e, get_scheme(e.statement.scheme)).statement for e in envs]
        previous = None
        if "previous" in vector:
            p = Envelope.loads(json.dumps(vector["previous"]))
            previous = verify_envelope(p, get_scheme(p.statement.scheme)).statement
        if len(statements) > 1 or previous is not None:
            verify_chain(statements, previous)
    except PoEError as exc:
        return exc.code
    return "ok"


def audit_vectors() -> dict[str, dict]:
    import dataclasses
    import tempfile
    from fractions import Fraction

    from poe import Execution, TraceStore
    from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest
    from poe.audit.verifier import audit
    from poe.provider.respond import open_targets
    from poe.protocol.challenge import Challenge
    from poe.protocol.claim import Claim
    from poe.protocol.deal import Deal
    from poe.crypto.schemes import get_scheme

    cm = CostModel.current(LIMITS)
    service = build_service("csv_agg.wasm", {})
    ex = Executor(service, cm)
    scheme = get_scheme("secp256k1")
    sk = scheme.generate_key(b"poe audit vector provider key, secp256k1 v1")
    pk = scheme.public_key(sk)
    rows = (MODULES / "data" / "sales_small.csv").read_bytes().splitlines(keepends=True)
    runs = [ex.run(Invocation.build(argv=["csv_agg"], stdin=b"".join(rows[: 2 + i % 18]), seed=i.to_bytes(32, "little")), i) for i in range(24)]
    deal = Deal.from_json({"format": "poe deal v1", "deal_id": "deal-audit-vectors", "provider": {"scheme": scheme.name, "public_key": pk.hex()},
                           "module_digest": service.digest.hex(), "cost_model_digest": cm.digest.hex(),
                           "prices": {"fuel": 1, "mem": 0, "io": 7}, "subscription": 250, "penalty": {"kind": "slash", "amount": 1000}})
    beacon = bytes(range(200, 232))

    def provider(lie) -> tuple[Claim, Challenge, list]:
        with tempfile.TemporaryDirectory() as d:
            path = f"{d}/p.poe"
            with TraceStore.create_or_open(path, cm) as store:
                store.register_service(service)
                for e in runs:
                    store.append(lie(e))
            store = TraceStore.open(path, seal=True)
            sealed = store.seal()
            st = Statement(scheme.name, cm.digest, service.digest, pk, deal.deal_id, 0, 0, 24, sealed.root, EMPTY_ROOT, consistency_digest(None), 1_764_000_000)
            claim = Claim(deal, Envelope(st.encode(), scheme.sign(sk, st.digest), scheme.identity(pk), cm.to_json(), None), deal.amount(st.totals))
            challenge = Challenge.draw(claim, beacon, Fraction(1, 4), Fraction(1, 1000), 3)
            openings = open_targets(store, claim, challenge)
            store.close()
        return claim, challenge, openings

    def case(desc, claim, challenge, openings, expect):
        return {"desc": desc, "module": "csv_agg.wasm", "deal": deal.to_json(), "claim": claim.to_json(), "challenge": challenge.to_json(),
                "openings": [o.to_json() for o in openings], "expect": expect}

    honest = provider(lambda e: e)
    cheat = provider(lambda e: Execution(dataclasses.replace(e.record, fuel=e.record.fuel * 2), e.invocation, e.output) if e.record.index % 3 == 0 else e)
    out = {
        "honest_accept": case("honest provider, 24 segments, epsilon 1/4: every sample verifies", *honest, "ACCEPT"),
        "inflated_fuel_reject": case("fuel doubled on every third segment before committing", *cheat, "REJECT"),
    }
    verdict = audit(*cheat, service, deal=deal)
    out["fraud_proof"] = {"desc": "the cheat's fraud proof: re-checkable with one re-execution", "module": "csv_agg.wasm",
                          "fraud_proof": verdict.fraud_proof, "expect": "proven"}
    claim, challenge, openings = honest
    out["wrong_amount"] = case("claimed amount one unit above price x totals + subscription",
                               Claim(claim.deal, claim.envelope, claim.amount + 1), challenge, openings, "REJECT")
    out["missing_opening"] = case("one target left unopened", claim, challenge, openings[:-1], "REFUSED")
    w = [o for o in openings if o.target.startswith("w")]
    far = next(o for o in w if o.index != w[0].index)
    swapped = [dataclasses.replace(far, target=w[0].target)] + [o for o in openings if o.target != w[0].target]
    out["unanswered_target"] = case("weighted target w0 answered with another leaf", claim, challenge, swapped, "REJECT")
    out["tampered_challenge"] = case("one weighted target dropped from the challenge", claim,
                                     dataclasses.replace(challenge, weighted=challenge.weighted[:-1]), openings, "encoding.malformed")
    return out


def check_audit(vector: dict) -> str:
    """What auditing an audit/ vector gives: the verdict, "proven", or an error code."""
    from poe.audit.fraud import check_fraud_proof
    from poe.audit.verifier import audit
    from poe.protocol.openings import Opening
    from poe.protocol.challenge import Challenge
    from poe.protocol.claim import Claim
    from poe.protocol.deal import Deal

    service = build_service(vector["module"], {})
    try:
        if "fraud_proof" in vector:
            check_fraud_proof(vector["fraud_proof"], service)
            return "proven"
        claim = Claim.from_json(vector["claim"])
        challenge = Challenge.from_json(vector["challenge"])
        return audit(claim, challenge, [Opening.from_json(o) for o in vector["openings"]], service, deal=Deal.from_json(vector["deal"])).verdict
    except PoEError as exc:
        return exc.code


def settlement_vectors() -> dict[str, dict]:
    """Signed verdicts (spec §12.4) and the payouts they settle to, with a named mutation for
    every way a verdict file could claim money its signed inputs do not imply."""
    import copy
    import tempfile

    from poe import TraceStore
    from poe.crypto.schemes import get_scheme
    from poe.protocol.deal import Deal
    from poe.protocol.verdict import Verdict
    from poe.provider.attest import make_claim, sign_epoch

    cm = CostModel.current(LIMITS)
    service = build_service("csv_agg.wasm", {})
    ex = Executor(service, cm)
    scheme = get_scheme("secp256k1")
    sk = scheme.generate_key(b"poe settlement vector provider key, secp256k1 v1")
    auditor_sk = scheme.generate_key(b"poe settlement vector auditor key, secp256k1 v1")
    stranger_sk = scheme.generate_key(b"poe settlement vector untrusted key, secp256k1 v1")
    rows = (MODULES / "data" / "sales_small.csv").read_bytes().splitlines(keepends=True)
    deal = Deal.from_json({"format": "poe deal v1", "deal_id": "deal-settlement-vectors",
                           "provider": {"scheme": scheme.name, "public_key": scheme.public_key(sk).hex()},
                           "module_digest": service.digest.hex(), "cost_model_digest": cm.digest.hex(),
                           "prices": {"fuel": 1, "mem": 0, "io": 7}, "subscription": 250, "penalty": {"kind": "slash", "amount": 1000}})
    claims = []
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/p.poe"
        for epoch in range(2):
            with TraceStore.create_or_open(path, cm) as store:
                store.register_service(service)
                for i in range(epoch * 6, epoch * 6 + 6):
                    store.append(ex.run(Invocation.build(argv=["csv_agg"], stdin=b"".join(rows[: 2 + i]), seed=i.to_bytes(32, "little")), i))
            with TraceStore.open(path, seal=True) as store:
                # Statement version 1, as these vectors were first made: settlement reads either version alike.
                claims.append(make_claim(sign_epoch(store, scheme, sk, deal.deal_id, issued_at=1_764_000_000 + epoch, billed=False), deal))
    trusted = [[scheme.name, scheme.public_key(auditor_sk).hex()]]

    def signed(claim, outcome="ACCEPT", key=auditor_sk, **kw):
        return Verdict(outcome, claim, "settlement vector", **kw).sign(scheme, key, 1_764_100_000)

    def case(desc, verdicts, expect, deal_doc=None):
        return {"desc": desc, "deal": deal_doc or deal.to_json(), "auditors": trusted, "verdicts": verdicts, "expect": expect}

    out = {
        "accept_pays_the_claim": case("an ACCEPT signed by the trusted auditor pays price x totals + subscription", [signed(claims[0])], "ok"),
        "reject_pays_the_penalty": case("a REJECT pays minus the deal's slash", [signed(claims[0], "REJECT")], "ok"),
        "refused_withholds": case("a REFUSED by the provider pays 0, withheld", [signed(claims[0], "REFUSED", refused_by="provider")], "ok"),
        "two_epochs": case("one verdict per epoch, both paid", [signed(claims[0]), signed(claims[1])], "ok"),
    }
    inflated = signed(claims[0])
    inflated["claimed_amount"] = 10**400
    inflated["claim"]["amount"] = 2**64  # the claim id covers the deal and the signed statement, not this number
    inflated["claim"].pop("breakdown")
    out["inflated_integers_pay_the_signed_amount"] = case(
        "claimed amount set to 10^400 in the verdict and 2^64 in its claim: settlement recomputes from the attestation", [inflated], "ok")
    unsigned = Verdict("ACCEPT", claims[0], "settlement vector").to_json()
    out["unsigned_verdict"] = case("a verdict without the auditor's signature", [unsigned], "encoding.malformed")
    out["untrusted_auditor"] = case("signed by a key the settler did not name", [signed(claims[0], key=stranger_sk)], "verify.failed")
    flipped = signed(claims[0], "REJECT")
    raw = bytearray.fromhex(flipped["statement"])
    raw[1] = 1
    flipped["statement"], flipped["verdict"] = raw.hex(), "ACCEPT"
    out["outcome_flipped_to_accept"] = case("REJECT rewritten to ACCEPT in the signed statement", [flipped], "attest.bad-signature")
    swapped = signed(claims[0], "REJECT")
    swapped["claim"] = copy.deepcopy(signed(claims[1])["claim"])
    out["claim_swapped"] = case("the verdict's claim replaced by another epoch's", [swapped], "encoding.malformed")
    forged = signed(claims[0])
    sig = forged["claim"]["attestation"]["signatures"][0]
    sig["sig"] = ("A" if sig["sig"][0] != "A" else "B") + sig["sig"][1:]
    out["claim_attestation_forged"] = case("the provider's signature inside the verdict's claim altered", [forged], "attest.bad-signature")
    other_terms = deal.to_json()
    other_terms["subscription"] = 251
    out["other_deal_terms"] = case("settled under a deal with other terms than the verdict's", [signed(claims[0])], "encoding.malformed", other_terms)
    out["epoch_settled_twice"] = case("two verdicts for one epoch", [signed(claims[0]), signed(claims[0], "REJECT")], "encoding.malformed")
    for vector in out.values():
        if vector["expect"] == "ok":
            vector["payouts"] = _settle_vector(vector)
    return out


def _settle_vector(vector: dict):
    from poe.audit.settle import settle
    from poe.protocol.deal import Deal

    return settle(vector["verdicts"], Deal.from_json(vector["deal"]), [(s, bytes.fromhex(k)) for s, k in vector["auditors"]])


def check_settlement(vector: dict) -> str:
    """What settling a settlement/ vector gives: "ok" (with the vector's payouts) or an error code."""
    try:
        payouts = _settle_vector(vector)
    except PoEError as exc:
        return exc.code
    return "ok" if payouts == vector.get("payouts") else "payouts differ"


def _image(pages: int, salt: int) -> bytes:
    """A deterministic memory image: mostly zero, a few patterned and a few random-looking chunks."""
    img = bytearray(pages * 65536)
    for k in range(0, len(img), 5 * 1024 + 512):
        img[k : k + 300] = bytes((k // 1024 + i * salt) & 0xFF for i in range(300))
    tail = blake3.blake3(bytes([salt])).digest(length=4096)
    img[-4096:] = tail
    return bytes(img)


def _packed(image: bytes) -> str:
    import base64
    import zlib

    return base64.b64encode(zlib.compress(image, 9)).decode()


def state_vectors() -> dict[str, dict]:
    from poe.formats.state import State, bundle_states, manifest_of, memory_root

    out: dict[str, dict] = {}
    image = _image(3, 7)
    state = State(3, 123_456_789, memory_root(image), ((0, "i32", 0xFFFF_FFFF), (2, "f64", 0x7FF8_0000_0000_0001), (5, "i64", 42)))
    raw = state.encoded
    out["header_canonical"] = {"desc": "a state: 3 pages, clock, an i32, an f64 NaN with payload and an i64 global", "kind": "header",
                               "state": raw.hex(), "root": state.root.hex(), "fields": state.to_json(), "expect": "ok"}

    def mutated(*edits: tuple[int, bytes]) -> str:
        b = bytearray(raw)
        for offset, value in edits:
            b[offset : offset + len(value)] = value
        return bytes(b).hex()

    g = 52  # first global entry
    for name, desc, hexed in (
        ("header_truncated", "truncation: last byte missing", raw[:-1].hex()),
        ("header_trailing_garbage", "one extra byte after the header", (raw + b"\0").hex()),
        ("header_future_version", "version field bumped to 2", mutated((0, struct.pack("<H", 2)))),
        ("header_reserved_set", "bit flip in the reserved field", mutated((2, b"\x01"))),
        ("header_unknown_global_type", "global type code 4", mutated((g + 4, b"\x04"))),
        ("header_globals_unsorted", "second global's index below the first's", mutated((g + 13, struct.pack("<I", 0)))),
        ("header_count_off_by_one", "global count one more than the entries", mutated((48, struct.pack("<I", 4)))),
        ("header_i32_out_of_range", "an i32 global with bits above 32", mutated((g + 5, struct.pack("<Q", 1 << 32)))),
    ):
        out[name] = {"desc": desc, "kind": "header", "state": hexed, "expect": "encoding.malformed"}
    for pages, salt in ((0, 1), (1, 2), (3, 7), (5, 9)):
        img = _image(pages, salt)
        out[f"memory_{pages}_pages"] = {"desc": f"memory commitment of a {pages}-page image: plain BLAKE3 (b3sum)", "kind": "memory",
                                        "image_zlib_b64": _packed(img), "memory": blake3.blake3(img).hexdigest(), "expect": "ok"}

    # lineages under the pinned cost model: genesis root and records
    cm = CostModel.current(LIMITS)
    counter_steps = [{"export": "add", "params": [["i64", str(k)]]} for k in (5, 6, 7)]
    counter_steps += [{"export": "grow", "params": [["i32", "2"]]}, {"export": "step"}, {"export": "trap"}, {"export": "get"}]
    lineages = {
        "lineage_counter": ("counter.wasm from genesis: add x3, grow, step, a trap, get; each record chains to the next",
                            "counter.wasm", counter_steps),
        "lineage_entropy_clock": ("a C program's _start run 3 times on one instance: random bytes keyed by seed and pre-state, "
                                  "clocks continuing from the lineage's clock", "entropy_clock.wasm", [{"argv": ["entropy_clock"]}] * 3),
    }
    for name, (desc, module, steps) in lineages.items():
        ex = Executor(Service((MODULES / module).read_bytes()), cm)
        with ex.session(tracking="rehash") as s:
            genesis = s.state
            records = [s.run(build_invocation(spec), i).record_bytes.hex() for i, spec in enumerate(steps)]
        out[name] = {"desc": desc, "kind": "lineage", "module": module, "cost_model": cm.to_json(), "genesis": genesis.encoded.hex(),
                     "genesis_root": genesis.root.hex(), "invocations": steps, "records": records, "expect": "ok"}

    # a bundle of two states over a genesis image
    g_img = _image(1, 3)
    a = bytearray(g_img)
    a[2048:2058] = b"first step"
    a += bytes(65536)
    a[70000:70004] = b"grow"
    b = bytearray(a)
    b[0:4] = b"next"
    states = [(State(2, 10, memory_root(bytes(a)), ()), bytes(a)), (State(2, 20, memory_root(bytes(b)), ()), bytes(b))]
    chunks = {}
    for _, img in states:
        for k in range(0, len(img), 1024):
            chunks[blake3.blake3(img[k : k + 1024]).digest()] = img[k : k + 1024]
    bundle = bundle_states(bytes(manifest_of(g_img)), [(st, manifest_of(img)) for st, img in states], chunks.__getitem__)
    roots = [st.root.hex() for st, _ in states]
    base = {"kind": "bundle", "genesis_zlib_b64": _packed(g_img), "roots": roots}
    out["bundle_two_states"] = {**base, "desc": "two states over a 1-page genesis: a write, a grow, then another write", "bundle": bundle, "expect": "ok"}
    import base64
    import zlib

    blob = bytearray(zlib.decompress(base64.b64decode(bundle["chunks"])))
    flipped = bytearray(blob)
    flipped[0] ^= 1
    out["bundle_chunk_bit_flip"] = {**base, "desc": "bit flip in a carried chunk", "bundle": {**bundle, "chunks": base64.b64encode(zlib.compress(bytes(flipped))).decode()},
                                    "expect": "state.mismatch"}
    out["bundle_chunk_missing"] = {**base, "desc": "the last carried chunk dropped (digest and bytes)", "expect": "state.mismatch",
                                   "bundle": {**bundle, "chunk_digests": bundle["chunk_digests"][:-64],
                                              "chunks": base64.b64encode(zlib.compress(bytes(blob[:-1024]))).decode()}}
    out["bundle_digest_list_short"] = {**base, "desc": "one digest fewer than the carried chunks", "expect": "encoding.malformed",
                                       "bundle": {**bundle, "chunk_digests": bundle["chunk_digests"][:-64]}}
    wrong = json.loads(json.dumps(bundle))
    wrong["states"][1]["state"] = states[0][0].encoded.hex()
    out["bundle_header_swapped"] = {**base, "desc": "the second state's header replaced by the first's", "bundle": wrong, "expect": "state.mismatch"}
    unsorted = json.loads(json.dumps(bundle))
    d = bytes.fromhex(unsorted["states"][0]["delta"])
    unsorted["states"][0]["delta"] = (d[36:72] + d[:36] + d[72:]).hex()
    out["bundle_delta_unsorted"] = {**base, "desc": "a delta whose entries are not ascending", "bundle": unsorted, "expect": "encoding.malformed"}
    return out


def check_state(vector: dict) -> str:
    """What checking a state/ vector gives: "ok" or an error code (and "ok" only if it matches)."""
    import base64
    import zlib

    from poe.formats.state import State, memory_root, open_bundle

    try:
        if vector["kind"] == "header":
            st = State.decode(bytes.fromhex(vector["state"]))
            return "ok" if st.root.hex() == vector["root"] and st.to_json() == vector["fields"] else "root differs"
        if vector["kind"] == "memory":
            img = zlib.decompress(base64.b64decode(vector["image_zlib_b64"]))
            return "ok" if memory_root(img).hex() == vector["memory"] else "memory differs"
        if vector["kind"] == "bundle":
            g = zlib.decompress(base64.b64decode(vector["genesis_zlib_b64"]))
            got = [st.root.hex() for st, _ in open_bundle(vector["bundle"], g)]
            return "ok" if got == vector["roots"] else "roots differ"
        if vector["kind"] == "lineage":
            cm = CostModel.from_json(vector["cost_model"])
            ex = Executor(Service((MODULES / vector["module"]).read_bytes()), cm)
            state, _ = ex.genesis()
            if state.encoded.hex() != vector["genesis"]:
                return "genesis differs"
            recs = [Record.decode(bytes.fromhex(r)) for r in vector["records"]]
            if recs[0].pre_state.hex() != vector["genesis_root"] or any(a.post_state != b.pre_state for a, b in zip(recs, recs[1:])):
                return "chain broken"
            with ex.session() as s:
                again = [s.run(build_invocation(spec), i).record_bytes.hex() for i, spec in enumerate(vector["invocations"])]
            return "ok" if again == vector["records"] else "records differ"
    except PoEError as exc:
        return exc.code
    return "unknown kind"


# EIP-712's worked example (https://eips.ethereum.org/EIPS/eip-712, its Example.js and the
# values its test prints): the published answers, which the code must reproduce.
EIP712_MAIL = {
    "types": {
        "EIP712Domain": [
            {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
        ],
        "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
        "Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person"}, {"name": "contents", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "Ether Mail", "version": "1", "chainId": 1, "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
    "message": {
        "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
        "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
        "contents": "Hello, Bob!",
    },
}
EIP712_MAIL_PUBLISHED = {
    "encode_type": "Mail(Person from,Person to,string contents)Person(string name,address wallet)",
    "type_hash": "a0cedeb2dc280ba39b857546d74f5549c3a1d7bdc2dd96bf881f76108e23dac2",
    "domain_separator": "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f",
    "hash_struct": "c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e",
    "digest": "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2",
    "secret_key_preimage": "cow",  # the example's key is keccak256("cow")
    "signature": "4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d"
                 "07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b915621c",
    "signer": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826",
}


def eip712_vectors() -> dict[str, dict]:
    """The Mail example as published, and named mutations of its typed data that must be refused
    (or, for a changed value, must change the digest)."""
    import copy

    base = {"desc": "EIP-712's Mail example: every published intermediate value, the digest and its signature",
            "typed_data": EIP712_MAIL, "published": EIP712_MAIL_PUBLISHED, "expect": "ok"}
    out = {"mail": base}

    def mutant(name: str, desc: str, change, expect: str = "encoding.malformed") -> None:
        typed = copy.deepcopy(EIP712_MAIL)
        change(typed)
        out[name] = {"desc": desc, "typed_data": typed, "published": EIP712_MAIL_PUBLISHED, "expect": expect}

    mutant("mail_extra_member", "a member the type does not declare is refused, not dropped",
           lambda t: t["message"].update(cc="Eve"))
    mutant("mail_missing_member", "a member the type declares must be present",
           lambda t: t["message"].pop("contents"))
    mutant("mail_bad_checksum", "a mixed-case address whose EIP-55 checksum is wrong",
           lambda t: t["message"]["to"].update(wallet="0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbb"))
    mutant("mail_negative_chain_id", "a uint256 that is negative", lambda t: t["domain"].update(chainId=-1))
    mutant("mail_chain_id_overflow", "a uint256 of 2^256", lambda t: t["domain"].update(chainId=2**256))
    mutant("mail_unknown_type", "a member of an undefined type",
           lambda t: t["types"]["Mail"].append({"name": "attachment", "type": "File"}))
    mutant("mail_contents_changed", "one changed character changes the digest: the published signature no longer recovers to the signer",
           lambda t: t["message"].update(contents="Hello, Bob?"), expect="digest differs")
    return out


def check_eip712(vector: dict) -> str:
    """"ok" if hashing the vector's typed data reproduces every published value and the published
    signature recovers to the published signer on both the digest and poe's own signature;
    "digest differs" if it hashes to another digest; else the error code."""
    from poe.crypto import eip712
    from poe.crypto.keccak import keccak256
    from poe.crypto.schemes import get_scheme

    typed, pub = vector["typed_data"], vector["published"]
    try:
        digest = eip712.typed_data_digest(typed)
    except PoEError as exc:
        return exc.code
    if digest.hex() != pub["digest"]:
        return "digest differs"
    types = eip712.Types(typed["types"])
    primary = typed["primaryType"]
    got = {
        "encode_type": types.encode_type(primary),
        "type_hash": types.type_hash(primary).hex(),
        "domain_separator": eip712.domain_separator(typed["domain"], types).hex(),
        "hash_struct": types.hash_struct(primary, typed["message"]).hex(),
    }
    if any(got[k] != pub[k] for k in got):
        return "intermediate differs"
    k1 = get_scheme("secp256k1")
    sk = keccak256(pub["secret_key_preimage"].encode())
    signature = bytes.fromhex(pub["signature"])
    if k1.sign_hash(sk, digest) != signature or k1.recover_hash(digest, signature) != pub["signer"]:
        return "signature differs"
    return "ok"


REQUEST_KEY_SEED = b"poe vectors: the customer of request/"


def request_vectors() -> dict[str, dict]:
    """Signed customer requests (spec §14): one honest request with its EIP-712 digest and the
    typed data a wallet signs, and named mutations of the signed document, each refused."""
    import copy

    from poe.crypto.schemes import get_scheme
    from poe.protocol.request import sign_request

    k1 = get_scheme("secp256k1")
    sk = k1.generate_key(REQUEST_KEY_SEED)
    signed = sign_request(sk, chain_id=1, deal=bytes.fromhex("d0" * 32), sequence=7, invocation=bytes.fromhex("1c" * 32),
                          fuel_budget=25_000_000, not_before=4, not_after=12)
    doc = signed.to_json()
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    sig = signed.signature
    high_s = sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([55 - sig[64]])
    out = {"honest": {"desc": "a customer's signed request: its EIP-712 digest and the typed data a wallet signs",
                      "document": doc, "digest": signed.digest.hex(), "typed_data": signed.request.typed_data(),
                      "signer": k1.identity(k1.public_key(sk)), "expect": "ok"}}

    def mutant(name: str, desc: str, change, expect: str) -> None:
        d = copy.deepcopy(doc)
        change(d)
        out[name] = {"desc": desc, "document": d, "expect": expect}

    mutant("budget_raised", "the fuel budget raised after signing", lambda d: d["request"].update(fuelBudget=25_000_001), "attest.bad-signature")
    mutant("sequence_reused", "the sequence number changed to replay an earlier request", lambda d: d["request"].update(sequence=6), "attest.bad-signature")
    mutant("window_extended", "the validity window stretched by one epoch", lambda d: d["request"].update(notAfter=13), "attest.bad-signature")
    mutant("other_chain", "the chain id of another network (a signature for chain 1 replayed on chain 5)", lambda d: d.update(chain_id=5), "attest.bad-signature")
    mutant("other_customer", "billed to another customer's address", lambda d: d["request"].update(customer="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"), "attest.bad-signature")
    mutant("high_s", "the high-s twin of the valid signature (malleable form)", lambda d: d.update(signature="0x" + high_s.hex()), "attest.bad-signature")
    mutant("truncated_signature", "a signature one byte short", lambda d: d.update(signature=d["signature"][:-2]), "encoding.malformed")
    mutant("zero_budget", "a fuel budget of 0 (pays for nothing)", lambda d: d["request"].update(fuelBudget=0), "input.invalid")
    mutant("empty_window", "notBefore after notAfter", lambda d: d["request"].update(notBefore=13), "input.invalid")
    mutant("lowercase_customer", "the customer's address not in its EIP-55 form (one encoding per document)",
           lambda d: d["request"].update(customer=d["request"]["customer"].lower()), "encoding.malformed")
    mutant("extra_member", "a member the request does not have", lambda d: d["request"].update(tip=1), "encoding.malformed")
    mutant("float_sequence", "a sequence number written as a float", lambda d: d["request"].update(sequence=7.0), "encoding.malformed")
    job = sign_request(sk, chain_id=1, deal=bytes.fromhex("d0" * 32), sequence=40, invocation=bytes.fromhex("1c" * 32),
                       fuel_budget=1_000_000, not_before=4, not_after=12, steps=5)
    out["job"] = {"desc": "a customer's signed stateful job of 5 steps (poe job v1): its EIP-712 digest and typed data",
                  "document": job.to_json(), "digest": job.digest.hex(), "typed_data": job.request.typed_data(),
                  "signer": k1.identity(k1.public_key(sk)), "expect": "ok"}
    for name, desc, change, expect in (
        ("job_steps_raised", "the job's steps raised after signing (more steps billed than signed)", lambda d: d["request"].update(steps=6),
         "attest.bad-signature"),
        ("job_as_request", "a job's members under the request format", lambda d: d.update(format="poe request v1"), "encoding.malformed"),
        ("job_without_steps", "a job without its steps", lambda d: d["request"].pop("steps"), "encoding.malformed"),
        ("job_of_zero_steps", "a job of 0 steps", lambda d: d["request"].update(steps=0), "input.invalid"),
    ):
        d = copy.deepcopy(job.to_json())
        change(d)
        out[name] = {"desc": desc, "document": d, "expect": expect}
    return out


BILL_PROVIDER_SEED = b"poe vectors: the provider of bill/, secp256k1 v1"


def _bill_epoch(deal: bytes = bytes.fromhex("de" * 32)):
    """Epoch 0 of 9 synthetic segments: customers A and B sent requests (some out of arrival
    order), two segments are anonymous. Records are synthetic (no execution), each committing
    its invocation. Returns (envelope, deal digest, store-like object, customer addresses)."""
    import dataclasses

    from poe import Outcome
    from poe.crypto.schemes import get_scheme
    from poe.merkle.build import ANONYMOUS, BillEntry, Tree, bill_tree
    from poe.merkle.hasher import leaf
    from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest
    from poe.protocol.request import answer, sign_request

    k1 = get_scheme("secp256k1")
    provider = k1.generate_key(BILL_PROVIDER_SEED)
    customers = [k1.generate_key(b"poe vectors: bill customer %d, secp256k1 v1" % i) for i in range(2)]
    addresses = [bytes.fromhex(k1.identity(k1.public_key(k))[2:]) for k in customers]
    cm = CostModel.current(LIMITS)
    plan = [(1, 5), (0, 2), (None, 0), (0, 1), (1, 6), (0, 3), (None, 0), (1, 4), (0, 7)]
    records, invocations, entries = [], [], []
    for i, (who, seq) in enumerate(plan):
        call = Invocation.build("work", params=[Value.of("i32", 100 + i)], seed=struct.pack("<Q", i) * 4)
        inv = call if who is None else answer(call, sign_request(customers[who], chain_id=1, deal=deal, sequence=seq,
                                                                  invocation=call.call_digest, fuel_budget=5_000_000, not_before=0, not_after=2))
        mix = blake3.blake3(struct.pack("<Q", i), derive_key_context="poe 2026-12 synthetic bill record v1").digest(length=64)
        rec = Record(index=i, outcome=Outcome.OK, outcome_code=0, fuel=1000 + int.from_bytes(mix[:2], "little"), peak_pages=1,
                     input_bytes=inv.payload_bytes, output_bytes=9, host_calls=0, module_digest=bytes.fromhex("11" * 32),
                     cost_model_digest=cm.digest, input_digest=inv.digest, output_digest=mix[:32], io_digest=mix[32:]).encode()
        records.append(rec)
        invocations.append(inv.encoded)
        entries.append(BillEntry(ANONYMOUS if who is None else addresses[who], i if who is None else seq, i, leaf(rec)))
    head = Tree([leaf(r) for r in records]).root
    ordered, tree = bill_tree(entries)
    st = Statement("secp256k1", cm.digest, bytes.fromhex("11" * 32), k1.public_key(provider), "deal-bills", 0, 0, len(records), head,
                   EMPTY_ROOT, consistency_digest(None), 1_765_000_000, tree.root)
    env = Envelope(st.encode(), k1.sign(provider, st.digest), k1.identity(st.public_key), cm.to_json(), None, None)

    class _Store:  # what poe.provider.bill.make_bill reads from a store
        def bill(self, epoch):
            return ordered, tree

        def segment_bytes(self, index):
            return records[index], invocations[index]

        def inclusion_proofs(self, indices, epoch):
            from poe.merkle.verify import InclusionProof

            full = Tree([leaf(r) for r in records])
            return [(records[i], InclusionProof(i, full.size, tuple(full.inclusion_path(i)))) for i in indices]

    return env, deal, _Store(), addresses, dataclasses


def bill_vectors() -> dict[str, dict]:
    """Customers' bills (spec §14.4) against a signed version-2 statement, and named lies."""
    import copy

    from poe.provider.bill import make_bill

    env, deal, store, (a, b), _ = _bill_epoch()
    out = {}

    def case(desc, bill, expect, **extra):
        d = {"desc": desc, "envelope": env.to_json(), "deal_digest": deal.hex(), "bill": bill, "expect": expect}
        d.update(extra)
        return d

    for name, who in (("customer_a", a), ("customer_b", b)):
        out[name] = case(f"the bill of customer 0x{who.hex()}: its segments, its neighbours, one range proof", make_bill(store, 0, who), "ok")
    out["customer_without_segments"] = case("a customer with nothing billed: an empty range between two neighbours",
                                            make_bill(store, 0, bytes.fromhex("7f" * 20)), "ok")
    honest = make_bill(store, 0, a)

    def mutant(name, desc, change, expect):
        bill = copy.deepcopy(honest)
        change(bill)
        out[name] = case(desc, bill, expect)

    mutant("segment_hidden", "the last segment dropped and the range shortened", lambda d: (d["entries"].pop(), d["range"].__setitem__(1, d["range"][1] - 1)),
           "verify.failed")
    def relabel(d):
        side = "right" if d["right"] is not None else "left"
        d[side].update(customer="0x" + ("ff" * 20 if side == "right" else "00" * 19 + "01"))

    mutant("neighbour_relabelled", "a neighbour claimed to be another customer, to hide the segment it is", relabel, "merkle.root-mismatch")
    mutant("fuel_raised", "a segment's record with its fuel raised by one",
           lambda d: d["entries"][0].update(record=_with_fuel_plus_one(d["entries"][0]["record"])), "merkle.root-mismatch")
    mutant("sequence_changed", "a segment listed under another sequence than its request's",
           lambda d: d["entries"][0].update(sequence=d["entries"][0]["sequence"] + 100), "verify.failed")
    mutant("other_epoch", "the bill relabelled to epoch 1", lambda d: d.update(epoch=1), "verify.failed")
    mutant("extra_field", "a field bills do not have", lambda d: d.update(note="trust me"), "encoding.malformed")
    return out


def _with_fuel_plus_one(record_hex: str) -> str:
    r = Record.decode(bytes.fromhex(record_hex))
    import dataclasses

    return dataclasses.replace(r, fuel=r.fuel + 1).encode().hex()


def check_bill(vector: dict) -> str:
    """What checking a bill/ vector gives: "ok" or an error code."""
    from poe.crypto.schemes import get_scheme
    from poe.protocol.attestation import Envelope, verify_envelope
    from poe.protocol.bill import check_bill as check

    try:
        env = Envelope.loads(json.dumps(vector["envelope"]))
        verify_envelope(env, get_scheme(env.statement.scheme))
        check(vector["bill"], env.statement, bytes.fromhex(vector["deal_digest"]))
    except PoEError as exc:
        return exc.code
    return "ok"


def _customers_claim():
    """The bill/ epoch claimed under a version-2 deal with the statement's terms (prices 2, 1, 5
    and a subscription of 50), and its store."""
    from poe.protocol.claim import Claim
    from poe.protocol.deal import Deal

    from poe.crypto.schemes import get_scheme

    k1 = get_scheme("secp256k1")
    deal = Deal.from_json({"format": "poe deal v2", "deal_id": "deal-bills",
                           "provider": {"scheme": "secp256k1", "public_key": k1.public_key(k1.generate_key(BILL_PROVIDER_SEED)).hex()},
                           "module_digest": "11" * 32, "cost_model_digest": CostModel.current(LIMITS).digest.hex(),
                           "prices": {"fuel": 2, "mem": 1, "io": 5}, "subscription": 50, "penalty": {"kind": "forfeit"},
                           "customers": {"anonymous": True, "window": 3}})
    env, _, store, addresses, _ = _bill_epoch(deal.digest)
    return Claim.bill(env, deal), store, addresses


def customers_vectors() -> dict[str, dict]:
    """Deals of version 2, receipts and invoices (spec §12.1, §14.5, §14.6), and named lies."""
    import copy

    from poe.crypto.schemes import get_scheme
    from poe.protocol.receipt import sign_receipt
    from poe.provider.bill import make_bill
    from poe.provider.invoice import make_invoice

    out: dict[str, dict] = {}
    claim, store, (a, _b) = _customers_claim()
    deal_doc = claim.deal.to_json()
    out["deal_v2"] = {"kind": "deal", "desc": "a version-2 deal: anonymous segments billable, windows of at most 3 epochs",
                      "document": deal_doc, "digest": claim.deal.digest.hex(), "expect": "ok"}
    for name, desc, change in (
        ("deal_v2_zero_window", "a window of 0 epochs", lambda d: d["customers"].update(window=0)),
        ("deal_v2_anonymous_as_number", "anonymous written as 1, not true", lambda d: d["customers"].update(anonymous=1)),
        ("deal_v1_with_customers", "a version-1 deal carrying a customers policy", lambda d: d.update(format="poe deal v1")),
        ("deal_v2_without_customers", "a version-2 deal without its customers policy", lambda d: d.pop("customers")),
    ):
        doc = copy.deepcopy(deal_doc)
        change(doc)
        out[name] = {"kind": "deal", "desc": desc, "document": doc, "expect": "encoding.malformed"}

    k1 = get_scheme("secp256k1")
    provider = k1.generate_key(BILL_PROVIDER_SEED)
    bill_a = make_bill(store, 0, a)
    first = bill_a["entries"][0]
    rec = Record.decode(bytes.fromhex(first["record"]))
    from poe.formats.invocation import split_requested
    from poe.merkle.hasher import leaf
    from poe.protocol.request import SignedRequest

    call, block = split_requested(bytes.fromhex(first["invocation"]))
    request = SignedRequest.from_block(block, blake3.blake3(call, derive_key_context="poe 2026-11 invocation v1").digest()).digest
    receipt = sign_receipt(k1, provider, deal=claim.deal.digest, request=request, customer=a, sequence=first["sequence"], epoch=0,
                           index=first["index"], record_leaf=leaf(bytes.fromhex(first["record"])).hash)
    assert rec.index == first["index"]

    def rcase(desc, doc, expect, **extra):
        return {"kind": "receipt", "desc": desc, "claim": claim.to_json(), "bill": bill_a, "receipt": doc, "expect": expect, **extra}

    out["receipt_honoured"] = rcase("a receipt for customer A's first billed segment, honoured by A's bill", receipt.to_json(), "ok",
                                    statement=receipt.statement().hex(), digest=receipt.digest.hex())
    changed = receipt.to_json()
    changed["sequence"] += 1
    out["receipt_changed_after_signing"] = rcase("the receipt's sequence changed after signing", changed, "attest.bad-signature")
    broken = sign_receipt(k1, provider, deal=claim.deal.digest, request=request, customer=a, sequence=first["sequence"] + 100, epoch=0,
                          index=first["index"], record_leaf=leaf(bytes.fromhex(first["record"])).hash)
    out["receipt_broken"] = rcase("a signed receipt for a request the bill does not hold: a broken promise", broken.to_json(), "broken")
    other_epoch = sign_receipt(k1, provider, deal=claim.deal.digest, request=request, customer=a, sequence=first["sequence"], epoch=1,
                               index=first["index"], record_leaf=leaf(bytes.fromhex(first["record"])).hash)
    out["receipt_other_epoch"] = rcase("a receipt promising epoch 1, checked against epoch 0's claim", other_epoch.to_json(), "encoding.malformed")

    invoice = make_invoice(store, claim)

    def icase(desc, doc, expect):
        return {"kind": "invoice", "desc": desc, "claim": claim.to_json(), "invoice": doc, "expect": expect}

    out["invoice"] = icase("the epoch's invoice: anonymous segments, customers A and B, and the subscription, adding up to the claim", invoice, "ok")
    for name, desc, change, expect in (
        ("invoice_amount_raised", "one line's amount and the total raised by 1", lambda d: (d["lines"][1].update(amount=d["lines"][1]["amount"] + 1),
                                                                                            d.update(total=d["total"] + 1)), "verify.failed"),
        ("invoice_node_sums_changed", "a covering node's fuel changed", lambda d: d["lines"][0].update(
            nodes=(bytes.fromhex(d["lines"][0]["nodes"])[:32] + b"\xff" + bytes.fromhex(d["lines"][0]["nodes"])[33:]).hex()), "merkle.root-mismatch"),
        ("invoice_lines_swapped", "two lines in the wrong order", lambda d: d["lines"].reverse(), "verify.failed"),
        ("invoice_subscription_dropped", "the subscription left out and the total lowered", lambda d: d.update(subscription=0, total=d["total"] - 50),
         "verify.failed"),
    ):
        doc = copy.deepcopy(invoice)
        change(doc)
        out[name] = icase(desc, doc, expect)
    return out


def check_customers(vector: dict) -> str:
    """What checking a customers/ vector gives: "ok", "broken" (a receipt the bill does not
    honour) or an error code."""
    from poe.protocol.bill import check_bill as bill_check
    from poe.protocol.claim import Claim
    from poe.protocol.deal import Deal
    from poe.protocol.invoice import check_invoice
    from poe.protocol.receipt import Receipt, check_receipts

    try:
        if vector["kind"] == "deal":
            deal = Deal.from_json(vector["document"])
            return "ok" if deal.digest.hex() == vector["digest"] else "digest differs"
        claim = Claim.from_json(vector["claim"])
        if vector["kind"] == "invoice":
            check_invoice(vector["invoice"], claim)
            return "ok"
        receipt = Receipt.from_json(vector["receipt"])
        if "statement" in vector and (receipt.statement().hex(), receipt.digest.hex()) != (vector["statement"], vector["digest"]):
            return "statement differs"
        bill = bill_check(vector["bill"], claim.statement, claim.deal.digest, claim.deal.window)
        return "broken" if check_receipts([receipt], claim, bill)["broken"] else "ok"
    except PoEError as exc:
        return exc.code


def check_request(vector: dict) -> str:
    """What decoding and verifying a request/ vector gives: "ok" (with its digest and typed data
    reproduced) or an error code."""
    from poe.protocol.request import SignedRequest

    try:
        signed = SignedRequest.from_json(vector["document"])
        signed.verify()
    except PoEError as exc:
        return exc.code
    if "digest" in vector and (signed.digest.hex() != vector["digest"] or signed.request.typed_data() != vector["typed_data"]):
        return "digest differs"
    return "ok"


def all_vectors() -> dict[str, dict[str, dict]]:
    return {
        "execution": execution_vectors(), "records": record_vectors(), "invocation": invocation_vectors(),
        "merkle": merkle_vectors(), "attestation": attestation_vectors(), "audit": audit_vectors(),
        "state": state_vectors(), "settlement": settlement_vectors(), "eip712": eip712_vectors(),
        "request": request_vectors(), "bill": bill_vectors(), "customers": customers_vectors(),
    }


def render(vector: dict) -> str:
    return json.dumps(vector, indent=2, sort_keys=True) + "\n"


def fold_digest(root: Path) -> str:
    """BLAKE3 over every vector file, in sorted path order, framed by name and length."""
    h = blake3.blake3(derive_key_context="poe 2026-11 vector set v1")
    for path in sorted(p for p in root.glob("*/*.json") if p.parent.name != "modules"):
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        h.update(struct.pack("<I", len(rel)) + rel + struct.pack("<Q", len(data)) + data)
    return h.hexdigest()


def check_decodes(kind: str, vector: dict) -> str:
    """What decoding a records/ or invocation/ vector gives: "ok" or an error code."""
    try:
        if kind == "records":
            Record.decode(bytes.fromhex(vector["record"]))
        else:
            blobs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in vector["payloads"].items()}
            Invocation.decode(bytes.fromhex(vector["invocation"]), blobs.__getitem__)
    except PoEError as exc:
        return exc.code
    return "ok"


def main() -> None:
    vectors = all_vectors()
    for kind, cases in vectors.items():
        folder = HERE / kind
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.json"):
            if old.stem not in cases:
                old.unlink()
        for name, vector in cases.items():
            if kind in ("records", "invocation", "attestation", "audit", "settlement", "eip712", "request", "bill", "customers") or "kind" in vector:
                got = {"merkle": check_merkle, "attestation": check_attestation, "audit": check_audit, "state": check_state,
                       "settlement": check_settlement, "eip712": check_eip712, "request": check_request, "bill": check_bill,
                       "customers": check_customers}.get(kind, lambda v: check_decodes(kind, v))(vector)
                if got != vector["expect"]:
                    raise SystemExit(f"{kind}/{name}: expected {vector['expect']}, decoding gives {got}")
            (folder / f"{name}.json").write_text(render(vector))
    digest = fold_digest(HERE)
    (HERE / "DIGEST").write_text(digest + "\n")
    print(f"wrote {sum(len(c) for c in vectors.values())} vectors; set digest {digest}")


if __name__ == "__main__":
    main()
