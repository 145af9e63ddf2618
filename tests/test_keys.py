"""Key files under attack: hostile paths and contents are input errors (exit 3), never crashes,
hangs or exit 4; key files are created whole or not at all, private, and never over a file."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import poe._io
from poe.cli import main
from poe.crypto.keys import MAX_KEY_FILE_BYTES, read_key_file, write_key_file
from poe.errors import KeyFileError

# Fixed 32-byte secret keys (valid for both schemes); the public key field is only checked for
# being hex here, so these tests need no signature backend.
SECRET = bytes(31) + b"\x07"
PUBLIC = b"\x02" + bytes(32)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _poe(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _private(path, content: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return str(path)


def _key_doc(**changes) -> dict:
    doc = {"format": "poe key v1", "scheme": "secp256k1", "public_key": PUBLIC.hex(), "secret_key": SECRET.hex()}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not _DROP}


_DROP = object()


def _encrypted_doc(tmp_path, **changes) -> dict:
    path = tmp_path / "enc.key"
    write_key_file(str(path), "secp256k1", SECRET, PUBLIC, b"pw")
    doc = json.loads(path.read_text())
    doc["encrypted"].update(changes)
    return doc


def _refused(path: str, *needles: str) -> None:
    """read_key_file and `poe pubkey` both refuse ``path`` as a key-file error (exit 3)."""
    with pytest.raises(KeyFileError) as info:
        read_key_file(path)
    for needle in needles:
        assert needle in info.value.message, info.value.message
    r = _poe("pubkey", path)
    assert r.exit_code == 3 and "[attest.key-file]" in r.stderr, r.stderr


# -- contents ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["[" * 100_000, '{"a":' * 100_000, "[" * 3 + "]" * 3, '{"encrypted": {"n": [1]}}'],
    ids=["lists-100000-deep", "objects-100000-deep", "three-levels", "list-inside-encrypted"],
)
def test_deeply_nested_json_key_file_is_an_input_error_not_a_recursion_error(tmp_path, content):
    _refused(_private(tmp_path / "deep.key", content.encode()), "levels deep")


def test_deeply_nested_key_file_is_refused_even_when_the_recursion_limit_was_raised(tmp_path):
    # py-ecc raises the recursion limit to 100000 when imported; json's C parser would then
    # overflow the C stack on '[' * 100000 (a segfault) instead of raising RecursionError.
    key = _private(tmp_path / "deep.key", b"[" * 500_000)
    code = ("import sys; sys.setrecursionlimit(1_000_000)\n"
            "from poe.crypto.keys import read_key_file\nfrom poe.errors import KeyFileError\n"
            "try:\n    read_key_file(sys.argv[1])\nexcept KeyFileError as exc:\n    print('refused:', exc.message)\n")
    out = subprocess.run([sys.executable, "-c", code, key], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and out.stdout.startswith("refused:"), (out.returncode, out.stdout, out.stderr)


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    doc = _key_doc()
    text = json.dumps(doc)[:-1] + ', "x": "[[[[{{{{\\"[[["}'  # an unknown field: refused, but for that
    _refused(_private(tmp_path / "k.key", text.encode()), "unknown fields: 'x'")


def test_oversized_key_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.key"
    _private(path, b"")
    os.truncate(path, 1 << 40)  # sparse: reading it would take hours, refusing it takes a stat
    _refused(str(path), "larger than")


def test_key_file_padded_past_the_cap_is_refused(tmp_path):
    padded = json.dumps(_key_doc()).encode() + b" " * MAX_KEY_FILE_BYTES
    _refused(_private(tmp_path / "padded.key", padded), "larger than")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "latin-1"])
def test_key_file_not_in_utf8_is_refused(tmp_path, encoding):
    # json.loads, given bytes, detects UTF-16 and UTF-32 by their BOM and would take the key.
    text = json.dumps(_key_doc())
    if encoding == "latin-1":
        text = text[:-1] + ', "owner": "Jos\u00e9"}'
    _refused(_private(tmp_path / "k.key", text.encode(encoding)), "UTF-8")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"scheme": 5}, "scheme must be one of"),
        ({"scheme": "rsa"}, "scheme must be one of"),
        ({"scheme": None}, "scheme must be one of"),
        ({"scheme": _DROP}, "no scheme"),
        ({"public_key": 12}, "public_key must be a non-empty string of hex"),
        ({"public_key": "0x" + PUBLIC.hex()}, "public_key must be a non-empty string of hex"),
        ({"public_key": PUBLIC.hex()[:-1]}, "public_key must be a non-empty string of hex"),
        ({"public_key": ""}, "public_key must be a non-empty string of hex"),
        ({"public_key": _DROP}, "no public_key"),
        ({"secret_key": ["00"]}, "secret_key must be a non-empty string of hex"),
        ({"secret_key": "ab cd"}, "secret_key must be a non-empty string of hex"),  # bytes.fromhex takes spaces
        ({"secret_key": True}, "secret_key must be a non-empty string of hex"),
        ({"format": None}, "not a poe key file"),
        ({"format": "poe key v2"}, "not a poe key file"),
        ({"comment": "mine"}, "unknown fields: 'comment'"),
        ({"encrypted": "yes"}, "exactly one of secret_key or encrypted"),
        ({"secret_key": _DROP, "encrypted": "yes"}, "must be a JSON object, not a string"),
        ({"secret_key": _DROP, "encrypted": []}, "must be a JSON object, not a list"),
    ],
)
def test_key_file_fields_of_the_wrong_type_are_refused(tmp_path, changes, needle):
    _refused(_private(tmp_path / "k.key", json.dumps(_key_doc(**changes)).encode()), needle)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"n": "32768"}, "encrypted.n must be an integer, not a string"),  # int() accepted it
        ({"n": 32768.9}, "encrypted.n must be an integer, not a number"),  # int() truncated it
        ({"r": True}, "encrypted.r must be an integer, not a boolean"),
        ({"p": None}, "encrypted.p must be an integer, not null"),
        ({"salt": "00" * 8}, "encrypted.salt must have 16 bytes"),
        ({"nonce": 7}, "encrypted.nonce must be a non-empty string of hex"),
        ({"mac": "00" * 16}, "encrypted.mac must have 32 bytes"),
        ({"ciphertext": ""}, "encrypted.ciphertext must be a non-empty string of hex"),
        ({"kdf": "argon2"}, "unknown key encryption"),
        ({"cipher": 5}, "unknown key encryption"),
        ({"extra": 1}, "unknown encrypted.fields: 'extra'"),
    ],
)
def test_encrypted_key_file_fields_of_the_wrong_type_are_refused(tmp_path, changes, needle):
    doc = _encrypted_doc(tmp_path, **changes)
    _refused(_private(tmp_path / "k.key", json.dumps(doc).encode()), needle)


def test_key_file_with_a_repeated_field_is_refused(tmp_path):
    # json.loads would keep the second public key; which one the file means is not knowable.
    text = json.dumps(_key_doc())[:-1] + f', "public_key": "03{"11" * 32}"}}'
    _refused(_private(tmp_path / "k.key", text.encode()), "'public_key' appears more than once")


def test_key_file_in_a_nul_byte_path_is_a_key_file_error():
    with pytest.raises(KeyFileError):
        read_key_file("provider\0.key")
    with pytest.raises(KeyFileError):
        write_key_file("provider\0.key", "secp256k1", SECRET, PUBLIC)


# -- what the path names ---------------------------------------------------------------------------


def test_fifo_key_path_is_refused_without_blocking(tmp_path):
    # Opening a FIFO for reading blocks until someone writes: a planted FIFO would hang poe.
    fifo = tmp_path / "provider.key"
    os.mkfifo(fifo, 0o600)
    out = subprocess.run([sys.executable, "-m", "poe", "pubkey", str(fifo)], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 3 and "not a regular file" in out.stderr, out.stderr


@pytest.mark.parametrize("make", ["directory", "device", "symlink"])
def test_key_path_that_is_not_a_regular_file_is_refused(tmp_path, make):
    real = _private(tmp_path / "real.key", json.dumps(_key_doc()).encode())
    path = tmp_path / "provider.key"
    if make == "directory":
        path.mkdir(mode=0o700)
    elif make == "symlink":
        path.symlink_to(real)  # a link can be re-pointed after whoever made it checked the target
    else:
        path = "/dev/zero"  # endless: read whole it would never end
    if make == "directory":
        # click's Path(dir_okay=False), as on every file argument of the CLI, refuses it first:
        # a usage error (exit 2) before poe reads anything.
        with pytest.raises(KeyFileError, match="not a regular file"):
            read_key_file(str(path))
        r = _poe("pubkey", str(path))
        assert r.exit_code == 2 and "is a directory" in r.stderr, r.stderr
        return
    _refused(str(path), "symbolic link" if make == "symlink" else "not a regular file")


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = _private(tmp_path / "k.key", json.dumps(_key_doc()).encode())
    os.chmod(path, 0o640)
    _refused(path, "chmod 600")


# -- writing ---------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_file_even_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        out = tmp_path / "k.key"
        r = _poe("keygen", "--scheme", "secp256k1", "--out", str(out), "--json")
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert read_key_file(str(out)).public_key.hex() == json.loads(r.stdout)["public_key"]


def test_keygen_never_writes_through_a_planted_symlink(tmp_path):
    # An attacker who can write the directory plants out -> a file of their choosing.
    target = tmp_path / "attacker-chosen"
    out = tmp_path / "k.key"
    out.symlink_to(target)
    r = _poe("keygen", "--scheme", "secp256k1", "--out", str(out))
    assert r.exit_code == 3 and "never overwrites" in r.stderr, r.stderr
    assert not target.exists() and os.path.islink(out)


def test_keygen_never_overwrites_an_existing_key(tmp_path):
    out = tmp_path / "k.key"
    assert _poe("keygen", "--scheme", "secp256k1", "--out", str(out)).exit_code == 0
    before = out.read_bytes()
    r = _poe("keygen", "--scheme", "bls", "--out", str(out))
    assert r.exit_code == 3 and "never overwrites" in r.stderr and out.read_bytes() == before


def test_key_file_write_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    # A full disk after the first bytes: no half key file may stay behind (it would be
    # unreadable, and it would block the retry, which never overwrites).
    calls = []

    class FullDisk:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def write(fd, data):
            calls.append(len(data))
            if len(calls) == 1:
                return os.write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(poe._io, "os", FullDisk())
    out = tmp_path / "k.key"
    with pytest.raises(KeyFileError, match="disk is full"):
        write_key_file(str(out), "secp256k1", SECRET, PUBLIC, b"pw")
    monkeypatch.undo()
    assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_keygen_into_a_missing_directory_is_a_clear_input_error(tmp_path):
    r = _poe("keygen", "--scheme", "secp256k1", "--out", str(tmp_path / "absent" / "k.key"))
    assert r.exit_code == 3 and "[attest.key-file]" in r.stderr and "directory does not exist" in r.stderr


def test_written_key_files_read_back(tmp_path):
    for i, passphrase in enumerate((None, b"pw")):
        path = str(tmp_path / f"k{i}.key")
        write_key_file(path, "secp256k1", SECRET, PUBLIC, passphrase)
        key = read_key_file(path, passphrase)
        assert (key.scheme, key.public_key, key.secret_key, key.encrypted) == ("secp256k1", PUBLIC, SECRET, passphrase is not None)


# -- the registry ------------------------------------------------------------------------------------


def test_pubkey_of_a_secp256k1_key_loads_no_bls_pairing_code(tmp_path):
    # py-ecc's BLS modules take most of a second to import; a secp256k1 user never needs them.
    key = tmp_path / "k.key"
    assert _poe("keygen", "--scheme", "secp256k1", "--out", str(key)).exit_code == 0
    code = ("import sys; from poe.cli import main\n"
            "try:\n    main(['pubkey', sys.argv[1]], prog_name='poe')\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in sys.modules if m.startswith(('py_ecc.bls', 'py_ecc.optimized_bls12_381', 'poe.crypto.bls'))))")
    out = subprocess.run([sys.executable, "-c", code, str(key)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
