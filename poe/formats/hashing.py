"""BLAKE3 with domain separation.

Every digest poe commits to is computed in BLAKE3's derive-key mode under a context string
of its own, so bytes hashed for one purpose can never be passed off as another (a leaf as a
node, an invocation as an output). Payload blobs are the one exception: they are addressed
by the plain BLAKE3 hash of their bytes, so anyone can check a file with `b3sum`.

The context strings are part of the protocol (docs/spec.md); changing one is a format change.
"""

from __future__ import annotations

import blake3

DIGEST_SIZE = 32

CTX_COST_MODEL = "poe 2026-11 cost model v1"
CTX_MODULE_SET = "poe 2026-11 module set v1"
CTX_INVOCATION = "poe 2026-11 invocation v1"
CTX_OUTPUT = "poe 2026-11 output v1"
CTX_IO_LOG = "poe 2026-11 io log v1"
CTX_RANDOM = "poe 2026-11 random stream v1"
CTX_SEED = "poe 2026-11 repeat seed v1"
CTX_STATE = "poe 2026-11 state v1"
CTX_STATE_RANDOM = "poe 2026-11 stateful random key v1"


def blob_digest(data: bytes) -> bytes:
    """Content address of a payload blob: plain BLAKE3, checkable with `b3sum`."""
    return blake3.blake3(data).digest()


def derive(context: str, data: bytes = b"") -> blake3.blake3:
    """A BLAKE3 hasher in derive-key mode for `context`, already fed `data`."""
    return blake3.blake3(data, derive_key_context=context)


def digest(context: str, data: bytes) -> bytes:
    return blake3.blake3(data, derive_key_context=context).digest()


ZERO_DIGEST = bytes(DIGEST_SIZE)
