"""Keccak-256 as Ethereum uses it (pure Python).

Ethereum's "keccak256"/"sha3" is the Keccak submission to the SHA-3 competition, *not* FIPS 202
SHA3-256: both run Keccak-f[1600] with rate 1088 bits (136 bytes) and a 256-bit output, but the
message padding differs. Keccak pads with the byte 0x01 (pad10*1 alone); FIPS 202 first appends the
domain bits 01, which makes the first padding byte 0x06. ``hashlib.sha3_256`` is therefore the wrong
function for addresses and EIP-191 hashes, and ``eth-hash`` needs a backend (pycryptodome or pysha3)
that poe does not depend on. This module supplies the one function poe needs.

The permutation's constants are derived at import time from their definitions in the Keccak
reference (round constants from the degree-8 LFSR, rotation offsets from the (t+1)(t+2)/2 walk),
instead of being typed in, so a transcription error cannot hide in a table. The tests check the
result against published digests and, through the shared sponge with FIPS 202 padding, against
``hashlib.sha3_256`` on random inputs.

Speed: a few hundred microseconds per 136-byte block. poe hashes 60-byte personal-sign messages and
64-byte public keys, so this is never the bottleneck next to elliptic-curve arithmetic.
"""

from __future__ import annotations

from poe.errors import InputError

__all__ = ["keccak256"]

_MASK = (1 << 64) - 1
_RATE_256 = 136  # bytes: 1600 - 2*256 bits


def _round_constants() -> tuple[int, ...]:
    # rc(t) is the output of the LFSR x^8 + x^6 + x^5 + x^4 + 1; RC[i] has bit 2^j - 1 set
    # to rc(j + 7i) for j = 0..6.
    state = 1
    bits = []
    for _ in range(7 * 24):
        bits.append(state & 1)
        state <<= 1
        if state & 0x100:
            state ^= 0x171
    out = []
    for i in range(24):
        value = 0
        for j in range(7):
            if bits[j + 7 * i]:
                value |= 1 << ((1 << j) - 1)
        out.append(value)
    return tuple(out)


def _rotation_offsets() -> tuple[int, ...]:
    # Lane (x, y) lives at index x + 5y. Lane (0, 0) is not rotated; the other 24 are visited by
    # (x, y) <- (y, 2x + 3y mod 5) from (1, 0), step t rotating by (t+1)(t+2)/2 mod 64.
    offsets = [0] * 25
    x, y = 1, 0
    for t in range(24):
        offsets[x + 5 * y] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    return tuple(offsets)


_RC = _round_constants()
_ROT = _rotation_offsets()
# pi moves lane (x, y) to (y, 2x + 3y): for each destination index, the source index and its rotation.
_PI_SOURCE: tuple[tuple[int, int], ...] = tuple(
    sorted(((y + 5 * ((2 * x + 3 * y) % 5)), (x + 5 * y)) for x in range(5) for y in range(5))
)
_PI = tuple((src, _ROT[src]) for _, src in _PI_SOURCE)


def _permute(a: list[int]) -> None:
    """Keccak-f[1600] in place on 25 little-endian 64-bit lanes (index x + 5y)."""
    mask = _MASK
    pi = _PI
    for rc in _RC:
        # theta
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & mask) for x in range(5)]
        for i in range(25):
            a[i] ^= d[i % 5]
        # rho and pi
        b = [((a[s] << r) | (a[s] >> (64 - r))) & mask if r else a[s] for s, r in pi]
        # chi
        for y in range(0, 25, 5):
            b0, b1, b2, b3, b4 = b[y], b[y + 1], b[y + 2], b[y + 3], b[y + 4]
            a[y] = b0 ^ (~b1 & b2)
            a[y + 1] = b1 ^ (~b2 & b3)
            a[y + 2] = b2 ^ (~b3 & b4)
            a[y + 3] = b3 ^ (~b4 & b0)
            a[y + 4] = b4 ^ (~b0 & b1)
        # iota
        a[0] ^= rc


def _sponge(data: bytes, rate: int, pad: int, out_len: int) -> bytes:
    """Keccak[c = 1600 - 8*rate] sponge; ``pad`` is the first padding byte (0x01 Keccak, 0x06 SHA-3)."""
    padded = bytearray(data)
    padded.append(pad)
    padded.extend(bytes(-len(padded) % rate))
    padded[-1] |= 0x80
    state = [0] * 25
    lanes = rate // 8
    for offset in range(0, len(padded), rate):
        block = padded[offset : offset + rate]
        for i in range(lanes):
            state[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        _permute(state)
    out = bytearray()
    while True:
        for i in range(lanes):
            out += state[i].to_bytes(8, "little")
        if len(out) >= out_len:
            return bytes(out[:out_len])
        _permute(state)


def keccak256(data: bytes | bytearray | memoryview) -> bytes:
    """Keccak-256 (original padding 0x01) of ``data``: Ethereum's ``keccak256``."""
    # Checked because bytes() accepts more than bytes: bytes(5) is five zero bytes, and their
    # hash would be returned as if it were the hash of something meant.
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"keccak256 hashes bytes, not {type(data).__name__}")
    return _sponge(bytes(data), _RATE_256, 0x01, 32)
