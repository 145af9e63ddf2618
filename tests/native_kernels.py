"""Wrappers of native kernel functions that only the tests and benches call.

poe itself reaches the kernel through :mod:`poe._native`, which keeps to what poe uses. The
kernel also exports BLAKE3 (plain, keyed and derive-key), batched inclusion-proof checks (spec
§10) and SIMD path selection; these wrappers let the tests check the kernel against
independent implementations on every path. Two helpers come along: :func:`sums_to_ints`, and
:func:`memory_root_at` (the memory root at a raw address, for benches/bench_state.py).

They use poe._native's private helpers, so argument checks, errors and the behaviour without
the kernel (:class:`poe.errors.InternalError`) are the binding's own.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from poe import _native
from poe._native import (
    _STATUS_OK,
    _U64_LIMIT,
    HASH_SIZE,
    SUMS_SIZE,
    _bytes_like,
    _fixed,
    _int,
    _memory,
    _ptr,
    _raise_status,
    _require,
    _status,
    _uninitialised,
)
from poe.errors import (
    InclusionProofError,
    InputError,
    InternalError,
    PoEError,
    RootMismatchError,
    SumOverflowError,
)

# _native._ffi and _native._lib are read at each call, not imported: they are None when the
# kernel did not load, and _require() must be the one to say so.

# ------------------------------------------------------------------ BLAKE3


def blake3(
    data: Any,
    *,
    key: Any = None,
    derive_key_context: str | bytes | None = None,
    length: int = 32,
) -> bytes:
    """BLAKE3 of `data`: plain, keyed (`key`, 32 bytes) or derive-key (`derive_key_context`, a
    str encoded as UTF-8, or bytes); `length` bytes of (extended) output."""
    _require()
    ffi, lib = _native._ffi, _native._lib
    view, n = _bytes_like(data, "data")
    length = _int(length, "length", 1 << 48)
    if key is not None and derive_key_context is not None:
        raise InputError("give key or derive_key_context, not both")
    key_ptr = ffi.NULL
    ctx: bytes = b""
    if key is not None:
        mode = lib.POE_MODE_KEYED
        key_ptr = _ptr(_fixed(key, 32, "key"))
    elif derive_key_context is not None:
        mode = lib.POE_MODE_DERIVE_KEY
        if isinstance(derive_key_context, str):
            try:
                ctx = derive_key_context.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError("derive_key_context is not encodable as UTF-8") from None
        else:
            ctx = bytes(_bytes_like(derive_key_context, "derive_key_context")[0])
    else:
        mode = lib.POE_MODE_HASH
    out = _uninitialised(length)
    rc = lib.poe_blake3(_ptr(view), n, mode, key_ptr, _ptr(ctx), len(ctx), out, length)
    if rc != _STATUS_OK:
        raise InternalError(f"native BLAKE3 refused its arguments (status {rc})")
    return bytes(ffi.buffer(out, length))


# ------------------------------------------------------------------ inclusion proofs

_NODE_SIZE = HASH_SIZE + SUMS_SIZE

# Result codes of verify_inclusion_many (POE_PROOF_* in native/poe_native.h).
PROOF_OK = 0
PROOF_BAD_INDEX = 1
PROOF_BAD_PATH_LENGTH = 2
PROOF_ROOT_HASH_MISMATCH = 3
PROOF_ROOT_SUMS_MISMATCH = 4
PROOF_SUM_OVERFLOW = 5
PROOF_BAD_ARGUMENT = 6

RESULT_NAMES: dict[int, str] = {
    PROOF_OK: "ok",
    PROOF_BAD_INDEX: "bad-index",
    PROOF_BAD_PATH_LENGTH: "bad-path-length",
    PROOF_ROOT_HASH_MISMATCH: "root-hash-mismatch",
    PROOF_ROOT_SUMS_MISMATCH: "root-sums-mismatch",
    PROOF_SUM_OVERFLOW: "sum-overflow",
    PROOF_BAD_ARGUMENT: "bad-argument",
}

RESULT_ERRORS: dict[int, str | None] = {
    PROOF_OK: None,
    PROOF_BAD_INDEX: "InclusionProofError",
    PROOF_BAD_PATH_LENGTH: "InclusionProofError",
    PROOF_ROOT_HASH_MISMATCH: "RootMismatchError",
    PROOF_ROOT_SUMS_MISMATCH: "RootMismatchError",
    PROOF_SUM_OVERFLOW: "InclusionProofError",  # as the reference: an overflowing proof is an invalid proof
    PROOF_BAD_ARGUMENT: "InputError",
}
"""Result code -> name of the poe.errors class a caller should raise for it (None: accepted)."""

_ERROR_CLASSES: dict[str, type[PoEError]] = {
    "InclusionProofError": InclusionProofError,
    "RootMismatchError": RootMismatchError,
    "SumOverflowError": SumOverflowError,
    "InputError": InputError,
}


class InclusionCase(NamedTuple):
    """One inclusion proof to check.

    `path` holds the siblings from the leaf upward, either as (hash, sums) pairs or as bytes of
    k * 80 (hash ‖ sums per entry, as in the binary proof form of spec §10). The root fields are
    left None when :func:`verify_inclusion_many` is given one root for all proofs.
    """

    leaf_hash: bytes
    leaf_sums: bytes
    index: int
    size: int
    path: Any
    root_hash: bytes | None = None
    root_sums: bytes | None = None


def _path_entries(path: Any, what: str) -> tuple[bytes, int]:
    """The path as k concatenated 80-byte entries (hash ‖ sums), and k."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        view, size = _bytes_like(path, what)
        if size % _NODE_SIZE:
            raise InputError(f"{what} must be k * {_NODE_SIZE} bytes, got {size}")
        return bytes(view), size // _NODE_SIZE
    if not isinstance(path, Iterable) or isinstance(path, str):
        raise InputError(f"{what} must be bytes or a sequence of (hash, sums) pairs")
    parts = []
    for j, entry in enumerate(path):
        if not isinstance(entry, Sequence) or isinstance(entry, (str, bytes, bytearray)) or len(entry) != 2:
            raise InputError(f"{what}[{j}] must be a (hash, sums) pair")
        parts.append(_fixed(entry[0], HASH_SIZE, f"{what}[{j}] hash"))
        parts.append(_fixed(entry[1], SUMS_SIZE, f"{what}[{j}] sums"))
    return b"".join(parts), len(parts) // 2


