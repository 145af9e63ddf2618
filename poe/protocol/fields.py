"""Strict reading of JSON documents: exactly the spec's fields, every value type- and range-checked.

Decoders build typed objects through these helpers, so a document whose meaning differs from
what its bytes say (a missing field a default would fill, an integer given as 2.5 or as a
string, hex with spaces, an unknown field) is an EncodingError naming the field, never a
silently different object and never a Python exception escaping as an internal error.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Iterable

from poe.errors import EncodingError

__all__ = ["document", "exact", "uint", "hexbytes", "hex0x", "text", "fraction", "array", "U64"]

U64 = 1 << 64
_FRACTION = re.compile(r"[0-9]{1,30}(?:/[0-9]{1,30})?")


def exact(d: Any, what: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    """`d` is an object with every required field and no field outside required and optional."""
    if not isinstance(d, dict):
        raise EncodingError(f"{what} must be a JSON object, got {type(d).__name__}")
    required, optional = set(required), set(optional)
    missing, unknown = sorted(required - set(d)), sorted(set(d) - required - optional)
    if missing:
        raise EncodingError(f"{what} lacks field(s) {', '.join(missing)}", expected=sorted(required), observed=sorted(d))
    if unknown:
        raise EncodingError(f"{what} has unknown field(s) {', '.join(unknown)}", expected=sorted(required | optional), observed=sorted(d))
    return d


def document(d: Any, fmt: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    """A top-level document: an object whose "format" is `fmt`, with exactly the given fields."""
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise EncodingError(f"not a {fmt} document")
    return exact(d, fmt, {"format", *required}, optional)


def uint(value: Any, what: str, limit: int = U64) -> int:
    """A JSON integer in [0, limit): not a bool, a float (2.0 or 2.5), a string or Infinity."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodingError(f"{what} must be an integer, got {value!r:.40}")
    if not 0 <= value < limit:
        raise EncodingError(f"{what} must be in [0, {limit}), got {str(value)[:40]}" if value.bit_length() < 300 else f"{what} is out of range")
    return value


def hexbytes(value: Any, what: str, length: int | None = None, *, max_length: int | None = None) -> bytes:
    """Bytes as hex digits only (no spaces, no 0x), of an exact or bounded length."""
    if not isinstance(value, str):
        raise EncodingError(f"{what} must be a string of hex digit pairs")
    if max_length is not None and len(value) > 2 * max_length:  # before decoding a hostile megabyte
        raise EncodingError(f"{what} is longer than {max_length} bytes", expected=max_length, observed=len(value) // 2)
    try:
        raw = bytes.fromhex(value) if value.isascii() else None
    except ValueError:
        raw = None
    # fromhex skips whitespace between pairs; one encoding per value allows none: the length tells.
    if raw is None or 2 * len(raw) != len(value):
        raise EncodingError(f"{what} must be a string of hex digit pairs")
    if length is not None and len(raw) != length:
        raise EncodingError(f"{what} must be {length} bytes, got {len(raw)}", expected=length, observed=len(raw))
    if max_length is not None and len(raw) > max_length:
        raise EncodingError(f"{what} is longer than {max_length} bytes", expected=max_length, observed=len(raw))
    return raw


def hex0x(value: Any, what: str, length: int) -> bytes:
    """Bytes as 0x and hex digits, the way Ethereum tools write them, of an exact length."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise EncodingError(f"{what} is 0x followed by {2 * length} hex digits")
    return hexbytes(value[2:], what, length)


def text(value: Any, what: str, max_length: int = 256) -> str:
    if not isinstance(value, str):
        raise EncodingError(f"{what} must be a string")
    if len(value) > max_length:
        raise EncodingError(f"{what} is longer than {max_length} characters")
    return value


def fraction(value: Any, what: str) -> Fraction:
    """A fraction written as "p/q" or "p" (what str(Fraction) writes), never a float."""
    if not isinstance(value, str) or not _FRACTION.fullmatch(value):
        raise EncodingError(f"{what} must be a fraction written \"p/q\", got {value!r:.40}")
    num, _, den = value.partition("/")
    if den and int(den) == 0:
        raise EncodingError(f"{what} has a zero denominator")
    return Fraction(int(num), int(den or 1))


def array(value: Any, what: str, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise EncodingError(f"{what} must be a JSON array")
    if len(value) > max_items:
        raise EncodingError(f"{what} has more than {max_items:,} items")
    return value
