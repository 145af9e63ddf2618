"""A customer checking its own bill (spec §14.4, §14.5): 10,000 receipts in an epoch of 10^6
segments, against the signed claim.

The epoch is synthetic (records are not executed: the customer never re-executes anything), but
everything the customer checks is real: the customer's 10,000 records commit version-2
invocations carrying requests it signed, the record tree and the bill tree are the ones a store
builds, the statement and receipts are signed with the provider's secp256k1 key. The other
990,000 segments belong to other customers (random addresses) and stand as leaves only.

Measured: parse the bill and the receipts (JSON), verify the claim's attestation, check the bill
(every record's inclusion proof, invocation, request signature and terms, the neighbours and one
range proof against the bill root) and every receipt (that the bill honours it; the provider's
signature is checked only on a receipt the bill breaks, where it makes the proof).
Baseline: the receipts alone, parsed and their signatures verified: what a customer that took
the provider's word for completeness would do on the day the bill arrives. Sizes: POE_BENCH_BILL_EPOCH, POE_BENCH_BILL_RECEIPTS.
"""

from __future__ import annotations

import json
import os
import struct

import blake3
import pytest

from poe import CostModel, Invocation, Outcome, Value
from poe.crypto.schemes import get_scheme
from poe.formats.record import Record
from poe.merkle.build import BillEntry, Tree, bill_tree, tree_of_records
from poe.merkle.hasher import leaf
from poe.merkle.verify import InclusionProof
from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, consistency_digest, verify_envelope
from poe.protocol.bill import check_bill
from poe.protocol.claim import Claim
from poe.protocol.deal import Deal
from poe.protocol.receipt import Receipt, check_receipts, sign_receipt
from poe.formats import hashing as h
from poe.formats.invocation import split_requested
from poe.protocol.request import SignedRequest, answer, sign_request
from poe.provider.bill import make_bill

EPOCH = int(os.environ.get("POE_BENCH_BILL_EPOCH", "1000000"))
RECEIPTS = int(os.environ.get("POE_BENCH_BILL_RECEIPTS", "10000"))
K1 = get_scheme("secp256k1")
PROVIDER = K1.generate_key(b"poe customer benchmark: provider key")
CUSTOMER = K1.generate_key(b"poe customer benchmark: customer key")
ADDRESS = bytes.fromhex(K1.identity(K1.public_key(CUSTOMER))[2:])
CM = CostModel.current()
MODULE = bytes.fromhex("11" * 32)


@pytest.fixture(scope="module")
def epoch():
    """(claim text, bill text, receipt texts) of a synthetic epoch, built once."""
    deal = Deal.from_json({"format": "poe deal v2", "deal_id": "bench-bills", "provider": {"scheme": "secp256k1", "public_key": K1.public_key(PROVIDER).hex()},
                           "module_digest": MODULE.hex(), "cost_model_digest": CM.digest.hex(), "prices": {"fuel": 1, "mem": 0, "io": 1},
                           "subscription": 0, "penalty": {"kind": "forfeit"}, "customers": {"anonymous": False, "window": 1}})
    every = EPOCH // RECEIPTS
    filler = bytearray(blake3.blake3(b"poe customer benchmark filler").digest(length=EPOCH * 288))
    for i in range(EPOCH):  # keep the filler's quantities small: sums stay far from 2^128
        filler[i * 288 + 16 : i * 288 + 64] = bytes(48)
    invocations, mine = {}, []
    for j in range(RECEIPTS):
        index = j * every
        call = Invocation.build("work", params=[Value.of("i32", j)], seed=struct.pack("<Q", j) * 4)
        inv = answer(call, sign_request(CUSTOMER, chain_id=1, deal=deal.digest, sequence=j, invocation=call.call_digest, fuel_budget=10**6,
                                        not_before=0, not_after=0))
        rec = Record(index=index, outcome=Outcome.OK, outcome_code=0, fuel=1000 + j % 97, peak_pages=1, input_bytes=inv.payload_bytes, output_bytes=9,
                     host_calls=0, module_digest=MODULE, cost_model_digest=CM.digest, input_digest=inv.digest,
                     output_digest=bytes(32), io_digest=bytes(32)).encode()
        filler[index * 288 : (index + 1) * 288] = rec
        invocations[index] = inv.encoded
        mine.append((index, j, rec))
    records = bytes(filler)
    record_tree = tree_of_records(records)
    nodes = record_tree.levels[0]
    entries = []
    for i in range(EPOCH):
        who = ADDRESS if i in invocations else records[i * 288 + 64 : i * 288 + 84]
        entries.append(BillEntry(who, (i // every) if i in invocations else i, i, nodes[i]))
    ordered, tree = bill_tree(entries)
    st = Statement("secp256k1", CM.digest, MODULE, K1.public_key(PROVIDER), deal.deal_id, 0, 0, EPOCH, record_tree.root, EMPTY_ROOT,
                   consistency_digest(None), 0, tree.root)
    env = Envelope(st.encode(), K1.sign(PROVIDER, st.digest), K1.identity(st.public_key), CM.to_json(), None, None)
    claim = Claim.bill(env, deal)

    class _Store:  # what make_bill reads from a store
        def bill(self, epoch):
            return ordered, tree

        def segment_bytes(self, index):
            return records[index * 288 : (index + 1) * 288], invocations[index]

        def inclusion_proofs(self, indices, epoch):
            return [(records[i * 288 : (i + 1) * 288], InclusionProof(i, EPOCH, tuple(record_tree.inclusion_path(i)))) for i in indices]

    bill = make_bill(_Store(), 0, ADDRESS)
    by_index = {e["index"]: e for e in bill["entries"]}
    texts = []
    for index, j, rec in mine:
        call, block = split_requested(bytes.fromhex(by_index[index]["invocation"]))
        request_digest = SignedRequest.from_block(block, h.digest(h.CTX_INVOCATION, call)).digest
        r = sign_receipt(K1, PROVIDER, deal=deal.digest, request=request_digest, customer=ADDRESS, sequence=j, epoch=0, index=index,
                         record_leaf=leaf(rec).hash)
        texts.append(json.dumps(r.to_json()))
    return json.dumps(claim.to_json()), json.dumps(bill), texts


def _receipts(texts):
    return [Receipt.from_json(json.loads(t)) for t in texts]


@pytest.mark.benchmark(group="customer-bill")
def test_customer_bill_baseline(measured, epoch):
    """Receipts alone: parse them and verify the provider's signature on each."""
    claim_text, _, texts = epoch

    def receipts_only():
        claim = Claim.from_json(json.loads(claim_text))
        for r in _receipts(texts):
            r.verify(K1, claim.deal.provider_key)

    measured.pedantic(receipts_only, rounds=3, iterations=1)


@pytest.mark.benchmark(group="customer-bill")
def test_customer_bill_poe(measured, epoch):
    """The whole check: `poe receipts verify` without the process start."""
    claim_text, bill_text, texts = epoch

    def customer():
        claim = Claim.from_json(json.loads(claim_text))
        verify_envelope(claim.envelope, K1, trusted_keys=[claim.deal.provider_key])
        bill = check_bill(json.loads(bill_text), claim.statement, claim.deal.digest, claim.deal.window)
        result = check_receipts(_receipts(texts), claim, bill)
        assert len(result["honoured"]) == RECEIPTS and not result["broken"] and not result["billed_without_receipt"]

    measured.pedantic(customer, rounds=3, iterations=1)
    measured.extra_info["epoch"] = EPOCH
    measured.extra_info["receipts"] = RECEIPTS
    measured.extra_info["bill_mb"] = round(len(bill_text) / 1e6, 1)