def verify_inclusion_many(proofs: Iterable[Any], root: tuple[Any, Any] | None = None) -> list[int]:
    """Check many inclusion proofs (spec §10) at once; returns one result code per proof.

    Each proof is an :class:`InclusionCase` or a tuple in its field order: (leaf_hash 32,
    leaf_sums 48, index, size, path[, root_hash 32, root_sums 48]). With `root` = (hash, sums)
    every proof is checked against that root and must not carry its own; without it every proof
    must. Codes: :data:`PROOF_OK` and the other ``PROOF_*`` constants; :data:`RESULT_NAMES` names
    them and :func:`error_for` gives the poe.errors class to raise. Malformed arguments (wrong
    lengths, non-integers, integers outside u64) raise :class:`InputError` instead; an index
    outside the tree or a path of the wrong length is a result code, not an exception.
    """
    _require()
    ffi, lib = _native._ffi, _native._lib
    if isinstance(proofs, (str, bytes, bytearray)) or not isinstance(proofs, Iterable):
        raise InputError("proofs must be a sequence of inclusion proofs")
    leaf_h, leaf_s, paths, root_h, root_s = [], [], [], [], []
    indices, sizes, offsets = array("Q"), array("Q"), array("Q", [0])
    n_entries = 0
    shared = root is not None
    if shared:
        if not isinstance(root, Sequence) or isinstance(root, (str, bytes, bytearray)) or len(root) != 2:
            raise InputError("root must be a (hash, sums) pair")
        root_h.append(_fixed(root[0], HASH_SIZE, "root hash"))
        root_s.append(_fixed(root[1], SUMS_SIZE, "root sums"))
    for i, proof in enumerate(proofs):
        if not isinstance(proof, Sequence) or isinstance(proof, (str, bytes, bytearray)):
            raise InputError(f"proof {i} must be an InclusionCase or a tuple")
        if len(proof) not in (5, 7):
            raise InputError(f"proof {i} must have 5 or 7 fields, got {len(proof)}")
        leaf_h.append(_fixed(proof[0], HASH_SIZE, f"proof {i} leaf hash"))
        leaf_s.append(_fixed(proof[1], SUMS_SIZE, f"proof {i} leaf sums"))
        indices.append(_int(proof[2], f"proof {i} index", _U64_LIMIT))
        sizes.append(_int(proof[3], f"proof {i} size", _U64_LIMIT))
        entries, k = _path_entries(proof[4], f"proof {i} path")
        paths.append(entries)
        n_entries += k
        offsets.append(n_entries)
        own = proof[5:] if len(proof) == 7 else (None, None)
        if shared:
            if own[0] is not None or own[1] is not None:
                raise InputError(f"proof {i} carries its own root but a shared root was given")
        else:
            if own[0] is None or own[1] is None:
                raise InputError(f"proof {i} has no root and no shared root was given")
            root_h.append(_fixed(own[0], HASH_SIZE, f"proof {i} root hash"))
            root_s.append(_fixed(own[1], SUMS_SIZE, f"proof {i} root sums"))
    m = len(leaf_h)
    if m == 0:
        return []
    results = ffi.new("int32_t[]", m)
    rc = lib.poe_verify_inclusion_many(
        m,
        _ptr(b"".join(leaf_h)),
        _ptr(b"".join(leaf_s)),
        ffi.from_buffer("uint64_t[]", indices),
        ffi.from_buffer("uint64_t[]", sizes),
        ffi.from_buffer("uint64_t[]", offsets),
        _ptr(b"".join(paths)),
        n_entries,
        _ptr(b"".join(root_h)),
        _ptr(b"".join(root_s)),
        len(root_h),
        results,
    )
    _raise_status(rc, "verify_inclusion_many")
    return list(results)


