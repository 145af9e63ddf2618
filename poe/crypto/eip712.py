"""EIP-712 typed structured data hashing: the digest wallets sign for ``eth_signTypedData_v4``.

https://eips.ethereum.org/EIPS/eip-712. For a struct type ``T`` with members ``(type_i name_i)``::

    encodeType(T) = "T(type_1 name_1,...,type_n name_n)" followed by the same for every struct
                    type T references (directly or through arrays), sorted by name
    typeHash(T)   = keccak256(encodeType(T))
    hashStruct(s) = keccak256(typeHash(T) || enc(s.name_1) || ... || enc(s.name_n))
    digest        = keccak256(0x19 0x01 || hashStruct(domain as EIP712Domain) || hashStruct(message))

where each ``enc`` is 32 bytes: ``bool``, ``address``, ``uintN``/``intN`` as a 256-bit big-endian
word (signed ones in two's complement), ``bytesN`` right-padded with zeros, ``bytes`` and
``string`` (UTF-8) by their keccak256, a struct by its hashStruct, an array (``T[]`` or ``T[k]``)
by keccak256 of its elements' encodings concatenated. If the message's primary type is
``EIP712Domain`` itself, the digest has no message part.

Stricter than most wallets, because a digest is only as meaningful as the values it commits to:
a message must carry exactly its type's members (no missing, no extra ones, which some libraries
drop silently); integers must fit their type; ``bytesN`` values must have exactly N bytes; a
mixed-case address must carry a valid EIP-55 checksum; every referenced type must be defined
(recursive types are allowed, as in the standard). Integers may be given as Python ints or as decimal or ``0x`` hex strings (as JSON from
wallets does), byte strings as bytes or ``0x`` hex. Every failure is an
:class:`~poe.errors.EncodingError` naming the member's path.

Types are checked once, when a :class:`Types` is made, and each struct's typeHash is computed
then; a service hashing many messages of one type keeps the :class:`Types` and calls
:meth:`Types.hash_struct`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from poe.crypto.keccak import keccak256
from poe.errors import EncodingError

__all__ = ["Types", "DOMAIN_FIELDS", "domain_types", "domain_separator", "digest", "typed_data_digest"]

#: EIP712Domain's members in the order the standard lists them, with their types.
DOMAIN_FIELDS: tuple[tuple[str, str], ...] = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_ARRAY = re.compile(r"(.+)\[(\d*)\]\Z")
_INT = re.compile(r"(u?)int(\d{0,3})\Z")
_FIXED_BYTES = re.compile(r"bytes(\d{1,2})\Z")


def _atomic(type_name: str) -> bool:
    if type_name in ("bool", "address", "string", "bytes"):
        return True
    m = _INT.match(type_name)
    if m:
        bits = int(m.group(2) or 256)
        return 8 <= bits <= 256 and bits % 8 == 0 and (m.group(2) == "" or not m.group(2).startswith("0"))
    m = _FIXED_BYTES.match(type_name)
    return bool(m) and 1 <= int(m.group(1)) <= 32 and not m.group(1).startswith("0")


@lru_cache(maxsize=1024)
def _classify(type_name: str) -> tuple[str, Any]:
    """What a non-struct type name is, parsed once: ("array", (element, length or None)),
    ("uint"/"int", bits), ("fixed", N) for bytesN, or the atomic name itself."""
    m = _ARRAY.match(type_name)
    if m:
        return "array", (m.group(1), int(m.group(2)) if m.group(2) else None)
    m = _INT.match(type_name)
    if m:
        return ("uint" if m.group(1) else "int"), int(m.group(2) or 256)
    m = _FIXED_BYTES.match(type_name)
    if m:
        return "fixed", int(m.group(1))
    return type_name, None


def _fast_encoder(type_name: str) -> Callable[[object], bytes | None] | None:
    """For the member types a request is made of, an encoder of the plain case (an int in range,
    bytes of the right length, a checked address string) that returns None for anything else,
    which then takes the general path and its errors. Half of a request's digest time went to
    dispatching on the type name per member."""
    kind, arg = _classify(type_name)
    if kind == "uint":
        high = 1 << arg

        def uint(v: object) -> bytes | None:
            return v.to_bytes(32, "big") if type(v) is int and 0 <= v < high else None

        return uint
    if kind == "fixed":
        pad = bytes(32 - arg)

        def fixed(v: object) -> bytes | None:
            return v + pad if type(v) is bytes and len(v) == arg else None

        return fixed
    if kind == "address":

        def address(v: object) -> bytes | None:
            raw = _address_text(v) if type(v) is str else None
            return _ZERO12 + raw if raw else None

        return address
    return None


_ZERO12 = bytes(12)


def _int_value(value: object, path: str) -> int:
    if isinstance(value, bool):
        raise EncodingError(f"{path}: a boolean where an integer belongs")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.lower().startswith(("0x", "-0x")):
                return int(text, 16)
            if re.fullmatch(r"-?\d+", text):
                return int(text)
        except ValueError:
            pass
    raise EncodingError(f"{path}: {value!r} is not an integer")


def _bytes_value(value: object, path: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise EncodingError(f"{path}: {value!r} is not a byte string (bytes, or 0x followed by hex digits)")


def _address_value(value: object, path: str) -> bytes:
    if isinstance(value, str):
        raw = _address_text(value)
        if raw is None:
            raise EncodingError(f"{path}: {value} has a mixed-case EIP-55 checksum that does not match")
        if raw:
            return raw
    elif isinstance(value, (bytes, bytearray)) and len(value) == 20:
        return bytes(value)
    raise EncodingError(f"{path}: {value!r} is not an address (0x followed by 40 hex digits)")


@lru_cache(maxsize=4096)
def _address_text(text: str) -> bytes | None:
    """The 20 bytes of a 0x address (b"" if it is not one; None if its EIP-55 checksum is
    wrong). Cached: a service sees the same customers' addresses over and over."""
    if not (text[:2] in ("0x", "0X") and len(text) == 42 and re.fullmatch(r"[0-9a-fA-F]{40}", text[2:])):
        return b""
    raw, body = bytes.fromhex(text[2:]), text[2:]
    if body != body.lower() and body != body.upper():
        from poe.crypto.secp256k1 import checksum_address

        if checksum_address(raw)[2:] != body:
            return None
    return raw


