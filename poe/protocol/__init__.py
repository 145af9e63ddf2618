"""The documents that cross between provider, customer and auditor, as typed objects with strict decoders: attestations, deals, claims, challenges, openings, verdicts and fraud proofs."""
