"""Key files: a provider's signing key at rest (docs/spec.md §11.4).

A key file is JSON, created with mode 0600 and never over an existing file, and it appears whole
or not at all (:func:`poe._io.write_new`); a key file that others can read is refused, as ssh
refuses one. With a passphrase the secret is encrypted: scrypt stretches the passphrase into two
32-byte keys, the secret is XORed with a BLAKE3 keyed extendable output over a random nonce, and a
BLAKE3 keyed MAC over the header, nonce and ciphertext authenticates it (encrypt-then-MAC). A wrong
passphrase fails the MAC, and nothing is signed.

A key path may be handed over by someone else, so reading trusts nothing about the file: it must
be a regular file (not a link, a FIFO or a device), at most :data:`MAX_KEY_FILE_BYTES`, UTF-8
JSON nested no deeper than a key file is, with exactly the spec's fields, each of its type. Every
way of failing that is a :class:`~poe.errors.KeyFileError` (exit 3) that says which rule failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import blake3

from poe._io import write_new
from poe.crypto.scheme import as_bytes
from poe.crypto.schemes import SCHEME_NAMES
from poe.errors import InputError, KeyFileError, PassphraseError

__all__ = ["KeyFile", "write_key_file", "read_key_file", "read_signing_key", "MAX_KEY_FILE_BYTES"]

FORMAT = "poe key v1"
#: An encrypted key file is under 1 KiB; the cap only bounds what a hostile path can make us read.
MAX_KEY_FILE_BYTES = 1 << 20
_SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}
_SALT_BYTES, _NONCE_BYTES, _MAC_BYTES = 16, 24, 32
_FIELDS = {"format", "scheme", "public_key", "secret_key", "encrypted"}
_ENCRYPTED_FIELDS = {"kdf", "n", "r", "p", "salt", "cipher", "nonce", "ciphertext", "mac"}
# A key file nests two containers deep ({"encrypted": {...}}). Deeper input is refused before
# json.loads sees it: its C parser recurses once per level, and with a raised recursion limit
# (py-ecc raises it on import) a '[' * 100000 file would overflow the C stack, not raise.
_MAX_DEPTH = 2
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


@dataclass(frozen=True)
class KeyFile:
    scheme: str
    public_key: bytes
    secret_key: bytes | None  # None until unlocked
    encrypted: bool


def _kdf(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    # Bounded so that a key file cannot make poe spend unbounded memory or time before the MAC.
    if not (1 << 10 <= n <= 1 << 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise KeyFileError("key file asks for scrypt parameters outside the accepted range")
    try:
        stretched = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=64)
    except (ValueError, MemoryError) as exc:
        raise KeyFileError(f"key file's scrypt parameters cannot be used here ({exc})") from None
    return stretched[:32], stretched[32:]


def _mac_input(header: dict[str, Any], nonce: bytes, ciphertext: bytes) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + nonce + ciphertext


def _mac_header(scheme: str, public_key: bytes, salt: bytes, params: dict[str, int]) -> dict[str, Any]:
    # Binds scheme, public key and KDF parameters to the ciphertext: none can be swapped unnoticed.
    return {"scheme": scheme, "public_key": public_key.hex(), "kdf": "scrypt", **params, "salt": salt.hex()}


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream))


def _encrypt(scheme: str, secret_key: bytes, public_key: bytes, passphrase: bytes) -> dict[str, Any]:
    salt, nonce = secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(_NONCE_BYTES)
    enc_key, mac_key = _kdf(passphrase, salt, **_SCRYPT)
    ciphertext = _xor(secret_key, blake3.blake3(nonce, key=enc_key).digest(length=len(secret_key)))
    tag = blake3.blake3(_mac_input(_mac_header(scheme, public_key, salt, _SCRYPT), nonce, ciphertext), key=mac_key).digest()
    return {
        "kdf": "scrypt", **_SCRYPT, "salt": salt.hex(), "cipher": "blake3-keyed-xof",
        "nonce": nonce.hex(), "ciphertext": ciphertext.hex(), "mac": tag.hex(),
    }


def write_key_file(path: str, scheme: str, secret_key: bytes, public_key: bytes, passphrase: bytes | None = None) -> None:
    """Create the key file ``path`` (mode 0600), whole or not at all; never replace a file."""
    if scheme not in SCHEME_NAMES:
        raise KeyFileError(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEME_NAMES)}")
    if "\0" in path:
        raise KeyFileError(f"cannot create key file {path!r}: the path contains a NUL byte")
    secret_key, public_key = as_bytes(secret_key, "a secret key"), as_bytes(public_key, "a public key")
    doc: dict[str, Any] = {"format": FORMAT, "scheme": scheme, "public_key": public_key.hex()}
    if passphrase is None:
        doc["secret_key"] = secret_key.hex()
    else:
        doc["encrypted"] = _encrypt(scheme, secret_key, public_key, as_bytes(passphrase, "a passphrase"))
    data = (json.dumps(doc, indent=2) + "\n").encode()
    try:
        write_new(path, data, "key file", mode=0o600)
    except InputError as exc:
        # write_new refuses an existing name atomically; the check after it only picks the message.
        if os.path.lexists(path):
            raise KeyFileError(f"{path} already exists; poe never overwrites a key file") from None
        raise KeyFileError(f"{exc.message}; nothing was kept") from None


def _read_private_file(path: str) -> bytes:
    """The bytes of ``path`` if it is a private regular file of at most MAX_KEY_FILE_BYTES."""
    try:
        # lstat first: opening a FIFO blocks and opening a device can act, so neither is opened.
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise KeyFileError(f"cannot read key file {path}: it is {kind}")
        # O_NOFOLLOW and fstat: the file read is the file checked, even if the path is swapped.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise KeyFileError(f"cannot read key file {path!r}: the path contains a NUL byte") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"cannot read key file {path}: it is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}` first"
            )
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(_too_large(path))
        return _read_capped(fd, path)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _too_large(path: str) -> str:
    return f"{path} is larger than {MAX_KEY_FILE_BYTES} bytes, which no key file is"


def _read_capped(fd: int, path: str) -> bytes:
    # The size was checked, but the file may grow while it is read; os.read may also return less.
    chunks, total = [], 0
    while chunk := os.read(fd, 65536):
        total += len(chunk)
        if total > MAX_KEY_FILE_BYTES:
            raise KeyFileError(_too_large(path))
        chunks.append(chunk)
    return b"".join(chunks)


def _nested_too_deep(text: str) -> bool:
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > _MAX_DEPTH:
            return True
    return False


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of repeated fields; two public keys in one file is no key file.
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"field {name!r} appears more than once")
        out[name] = value
    return out


def _parse(path: str, raw: bytes) -> Any:
    try:
        # Decoded here, not by json.loads: given bytes it would also accept UTF-16 and UTF-32.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{path} is not UTF-8 text (byte {exc.start}); a key file is JSON") from None
    if _nested_too_deep(text):
        raise KeyFileError(f"{path} nests JSON more than {_MAX_DEPTH} levels deep; it is no poe key file")
    try:
        return json.loads(text, object_pairs_hook=_unique_fields)
    except RecursionError:  # unreachable after the depth check; kept so it can never be exit 4
        raise KeyFileError(f"{path} nests JSON too deeply; it is no poe key file") from None
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a poe key file ({exc})") from None


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _field(path: str, obj: dict[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise KeyFileError(f"{path} is not a poe key file (it has no {where}{name})")
    return obj[name]


def _hex_field(path: str, obj: dict[str, Any], name: str, where: str = "", size: int | None = None) -> bytes:
    value = _field(path, obj, name, where)
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        # The value itself is not shown: a mistyped secret key must not end up in a log.
        given = f"{len(value)} characters given" if isinstance(value, str) else f"not {_json_type(value)}"
        raise KeyFileError(f"{path}: {where}{name} must be a non-empty string of hex digit pairs ({given})")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise KeyFileError(f"{path}: {where}{name} must have {size} bytes, not {len(raw)}")
    return raw


def _int_field(path: str, obj: dict[str, Any], name: str, where: str) -> int:
    value = _field(path, obj, name, where)
    if not isinstance(value, int) or isinstance(value, bool):
        raise KeyFileError(f"{path}: {where}{name} must be an integer, not {_json_type(value)}")
    return value


def _check_fields(path: str, obj: object, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise KeyFileError(f"{path} is not a poe key file ({where.rstrip('.') or 'the file'} must be a JSON object, not {_json_type(obj)})")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise KeyFileError(f"{path} is not a poe key file (unknown {where}fields: {', '.join(map(repr, unknown))})")
    return obj


@dataclass(frozen=True)
class _Encrypted:
    params: dict[str, int]
    salt: bytes
    nonce: bytes
    ciphertext: bytes
    mac: bytes


def _decode_encrypted(path: str, value: object) -> _Encrypted:
    where = "encrypted."
    e = _check_fields(path, value, _ENCRYPTED_FIELDS, where)
    if _field(path, e, "kdf", where) != "scrypt" or _field(path, e, "cipher", where) != "blake3-keyed-xof":
        raise KeyFileError(f"{path}: unknown key encryption (poe knows kdf 'scrypt' with cipher 'blake3-keyed-xof')")
    return _Encrypted(
        params={k: _int_field(path, e, k, where) for k in ("n", "r", "p")},
        salt=_hex_field(path, e, "salt", where, _SALT_BYTES),
        nonce=_hex_field(path, e, "nonce", where, _NONCE_BYTES),
        ciphertext=_hex_field(path, e, "ciphertext", where),
        mac=_hex_field(path, e, "mac", where, _MAC_BYTES),
    )


def _decode(path: str, value: object) -> tuple[str, bytes, bytes | None, _Encrypted | None]:
    """(scheme, public key, plain secret key or None, encryption or None) of a key file document."""
    # The format first: for some other document, "not a key file" is the useful message.
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise KeyFileError(f"{path} is not a poe key file (a JSON object with format {FORMAT!r} is expected)")
    doc = _check_fields(path, value, _FIELDS, "")
    if ("encrypted" in doc) == ("secret_key" in doc):
        raise KeyFileError(f"{path} is not a poe key file (exactly one of secret_key or encrypted is expected)")
    scheme = _field(path, doc, "scheme", "")
    if not isinstance(scheme, str) or scheme not in SCHEME_NAMES:
        shown = repr(scheme) if isinstance(scheme, str) else _json_type(scheme)
        raise KeyFileError(f"{path}: scheme must be one of {', '.join(SCHEME_NAMES)}, not {shown}")
    public_key = _hex_field(path, doc, "public_key")
    if "encrypted" in doc:
        return scheme, public_key, None, _decode_encrypted(path, doc["encrypted"])
    return scheme, public_key, _hex_field(path, doc, "secret_key"), None


def _decrypt(path: str, scheme: str, public_key: bytes, e: _Encrypted, passphrase: bytes) -> bytes:
    enc_key, mac_key = _kdf(passphrase, e.salt, **e.params)
    expected = blake3.blake3(_mac_input(_mac_header(scheme, public_key, e.salt, e.params), e.nonce, e.ciphertext), key=mac_key).digest()
    if not hmac.compare_digest(expected, e.mac):
        raise PassphraseError(f"the passphrase does not open {path} (or the file was altered)")
    return _xor(e.ciphertext, blake3.blake3(e.nonce, key=enc_key).digest(length=len(e.ciphertext)))


def read_key_file(path: str, passphrase: bytes | None = None, *, unlock: bool = True) -> KeyFile:
    """Read a key file; with `unlock`, decrypt its secret (a passphrase is needed if encrypted)."""
    scheme, public_key, secret_key, encrypted = _decode(path, _parse(path, _read_private_file(path)))
    if not unlock:
        return KeyFile(scheme, public_key, None, encrypted is not None)
    if encrypted is None:
        return KeyFile(scheme, public_key, secret_key, False)
    if passphrase is None:
        raise PassphraseError(f"{path} is encrypted: give its passphrase (--passphrase-file, or POE_PASSPHRASE)")
    return KeyFile(scheme, public_key, _decrypt(path, scheme, public_key, encrypted, as_bytes(passphrase, "a passphrase")), True)


def read_signing_key(path: str, passphrase: Callable[[], bytes | None]) -> tuple[Any, KeyFile]:
    """(scheme, unlocked key) of a key file that is about to sign. ``passphrase`` is asked only
    if the file is encrypted. A secret that does not make the public key stored beside it is
    refused: whatever it signed would not verify under the key the file names."""
    from poe.crypto.schemes import get_scheme

    locked = read_key_file(path, unlock=False)
    key = read_key_file(path, passphrase() if locked.encrypted else None)
    scheme = get_scheme(key.scheme)
    if scheme.public_key(key.secret_key) != key.public_key:
        raise KeyFileError(f"{path}: the secret key does not match the public key stored beside it; nothing was signed")
    return scheme, key