class Types:
    """A checked set of EIP-712 struct definitions: ``{"Mail": [{"name": "from", "type": "Person"},
    ...], ...}`` (``EIP712Domain``, if present, is one of them)."""

    def __init__(self, types: Mapping[str, Sequence[Mapping[str, str]]]) -> None:
        if not isinstance(types, Mapping):
            raise EncodingError("EIP-712 types must be an object of struct definitions")
        self._members: dict[str, tuple[tuple[str, str], ...]] = {}
        for struct, members in types.items():
            if not isinstance(struct, str) or not _IDENT.match(struct) or _atomic(struct):
                raise EncodingError(f"{struct!r} is not a valid struct type name")
            if isinstance(members, (str, bytes)) or not isinstance(members, Sequence):
                raise EncodingError(f"type {struct}: members must be a list")
            seen: list[tuple[str, str]] = []
            for i, member in enumerate(members):
                if not isinstance(member, Mapping) or set(member) != {"name", "type"}:
                    raise EncodingError(f"type {struct}, member {i}: must have exactly a name and a type")
                name, type_name = member["name"], member["type"]
                if not isinstance(name, str) or not _IDENT.match(name) or not isinstance(type_name, str):
                    raise EncodingError(f"type {struct}, member {i}: invalid name or type")
                if name in (n for n, _ in seen):
                    raise EncodingError(f"type {struct}: member {name!r} is declared twice")
                seen.append((name, type_name))
            self._members[struct] = tuple(seen)
        for struct, members in self._members.items():
            for name, type_name in members:
                base = self._base(type_name)
                if not _atomic(base) and base not in self._members:
                    raise EncodingError(f"type {struct}, member {name}: unknown type {type_name!r}")
        self._names = {struct: frozenset(n for n, _ in members) for struct, members in self._members.items()}
        self._paths = {struct: tuple(f"{struct}.{n}" for n, _ in members) for struct, members in self._members.items()}
        self._fast = {struct: tuple(None if t in self._members else _fast_encoder(t) for _, t in members)
                      for struct, members in self._members.items()}
        self._encoded = {struct: self._encode_type(struct) for struct in self._members}
        self._hashes = {struct: keccak256(text.encode()) for struct, text in self._encoded.items()}

    @staticmethod
    def _base(type_name: str) -> str:
        while True:
            m = _ARRAY.match(type_name)
            if not m:
                return type_name
            type_name = m.group(1)

    def __contains__(self, struct: object) -> bool:
        return struct in self._members

    def _dependencies(self, struct: str) -> set[str]:
        found: set[str] = set()
        todo = [struct]
        while todo:
            current = todo.pop()
            if current in found:
                continue
            found.add(current)
            todo.extend(b for b in (self._base(t) for _, t in self._members[current]) if b in self._members)
        return found

    def _encode_type(self, struct: str) -> str:
        deps = sorted(self._dependencies(struct) - {struct})
        return "".join(
            f"{name}(" + ",".join(f"{t} {n}" for n, t in self._members[name]) + ")" for name in [struct, *deps]
        )

    def _known(self, struct: str) -> None:
        if struct not in self._members:
            raise EncodingError(f"unknown EIP-712 struct type {struct!r}")

    def encode_type(self, struct: str) -> str:
        self._known(struct)
        return self._encoded[struct]

    def type_hash(self, struct: str) -> bytes:
        self._known(struct)
        return self._hashes[struct]

    def encode_data(self, struct: str, value: object, path: str = "") -> bytes:
        """typeHash(struct) || enc(member_1) || ... (what hashStruct hashes)."""
        self._known(struct)
        path = path or struct
        if not isinstance(value, Mapping):
            raise EncodingError(f"{path}: a {struct} must be an object")
        members = self._members[struct]
        if value.keys() != self._names[struct]:
            extra = set(value) - self._names[struct]
            if extra:
                raise EncodingError(f"{path}: members not in type {struct}: {', '.join(sorted(map(str, extra)))}")
            missing = next(n for n, _ in members if n not in value)
            raise EncodingError(f"{path}: member {missing!r} of {struct} is missing")
        # Member paths name a failure; the usual top-level ones are made once, with the types.
        paths = self._paths[struct] if path == struct else [f"{path}.{n}" for n, _ in members]
        parts = [self._hashes[struct]]
        for (name, type_name), member_path, fast in zip(members, paths, self._fast[struct]):
            member = value[name]
            encoded = fast(member) if fast is not None else None
            parts.append(encoded if encoded is not None else self._encode_value(type_name, member, member_path))
        return b"".join(parts)

    def hash_struct(self, struct: str, value: object) -> bytes:
        return keccak256(self.encode_data(struct, value))

    def _encode_value(self, type_name: str, value: object, path: str) -> bytes:
        if type_name in self._members:
            return keccak256(self.encode_data(type_name, value, path))
        kind, arg = _classify(type_name)
        if kind == "uint" or kind == "int":
            number = _int_value(value, path)
            low, high = (0, 1 << arg) if kind == "uint" else (-(1 << (arg - 1)), 1 << (arg - 1))
            if not low <= number < high:
                raise EncodingError(f"{path}: {number} does not fit a {type_name}")
            return (number % (1 << 256)).to_bytes(32, "big")
        if kind == "fixed":
            raw = _bytes_value(value, path)
            if len(raw) != arg:
                raise EncodingError(f"{path}: a {type_name} has exactly {arg} bytes, got {len(raw)}")
            return raw + bytes(32 - len(raw))
        if kind == "address":
            return bytes(12) + _address_value(value, path)
        if kind == "array":
            element, length = arg
            if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Sequence):
                raise EncodingError(f"{path}: a {type_name} must be a list")
            if length is not None and len(value) != length:
                raise EncodingError(f"{path}: a {type_name} has {length} elements, got {len(value)}")
            return keccak256(b"".join(self._encode_value(element, v, f"{path}[{i}]") for i, v in enumerate(value)))
        if kind == "string":
            if not isinstance(value, str):
                raise EncodingError(f"{path}: a string must be text")
            try:
                return keccak256(value.encode("utf-8"))
            except UnicodeEncodeError:
                raise EncodingError(f"{path}: the string is not valid Unicode (a lone surrogate)") from None
        if kind == "bytes":
            return keccak256(_bytes_value(value, path))
        if kind == "bool":
            if not isinstance(value, bool):
                raise EncodingError(f"{path}: a bool must be true or false")
            return int(value).to_bytes(32, "big")
        raise EncodingError(f"{path}: unknown type {type_name!r}")  # pragma: no cover - checked in __init__


