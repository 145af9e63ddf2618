"""Merkle sum tree: roots, proofs and the attacks they must reject."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poe import Outcome, Record
from poe.merkle.build import CompactRange, Tree
from poe.merkle.hasher import EMPTY, Node, Root, Sums, leaf, node
from poe.merkle.verify import ConsistencyProof, InclusionProof, root_from_inclusion, verify_consistency, verify_inclusion
from poe.errors import (
    ConsistencyProofError,
    EncodingError,
    InclusionProofError,
    ProofError,
    RootMismatchError,
    SumOverflowError,
)


def records(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        fuel, pages = rng.randrange(1, 10**9), rng.randrange(0, 300)
        out.append(Record(
            index=i, outcome=Outcome.OK, outcome_code=0, fuel=fuel, peak_pages=pages,
            input_bytes=rng.randrange(0, 10**6), output_bytes=rng.randrange(0, 10**6), host_calls=rng.randrange(0, 99),
            module_digest=rng.randbytes(32), cost_model_digest=b"\x01" * 32, input_digest=rng.randbytes(32),
            output_digest=rng.randbytes(32), io_digest=rng.randbytes(32),
        ).encode())
    return out


def mth(leaves: list[Node]) -> Node:
    """RFC 9162 §2.1.1, written from the definition, independent of the level-by-level builder."""
    if not leaves:
        return EMPTY
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node(mth(leaves[:k]), mth(leaves[k:]))


def tree(n: int, seed: int = 1) -> tuple[list[bytes], Tree]:
    recs = records(n, seed)
    return recs, Tree([leaf(r) for r in recs])


@pytest.mark.parametrize("n", list(range(0, 34)) + [63, 64, 65, 100, 257])
def test_root_matches_the_rfc_definition_and_the_compact_range(n):
    recs, t = tree(n)
    expected = mth([leaf(r) for r in recs])
    assert (t.root.hash, t.root.sums) == (expected.hash, expected.sums)
    cr = CompactRange()
    cr.extend(leaf(r) for r in recs)
    assert cr.root == t.root and len(cr.peaks) == bin(n).count("1")


def test_root_sums_are_the_totals_of_every_record():
    recs, t = tree(37)
    decoded = [Record.decode(r) for r in recs]
    assert t.root.sums == Sums(sum(r.fuel for r in decoded), sum(r.mem for r in decoded), sum(r.io for r in decoded))


def test_empty_tree_has_the_empty_hash_and_zero_totals():
    assert Tree([]).root == Root(0, EMPTY.hash, Sums())


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 31, 32, 33])
def test_every_inclusion_proof_verifies_and_round_trips(n):
    recs, t = tree(n)
    for i, r in enumerate(recs):
        proof = InclusionProof(i, n, tuple(t.inclusion_path(i)))
        assert InclusionProof.decode(proof.encode()) == proof
        verify_inclusion(r, proof, t.root)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 33])
def test_encoded_inclusion_proof_is_checked_in_place_exactly_as_when_decoded(n):
    from poe.errors import PoEError
    from poe.merkle.verify import verify_encoded_inclusion

    recs, t = tree(n)
    for i, r in enumerate(recs):
        raw = InclusionProof(i, n, tuple(t.inclusion_path(i))).encode()
        assert verify_encoded_inclusion(r, raw, t.root) == i
        # every single-byte change, and every truncation, fails both ways or neither
        for at in range(0, len(raw), 7):
            bad = raw[:at] + bytes([raw[at] ^ 0x41]) + raw[at + 1 :]
            outcomes = []
            for check in (lambda: verify_inclusion(r, InclusionProof.decode(bad), t.root), lambda: verify_encoded_inclusion(r, bad, t.root)):
                try:
                    check()
                    outcomes.append("ok")
                except PoEError as exc:
                    outcomes.append(exc.code)
            assert outcomes[0] == outcomes[1] != "ok", (n, i, at)
        with pytest.raises(PoEError):
            verify_encoded_inclusion(r, raw[:-1], t.root)


@pytest.mark.parametrize("n", [2, 3, 7, 8, 9, 20, 33])
def test_every_consistency_proof_verifies_and_round_trips(n):
    recs, t = tree(n)
    for m in range(1, n + 1):
        old = Tree([leaf(r) for r in recs[:m]]).root
        proof = ConsistencyProof(m, n, tuple(t.consistency_path(m)))
        assert ConsistencyProof.decode(proof.encode()) == proof
        verify_consistency(old, t.root, proof)


def _proof(n=13, i=6):
    recs, t = tree(n)
    return recs[i], InclusionProof(i, n, tuple(t.inclusion_path(i))), t.root


def test_inclusion_proof_with_a_flipped_bit_in_a_sibling_is_rejected():
    rec, proof, root = _proof()
    bad = Node(bytes([proof.path[1].hash[0] ^ 1]) + proof.path[1].hash[1:], proof.path[1].sums)
    with pytest.raises(RootMismatchError) as e:
        verify_inclusion(rec, dataclasses.replace(proof, path=proof.path[:1] + (bad,) + proof.path[2:]), root)
    assert e.value.expected != e.value.calculated


def test_sibling_with_inflated_fuel_is_rejected():
    rec, proof, root = _proof()
    p = proof.path[0]
    bad = Node(p.hash, Sums(p.sums.fuel + 1, p.sums.mem, p.sums.io))
    with pytest.raises(RootMismatchError):
        verify_inclusion(rec, dataclasses.replace(proof, path=(bad,) + proof.path[1:]), root)


def test_root_with_inflated_totals_is_rejected():
    rec, proof, root = _proof()
    inflated = Root(root.size, root.hash, Sums(root.sums.fuel + 10**6, root.sums.mem, root.sums.io))
    with pytest.raises(RootMismatchError, match="other totals"):
        verify_inclusion(rec, proof, inflated)


def test_record_with_inflated_fuel_is_rejected():
    rec, proof, root = _proof()
    r = Record.decode(rec)
    with pytest.raises(RootMismatchError):
        verify_inclusion(dataclasses.replace(r, fuel=r.fuel + 1).encode(), proof, root)


@pytest.mark.parametrize("delta", [-1, 1])
def test_proof_for_an_off_by_one_index_is_rejected(delta):
    rec, proof, root = _proof()
    with pytest.raises(ProofError):
        verify_inclusion(rec, dataclasses.replace(proof, index=proof.index + delta), root)


def test_truncated_or_extended_path_is_rejected():
    rec, proof, root = _proof()
    with pytest.raises(InclusionProofError, match="too short"):
        verify_inclusion(rec, dataclasses.replace(proof, path=proof.path[:-1]), root)
    with pytest.raises(InclusionProofError, match="longer"):
        verify_inclusion(rec, dataclasses.replace(proof, path=proof.path + (proof.path[0],)), root)


def test_index_outside_the_tree_is_rejected():
    rec, proof, root = _proof()
    with pytest.raises(InclusionProofError, match="outside"):
        verify_inclusion(rec, dataclasses.replace(proof, index=root.size), root)


def test_proof_for_another_tree_size_is_rejected():
    rec, proof, root = _proof()
    with pytest.raises(InclusionProofError):
        verify_inclusion(rec, dataclasses.replace(proof, size=root.size + 1), root)


def test_sums_that_overflow_are_an_error_not_a_wrap():
    big = Node(b"\x00" * 32, Sums((1 << 128) - 1, 0, 0))
    with pytest.raises(SumOverflowError):
        node(big, Node(b"\x00" * 32, Sums(1, 0, 0)))
    rec, proof, root = _proof(2, 0)
    with pytest.raises(InclusionProofError, match="overflow"):
        root_from_inclusion(leaf(rec), dataclasses.replace(proof, path=(big,)))


def test_consistency_with_swapped_roots_is_rejected():
    recs, t = tree(11)
    old = Tree([leaf(r) for r in recs[:6]]).root
    proof = ConsistencyProof(6, 11, tuple(t.consistency_path(6)))
    with pytest.raises(ProofError):
        verify_consistency(t.root, old, proof)


def test_rewritten_history_fails_consistency():
    recs, t = tree(11)
    forged = list(recs[:6])
    r = Record.decode(forged[2])
    forged[2] = dataclasses.replace(r, fuel=r.fuel - 1).encode()
    old = Tree([leaf(x) for x in forged]).root
    with pytest.raises(RootMismatchError):
        verify_consistency(old, t.root, ConsistencyProof(6, 11, tuple(t.consistency_path(6))))


def test_consistency_proof_with_an_inflated_entry_is_rejected():
    recs, t = tree(12)
    old = Tree([leaf(r) for r in recs[:5]]).root
    path = list(t.consistency_path(5))
    p = path[-1]
    path[-1] = Node(p.hash, Sums(p.sums.fuel, p.sums.mem + 1, p.sums.io))
    with pytest.raises(RootMismatchError):
        verify_consistency(old, t.root, ConsistencyProof(5, 12, tuple(path)))


def test_consistency_edge_cases():
    recs, t = tree(4)
    verify_consistency(t.root, t.root, ConsistencyProof(4, 4, ()))
    verify_consistency(Tree([]).root, t.root, ConsistencyProof(0, 4, ()))
    with pytest.raises(ConsistencyProofError):
        verify_consistency(t.root, t.root, ConsistencyProof(4, 4, (t.levels[0][0],)))
    with pytest.raises(ConsistencyProofError):
        verify_consistency(Tree([leaf(r) for r in recs[:2]]).root, t.root, ConsistencyProof(2, 4, ()))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_random_trees_prove_random_leaves_and_prefixes(n, data):
    recs, t = tree(n, seed=n)
    i = data.draw(st.integers(0, n - 1))
    verify_inclusion(recs[i], InclusionProof(i, n, tuple(t.inclusion_path(i))), t.root)
    m = data.draw(st.integers(1, n))
    old = Tree(t.levels[0][:m]).root
    verify_consistency(old, t.root, ConsistencyProof(m, n, tuple(t.consistency_path(m))))


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_proof_decoders(raw):
    for cls in (InclusionProof, ConsistencyProof):
        try:
            cls.decode(raw)
        except EncodingError:
            pass


@pytest.mark.parametrize("cut", [0, 5, 26, 27, 100])
def test_truncated_or_padded_proof_encoding_is_rejected(cut):
    _, proof, _ = _proof()
    raw = proof.encode()
    with pytest.raises(EncodingError):
        InclusionProof.decode(raw[:cut] if cut < len(raw) else raw + b"\x00")


def test_compact_range_round_trips_and_extends_like_a_full_rebuild():
    recs, _ = tree(50)
    cr = CompactRange()
    cr.extend(leaf(r) for r in recs[:29])
    restored = CompactRange.decode(cr.encode())
    restored.extend(leaf(r) for r in recs[29:])
    assert restored.root == Tree([leaf(r) for r in recs]).root
    with pytest.raises(EncodingError):
        CompactRange.decode(cr.encode()[:-1])


def test_root_encodings_round_trip_and_reject_garbage():
    _, t = tree(9)
    assert Root.decode(t.root.encode()) == t.root == Root.from_json(t.root.to_json())
    for bad in ({"size": 1}, {"size": -1, "hash": "00" * 32, "totals": {"fuel": 0, "mem": 0, "io": 0}}, []):
        with pytest.raises(EncodingError):
            Root.from_json(bad)


def test_leaf_and_node_hashes_follow_the_spec_byte_layout():
    """Pins the bytes independently of poe.merkle.hasher: builder and verifier share node(), so a
    self-consistent change there (say, swapped operands) would otherwise go unnoticed."""
    import struct

    import blake3

    a, b = records(2)
    fuel, mem, inb, outb = struct.unpack_from("<16xQ8xQQQ", a)
    la = leaf(a)
    assert la.hash == blake3.blake3(a, derive_key_context="poe 2026-11 merkle leaf v1").digest()
    assert la.sums == Sums(fuel, mem, inb + outb)
    lb = leaf(b)
    enc = lambda s: s.fuel.to_bytes(16, "little") + s.mem.to_bytes(16, "little") + s.io.to_bytes(16, "little")  # noqa: E731
    material = la.hash + enc(la.sums) + lb.hash + enc(lb.sums)
    assert len(material) == 160
    assert node(la, lb).hash == blake3.blake3(material, derive_key_context="poe 2026-11 merkle node v1").digest()
    assert EMPTY.hash == blake3.blake3(b"", derive_key_context="poe 2026-11 merkle empty v1").digest()


@pytest.mark.parametrize(("start", "count"), [(0, 0), (0, 1), (0, 64), (5, 1), (5, 27), (13, 100), (64, 65), (1, 255)])
def test_bulk_extension_by_perfect_subtrees_equals_leaf_by_leaf(start, count):
    recs = records(start + count, seed=3)
    one_by_one = CompactRange()
    one_by_one.extend(leaf(r) for r in recs)
    bulk = CompactRange()
    bulk.extend(leaf(r) for r in recs[:start])
    chunks = []
    bulk.extend_records(b"".join(recs[start:]), perfect_root=lambda c: chunks.append(len(c) // 288) or Tree([leaf(c[i:i + 288]) for i in range(0, len(c), 288)]).root.node)
    assert bulk.root == one_by_one.root and bulk.peaks == one_by_one.peaks
    assert all(k & (k - 1) == 0 for k in chunks) and sum(chunks) == count  # only perfect subtrees asked for


def test_bulk_extension_rejects_partial_records():
    with pytest.raises(EncodingError):
        CompactRange().extend_records(b"\x00" * 300)


def test_native_and_reference_paths_give_the_same_roots_and_proofs():
    from poe import _native
    from poe.merkle.build import _reference_perfect_root, perfect_root, tree_of_records

    if not _native.AVAILABLE:
        pytest.skip(f"native kernel not built: {_native.LOAD_ERROR}")
    for n in (1, 2, 3, 64, 100):
        buf = b"".join(records(n, seed=n))
        t = tree_of_records(buf)
        reference = Tree([leaf(buf[i:i + 288]) for i in range(0, len(buf), 288)])
        assert t.root == reference.root
        for i in (0, n // 2, n - 1):
            assert t.inclusion_path(i) == reference.inclusion_path(i)
        if n & (n - 1) == 0:
            assert perfect_root(buf) == _reference_perfect_root(buf)


# -- range proofs: one contiguous range's leaves and their sums (a customer's bill) ----------------


def _sum_leaves(n: int, salt: int = 0) -> list[Node]:
    import blake3

    return [Node(blake3.blake3(f"{salt}:{i}".encode()).digest(), Sums(i + 1, 2 * i, 7)) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(1, 300))
def test_range_proof_proves_every_range_and_its_sums(data, n):
    from poe.merkle.verify import RangeProof, verify_range

    leaves = _sum_leaves(n)
    tree = Tree(leaves)
    start = data.draw(st.integers(0, n - 1))
    end = data.draw(st.integers(start + 1, n))
    proof = RangeProof.decode(RangeProof(start, end, tuple(tree.range_path(start, end))).encode())
    total = verify_range(leaves[start:end], proof, tree.root)
    assert total == Sums(sum(i + 1 for i in range(start, end)), sum(2 * i for i in range(start, end)), 7 * (end - start))
    assert len(proof.path) <= 2 * (n - 1).bit_length()


def _range_case(n=37, start=9, end=20):
    from poe.merkle.verify import RangeProof

    leaves = _sum_leaves(n)
    tree = Tree(leaves)
    return leaves, tree, RangeProof(start, end, tuple(tree.range_path(start, end)))


def test_range_proof_with_a_leaf_left_out_of_the_bill_is_rejected():
    from poe.errors import RangeProofError
    from poe.merkle.verify import verify_range

    leaves, tree, proof = _range_case()
    with pytest.raises(RangeProofError):
        verify_range(leaves[9:19], proof, tree.root)  # the last leaf hidden: the count no longer fits


def test_range_proof_with_a_leaf_swapped_for_a_cheaper_one_is_rejected():
    from poe.errors import RootMismatchError
    from poe.merkle.verify import verify_range

    leaves, tree, proof = _range_case()
    cheaper = list(leaves[9:20])
    cheaper[4] = Node(cheaper[4].hash, Sums(0, 0, 0))
    with pytest.raises(RootMismatchError):
        verify_range(cheaper, proof, tree.root)


def test_range_proof_shifted_by_one_leaf_is_rejected():
    import dataclasses as dc

    from poe.errors import ProofError
    from poe.merkle.verify import verify_range

    leaves, tree, proof = _range_case()
    with pytest.raises(ProofError):
        verify_range(leaves[10:21], dc.replace(proof, start=10, end=21), tree.root)


@pytest.mark.parametrize("change", ["drop", "extra", "swap", "sums"])
def test_range_proof_with_a_tampered_path_is_rejected(change):
    import dataclasses as dc

    from poe.errors import ProofError
    from poe.merkle.verify import verify_range

    leaves, tree, proof = _range_case()
    path = list(proof.path)
    if change == "drop":
        path.pop()
    elif change == "extra":
        path.append(path[0])
    elif change == "swap":
        path[0], path[-1] = path[-1], path[0]
    else:
        path[0] = Node(path[0].hash, path[0].sums + Sums(1, 0, 0))
    with pytest.raises(ProofError):
        verify_range(leaves[9:20], dc.replace(proof, path=tuple(path)), tree.root)


def test_range_proof_against_another_root_is_rejected():
    from poe.errors import RootMismatchError
    from poe.merkle.verify import verify_range

    leaves, tree, proof = _range_case()
    other = Tree(_sum_leaves(37, salt=1)).root
    with pytest.raises(RootMismatchError):
        verify_range(leaves[9:20], proof, other)


@pytest.mark.parametrize("raw", [b"", b"\x01\x03" + bytes(17), b"\x01\x01" + bytes(17)])
def test_malformed_range_proof_is_an_encoding_error(raw):
    from poe.merkle.verify import RangeProof

    with pytest.raises(EncodingError):
        RangeProof.decode(raw + b"\x00" * 3)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 120))
def test_bill_range_proof_gives_its_range_offset_and_sums(data, n):
    from poe.errors import PoEError
    from poe.merkle.build import BillEntry, bill_tree
    from poe.merkle.verify import encode_bill_range, verify_bill_range

    records = _sum_leaves(n)
    entries, tree = bill_tree(BillEntry(bytes([1 + i % 3]) * 20, i, i, r) for i, r in enumerate(records))
    start = data.draw(st.integers(0, n - 1))
    end = data.draw(st.integers(start + 1, n))
    raw = encode_bill_range(start, end, tree.range_path(start, end))
    left, inside = Sums(), Sums()
    for e in entries[:start]:
        left = left + e.record.sums
    for e in entries[start:end]:
        inside = inside + e.record.sums
    assert verify_bill_range([e.leaf for e in entries[start:end]], raw, tree.root) == (start, end, left, inside)
    for at in range(0, len(raw), max(1, len(raw) // 40)):  # any changed byte: a typed error, never a pass
        with pytest.raises(PoEError):
            verify_bill_range([e.leaf for e in entries[start:end]], raw[:at] + bytes([raw[at] ^ 0x10]) + raw[at + 1 :], tree.root)
