"""Merkle sum tree in pure Python: proof verification and append cost."""

from __future__ import annotations

import random

import blake3
import pytest

from poe.merkle.build import CompactRange
from poe.merkle.hasher import CTX_NODE, Node, Root, Sums, leaf
from poe.merkle.verify import InclusionProof, root_from_inclusion, verify_inclusion

from poe import Outcome, Record

SIZE = 1 << 20
PROOFS = 2000


def _record(i: int, rng: random.Random) -> bytes:
    return Record(
        index=i, outcome=Outcome.OK, outcome_code=0, fuel=rng.randrange(1, 10**9), peak_pages=rng.randrange(300),
        input_bytes=rng.randrange(10**5), output_bytes=rng.randrange(10**5), host_calls=3,
        module_digest=rng.randbytes(32), cost_model_digest=rng.randbytes(32), input_digest=rng.randbytes(32),
        output_digest=rng.randbytes(32), io_digest=rng.randbytes(32),
    ).encode()


def _node(rng: random.Random) -> Node:
    return Node(rng.randbytes(32), Sums(rng.randrange(10**15), rng.randrange(10**17), rng.randrange(10**12)))


@pytest.fixture(scope="module")
def proofs():
    """PROOFS inclusion proofs into one tree of 2^20 leaves. A verifier sees only the path, so
    random siblings with the root they lead to are as good as a materialised 2^20 tree."""
    rng = random.Random(20)
    siblings = [_node(rng) for _ in range(20)]
    out = []
    for _ in range(PROOFS):
        i = rng.randrange(SIZE)
        rec = _record(i, rng)
        proof = InclusionProof(i, SIZE, tuple(siblings))
        top = root_from_inclusion(leaf(rec), proof)
        out.append((rec, proof, Root(SIZE, top.hash, top.sums)))
    return out


@pytest.mark.benchmark(group="verify-2^20")
def test_verify_baseline(measured, proofs):
    """Raw blake3-py: the 21 hashes a proof for a 2^20 tree needs (1 leaf + 20 nodes), nothing else."""
    material = [rec for rec, _, _ in proofs]
    node_input = bytes(160)

    def run():
        for rec in material:
            blake3.blake3(rec, derive_key_context="poe 2026-11 merkle leaf v1").digest()
            for _ in range(20):
                blake3.blake3(node_input, derive_key_context=CTX_NODE).digest()

    measured(run)
    measured.extra_info["proofs"] = PROOFS


@pytest.mark.benchmark(group="verify-2^20")
def test_verify_poe_python(measured, proofs):
    def run():
        for rec, proof, root in proofs:
            verify_inclusion(rec, proof, root)

    measured(run)
    if measured.stats is not None and measured.stats.stats is not None:
        measured.extra_info["proofs_per_s"] = round(PROOFS / measured.stats.stats.median)


APPENDS = 1024


def _range_of(size: int, rng: random.Random) -> CompactRange:
    return CompactRange(size, [_node(rng) for _ in range(bin(size).count("1"))])


@pytest.mark.benchmark(group="tree-append")
def test_append_baseline(measured):
    """One node hash in raw blake3-py: an append merges once on average."""
    node_input = bytes(160)
    measured(lambda: [blake3.blake3(node_input, derive_key_context=CTX_NODE).digest() for _ in range(APPENDS)])


@pytest.mark.parametrize("log_size", [10, 15, 20])
@pytest.mark.benchmark(group="tree-append")
def test_append_poe_to_sealed_tree(measured, log_size):
    rng = random.Random(log_size)
    leaves = [_node(rng) for _ in range(APPENDS)]

    def run():
        cr = _range_of(1 << log_size, rng)
        for lf in leaves:
            cr.append(lf)
        return cr.root

    measured(run)
    measured.extra_info["tree_size"] = f"2^{log_size}"