def domain_types(domain: Mapping[str, Any]) -> list[dict[str, str]]:
    """The EIP712Domain definition a domain object implies: its members, in the standard's order."""
    if not isinstance(domain, Mapping):
        raise EncodingError("an EIP-712 domain must be an object")
    unknown = set(domain) - {n for n, _ in DOMAIN_FIELDS}
    if unknown:
        raise EncodingError(f"EIP712Domain has no members {', '.join(sorted(map(str, unknown)))}")
    return [{"name": n, "type": t} for n, t in DOMAIN_FIELDS if n in domain]


def domain_separator(domain: Mapping[str, Any], types: Types | None = None) -> bytes:
    """hashStruct of ``domain`` as an EIP712Domain (from ``types`` if it defines one)."""
    if types is None or "EIP712Domain" not in types:
        types = Types({"EIP712Domain": domain_types(domain)})
    return types.hash_struct("EIP712Domain", domain)


def digest(separator: bytes, types: Types, primary: str, message: object) -> bytes:
    """keccak256(0x19 0x01 || separator || hashStruct(message)): the hash the wallet signs."""
    if len(separator) != 32:
        raise EncodingError(f"a domain separator has 32 bytes, got {len(separator)}")
    if primary == "EIP712Domain":
        return keccak256(b"\x19\x01" + separator)
    return keccak256(b"\x19\x01" + separator + types.hash_struct(primary, message))


def typed_data_digest(document: Mapping[str, Any]) -> bytes:
    """The digest of a whole ``eth_signTypedData_v4`` document: exactly ``types``,
    ``primaryType``, ``domain`` and ``message``."""
    if not isinstance(document, Mapping) or set(document) != {"types", "primaryType", "domain", "message"}:
        raise EncodingError("EIP-712 typed data has exactly the members types, primaryType, domain and message")
    types = Types(document["types"])
    primary = document["primaryType"]
    if not isinstance(primary, str):
        raise EncodingError("primaryType must be a type name")
    return digest(domain_separator(document["domain"], types), types, primary, document["message"])
