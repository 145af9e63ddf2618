"""The auditor: I/O-free checks of claims and openings, re-execution tasks mapped over a pool, fraud proofs and settlement."""
