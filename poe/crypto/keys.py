"""Key files: a provider's signing key at rest (docs/spec.md §11.4).

A key file is JSON, written with mode 0600 and never over an existing file; a key file that
others can read is refused, as ssh refuses one. With a passphrase the secret is encrypted:
scrypt stretches the passphrase into two 32-byte keys, the secret is XORed with a BLAKE3
keyed extendable output over a random nonce, and a BLAKE3 keyed MAC over the header, nonce and
ciphertext authenticates it (encrypt-then-MAC). A wrong passphrase fails the MAC, and nothing
is signed.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from typing import Any

import blake3

from poe.errors import KeyFileError, PassphraseError

__all__ = ["KeyFile", "write_key_file", "read_key_file"]

FORMAT = "poe key v1"
_SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}


@dataclass(frozen=True)
class KeyFile:
    scheme: str
    public_key: bytes
    secret_key: bytes | None  # None until unlocked
    encrypted: bool


def _kdf(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    if not (1 << 10 <= n <= 1 << 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise KeyFileError("key file asks for scrypt parameters outside the accepted range")
    try:
        stretched = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=64)
    except (ValueError, MemoryError) as exc:
        raise KeyFileError(f"key file's scrypt parameters cannot be used here ({exc})") from None
    return stretched[:32], stretched[32:]


def _mac_input(header: dict[str, Any], nonce: bytes, ciphertext: bytes) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + nonce + ciphertext


def write_key_file(path: str, scheme: str, secret_key: bytes, public_key: bytes, passphrase: bytes | None = None) -> None:
    doc: dict[str, Any] = {"format": FORMAT, "scheme": scheme, "public_key": public_key.hex()}
    if passphrase is None:
        doc["secret_key"] = secret_key.hex()
    else:
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(24)
        enc_key, mac_key = _kdf(passphrase, salt, **_SCRYPT)
        stream = blake3.blake3(nonce, key=enc_key).digest(length=len(secret_key))
        ciphertext = bytes(a ^ b for a, b in zip(secret_key, stream))
        header = {"scheme": scheme, "public_key": public_key.hex(), "kdf": "scrypt", **_SCRYPT, "salt": salt.hex()}
        tag = blake3.blake3(_mac_input(header, nonce, ciphertext), key=mac_key).digest()
        doc["encrypted"] = {
            "kdf": "scrypt", **_SCRYPT, "salt": salt.hex(), "cipher": "blake3-keyed-xof",
            "nonce": nonce.hex(), "ciphertext": ciphertext.hex(), "mac": tag.hex(),
        }
    data = (json.dumps(doc, indent=2) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; poe never overwrites a key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked (a full disk, a file-size limit)
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        os.unlink(path)
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror}; nothing was kept") from None
    os.close(fd)


def read_key_file(path: str, passphrase: bytes | None = None, *, unlock: bool = True) -> KeyFile:
    """Read a key file; with `unlock`, decrypt its secret (a passphrase is needed if encrypted)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)  # of the file opened, so it cannot be swapped after the check
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"{path} is not a regular file")
            if st.st_mode & 0o077:
                raise KeyFileError(
                    f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}` first"
                )
            raw = os.read(fd, 65536)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path}") from None
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise KeyFileError(f"cannot read key file {path}: {reason}") from None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not a poe key file")
        scheme, public_key = doc["scheme"], bytes.fromhex(doc["public_key"])
        encrypted = "encrypted" in doc
        if encrypted == ("secret_key" in doc):
            raise ValueError("exactly one of secret_key or encrypted is expected")
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a poe key file ({exc})") from None
    if not unlock:
        return KeyFile(scheme, public_key, None, encrypted)
    if not encrypted:
        try:
            return KeyFile(scheme, public_key, bytes.fromhex(doc["secret_key"]), False)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path} has a malformed secret key") from None
    if passphrase is None:
        raise PassphraseError(f"{path} is encrypted: give its passphrase (--passphrase-file, or POE_PASSPHRASE)")
    try:
        e = doc["encrypted"]
        if e.get("kdf") != "scrypt" or e.get("cipher") != "blake3-keyed-xof":
            raise ValueError("unknown key encryption")
        salt, nonce = bytes.fromhex(e["salt"]), bytes.fromhex(e["nonce"])
        ciphertext, tag = bytes.fromhex(e["ciphertext"]), bytes.fromhex(e["mac"])
        params = {"n": int(e["n"]), "r": int(e["r"]), "p": int(e["p"])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyFileError(f"{path} has malformed encryption fields ({exc})") from None
    enc_key, mac_key = _kdf(passphrase, salt, **params)
    header = {"scheme": scheme, "public_key": public_key.hex(), "kdf": "scrypt", **params, "salt": salt.hex()}
    expected = blake3.blake3(_mac_input(header, nonce, ciphertext), key=mac_key).digest()
    if not hmac.compare_digest(expected, tag):
        raise PassphraseError(f"the passphrase does not open {path} (or the file was altered)")
    stream = blake3.blake3(nonce, key=enc_key).digest(length=len(ciphertext))
    return KeyFile(scheme, public_key, bytes(a ^ b for a, b in zip(ciphertext, stream)), True)