def error_for(code: int) -> type[PoEError] | None:
    """The poe.errors class for a result code of :func:`verify_inclusion_many` (None for ok)."""
    if isinstance(code, bool) or not isinstance(code, int) or code not in RESULT_ERRORS:
        raise InputError(f"unknown inclusion result code {code!r}")
    name = RESULT_ERRORS[code]
    return None if name is None else _ERROR_CLASSES[name]


# ------------------------------------------------------------------ sums and paths


def sums_to_ints(sums: Any) -> tuple[int, int, int]:
    """(fuel, mem, io) of a 48-byte sums encoding."""
    raw = _fixed(sums, SUMS_SIZE, "sums")
    return (
        int.from_bytes(raw[0:16], "little"),
        int.from_bytes(raw[16:32], "little"),
        int.from_bytes(raw[32:48], "little"),
    )


def simd_path() -> str:
    """The hash-many path in use: "scalar", "avx2" or "avx512"."""
    _require()
    return _native._ffi.string(_native._lib.poe_simd_path()).decode("ascii")


def simd_paths() -> list[str]:
    """The paths that can run on this machine, slowest first."""
    _require()
    return [name for name in ("scalar", "avx2", "avx512") if _native._lib.poe_simd_supported(name.encode("ascii"))]


def set_simd_path(name: str) -> None:
    """Switch the hash-many path ("scalar", "avx2", "avx512" or "auto") for the whole process.
    Not safe while another thread is hashing. (POE_NATIVE_SIMD sets it at load time.)"""
    _require()
    if _native._lib.poe_set_simd_path(name.encode("ascii")) != _STATUS_OK:
        raise InputError(f"SIMD path {name!r} is unknown or cannot run on this machine")


# ------------------------------------------------------------------ memory commitment


def memory_root_at(address: int, length: int) -> bytes:
    """Standard BLAKE3 of the `length` bytes at a raw address."""
    _require()
    mem, length = _memory(address, length)
    out = _uninitialised(HASH_SIZE)
    _status(_native._lib.poe_memory_root(mem, length, out), "memory_root")
    return bytes(_native._ffi.buffer(out, HASH_SIZE))
