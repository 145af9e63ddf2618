"""The Merkle sum tree (spec §10): hashing strategy, building trees and proofs, verifying proofs; and the BLAKE3 chunk tree of a linear memory (§13.1)."""
