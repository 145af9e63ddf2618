"""Attestations: signed epoch heads, keys at rest, and the lies a verifier must refuse."""

from __future__ import annotations

import base64
import dataclasses
import json
import os

import pytest
from click.testing import CliRunner

from poe import CostModel, Executor, Invocation, Limits, Service, TraceStore, Value
from poe.protocol.attestation import EMPTY_ROOT, Envelope, Statement, verify_chain, verify_envelope
from poe.crypto.keys import read_key_file, write_key_file
from poe.crypto.schemes import get_scheme
from poe.merkle.hasher import Root, Sums
from poe.cli import main
from poe.errors import (
    ChainError,
    CostModelMismatchError,
    EncodingError,
    KeyFileError,
    PassphraseError,
    PoEError,
    SignatureError,
    VerificationError,
)

from .conftest import module_bytes, with_root

CM = CostModel.current(Limits(fuel=10_000_000, memory_pages=64))
SERVICE = Service(module_bytes("funcs.wasm"), name="funcs.wasm")


def _poe(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _grow(path: str, n: int, start: int = 0) -> None:
    ex = Executor(SERVICE, CM)
    with TraceStore.create_or_open(path, CM) as store:
        store.register_service(SERVICE)
        for i in range(start, start + n):
            store.append(ex.run(Invocation.build("fib", params=[Value.of("i32", i % 30)]), store.next_index))


@pytest.fixture(params=["bls12-381", "secp256k1"])
def signed(request, tmp_path):
    """A store with two attested epochs, for each scheme: (scheme, key path, [envelope paths])."""
    scheme = get_scheme(request.param)
    sk = scheme.generate_key(b"poe attestation tests seed 0001" + request.param.encode()[:1])
    key = tmp_path / "provider.key"
    write_key_file(str(key), scheme.name, sk, scheme.public_key(sk))
    store = str(tmp_path / "trace.poe")
    envs = []
    for epoch, (n, start) in enumerate(((12, 0), (7, 12))):
        _grow(store, n, start)
        out = tmp_path / f"e{epoch}.json"
        r = _poe("attest", store, "--key", str(key), "--deal", "deal-42", "--out", str(out))
        assert r.exit_code == 0, r.stderr
        envs.append(str(out))
    return scheme, str(key), envs, store


def _load(path: str) -> Envelope:
    with open(path) as f:
        return Envelope.loads(f.read())


def _resign(env: Envelope, key_path: str, **changes) -> Envelope:
    """A provider lying on purpose: a changed statement, properly signed with its own key."""
    key = read_key_file(key_path)
    scheme = get_scheme(key.scheme)
    st = dataclasses.replace(env.statement, **changes)
    return dataclasses.replace(env, statement_bytes=st.encode(), signature=scheme.sign(key.secret_key, st.digest))


def test_attestations_verify_alone_and_as_a_chain(signed):
    scheme, _, envs, _ = signed
    reports = [verify_envelope(_load(p), scheme) for p in envs]
    assert all(r.reproducible for r in reports)
    verify_chain([r.statement for r in reports])
    first, second = (r.statement for r in reports)
    assert second.previous_root == first.root and first.previous_root == EMPTY_ROOT
    r = _poe("verify-attestation", *envs, "--pubkey", first.public_key.hex(), "--json")
    assert r.exit_code == 0, r.stdout
    assert json.loads(r.stdout)["chain"]["ok"]


def test_secp256k1_attestation_recovers_to_the_signers_address(signed):
    scheme, _, envs, _ = signed
    if scheme.name != "secp256k1":
        pytest.skip("ecrecover applies to secp256k1")
    env = _load(envs[0])
    assert scheme.recover(env.statement.digest, env.signature) == scheme.identity(env.statement.public_key)


def test_tampered_root_is_rejected(signed):
    scheme, _, envs, _ = signed
    env = _load(envs[1])
    st = env.statement
    forged = dataclasses.replace(st, root=Root(st.root.size, bytes(32), st.root.sums))
    with pytest.raises(SignatureError):
        verify_envelope(dataclasses.replace(env, statement_bytes=forged.encode()), scheme)


def test_tampered_totals_are_rejected(signed):
    scheme, _, envs, _ = signed
    env = _load(envs[1])
    st = env.statement
    inflated = Root(st.root.size, st.root.hash, Sums(st.root.sums.fuel * 2, st.root.sums.mem, st.root.sums.io))
    with pytest.raises(SignatureError):
        verify_envelope(dataclasses.replace(env, statement_bytes=with_root(st, inflated).encode()), scheme)


def test_signed_inflated_totals_fail_the_consistency_proof(signed):
    """The provider re-signs a head with inflated totals: the signature holds, the proof does not."""
    scheme, key, envs, _ = signed
    env = _load(envs[1])
    st = env.statement
    inflated = Root(st.root.size, st.root.hash, Sums(st.root.sums.fuel + 1000, st.root.sums.mem, st.root.sums.io))
    with pytest.raises(VerificationError):
        forged = with_root(st, inflated)
        verify_envelope(_resign(env, key, root=forged.root, bill_root=forged.bill_root), scheme)


def test_signature_by_another_key_is_rejected(signed):
    scheme, _, envs, _ = signed
    env = _load(envs[0])
    other = scheme.generate_key(b"an entirely different key seed 000")
    st = dataclasses.replace(env.statement, public_key=scheme.public_key(other))
    with pytest.raises(SignatureError):
        verify_envelope(dataclasses.replace(env, statement_bytes=st.encode()), scheme)


def test_valid_attestation_from_an_untrusted_key_is_rejected(signed):
    scheme, _, envs, _ = signed
    stranger = scheme.public_key(scheme.generate_key(b"a stranger whose key we do not trust"))
    with pytest.raises(VerificationError, match="did not trust"):
        verify_envelope(_load(envs[0]), scheme, trusted_keys=[stranger])


def test_cost_model_swapped_in_the_envelope_is_rejected(signed):
    scheme, _, envs, _ = signed
    env = _load(envs[0])
    other = CostModel.current(Limits(fuel=10_000_001, memory_pages=64)).to_json()
    with pytest.raises(VerificationError, match="signed digest"):
        verify_envelope(dataclasses.replace(env, cost_model=other), scheme)


def test_cost_model_this_machine_cannot_reproduce_is_reported_or_refused(signed):
    scheme, key, envs, _ = signed
    env = _load(envs[0])
    foreign = dict(env.cost_model, wasmtime="45.0.0")
    forged = _resign(dataclasses.replace(env, cost_model=foreign), key, cost_model_digest=CostModel.from_json(foreign).digest)
    report = verify_envelope(forged, scheme)
    assert not report.reproducible and "45.0.0" in report.note
    with pytest.raises(CostModelMismatchError):
        verify_envelope(forged, scheme, require_reproducible=True)


def test_consistency_proof_swapped_or_missing_is_rejected(signed):
    scheme, _, envs, _ = signed
    env = _load(envs[1])
    proof = bytearray(env.consistency_proof)
    proof[-1] ^= 1
    with pytest.raises(VerificationError):
        verify_envelope(dataclasses.replace(env, consistency_proof=bytes(proof)), scheme)
    with pytest.raises(VerificationError):
        verify_envelope(dataclasses.replace(env, consistency_proof=None), scheme)


def test_replay_of_an_old_epoch_is_rejected(signed):
    _, _, envs, _ = signed
    first, second = (_load(p).statement for p in envs)
    with pytest.raises(ChainError, match="replay|older"):
        verify_chain([first], previous=second)
    with pytest.raises(ChainError, match="replay"):
        verify_chain([second], previous=second)
    r = _poe("verify-attestation", envs[0], "--previous", envs[1])
    assert r.exit_code == 1 and "attest.chain-broken" in r.stderr


def test_broken_chain_is_rejected(signed):
    scheme, key, envs, _ = signed
    first, second = _load(envs[0]), _load(envs[1])
    rewritten_history = dataclasses.replace(first.statement, root=Root(first.statement.root.size, b"\x01" * 32, first.statement.root.sums))
    with pytest.raises(ChainError, match="does not continue"):
        verify_chain([rewritten_history, second.statement])


def test_equivocation_two_heads_for_one_epoch_is_rejected(signed):
    _, _, envs, _ = signed
    st = _load(envs[1]).statement
    twin = dataclasses.replace(st, root=Root(st.root.size, b"\x02" * 32, st.root.sums))
    with pytest.raises(ChainError, match="equivocation"):
        verify_chain([st, twin])


def test_gap_in_the_chain_is_rejected(signed):
    _, _, envs, _ = signed
    first, second = (_load(p).statement for p in envs)
    with pytest.raises(ChainError, match="missing"):
        verify_chain([first, dataclasses.replace(second, epoch=2)])


def test_non_canonical_statement_encoding_is_rejected(signed):
    _, _, envs, _ = signed
    raw = _load(envs[0]).statement_bytes
    assert raw[0] == 3  # poe attest signs version 3, with the ordered bill tree's root
    # trailing byte, truncation, version 1 over version-3 bytes, an unknown version, an unknown scheme
    for bad in (raw + b"\x00", raw[:-1], bytes([1]) + raw[1:], bytes([4]) + raw[1:], raw[:1] + bytes([9]) + raw[2:]):
        with pytest.raises(EncodingError):
            Statement.decode(bad)


def test_infinity_public_key_is_rejected(signed):
    scheme, _, envs, _ = signed
    if scheme.name != "bls12-381":
        pytest.skip("the point at infinity is a BLS key encoding")
    env = _load(envs[0])
    st = dataclasses.replace(env.statement, public_key=bytes([0xC0]) + bytes(47))
    with pytest.raises(PoEError) as e:
        verify_envelope(dataclasses.replace(env, statement_bytes=st.encode()), scheme)
    assert e.value.code in ("attest.bad-key", "attest.bad-signature")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: "garbage",
        lambda d: json.dumps(d)[:40],
        lambda d: json.dumps({**d, "extra": 1}),
        lambda d: json.dumps({**d, "signatures": d["signatures"] * 2}),
        lambda d: json.dumps({**d, "payloadType": "application/json"}),
        lambda d: json.dumps({**d, "payload": "not base64!"}),
        lambda d: json.dumps({**d, "cost_model": "x"}),
        lambda d: json.dumps({**d, "consistency_proof": "zz"}),
        lambda d: " " * (1 << 20) + json.dumps(d),
    ],
    ids=["garbage", "truncated", "extra-field", "two-signatures", "payload-type", "payload-b64", "cost-model", "proof-hex", "oversized"],
)
def test_malformed_envelopes_are_clear_errors_with_exit_3(signed, tmp_path, mutate):
    _, _, envs, _ = signed
    with open(envs[0]) as f:
        d = json.load(f)
    bad = tmp_path / "bad.json"
    bad.write_text(mutate(d))
    r = _poe("verify-attestation", str(bad))
    assert r.exit_code == 3, r.stderr
    assert "FAIL" in r.stderr and "Traceback" not in r.stderr


def test_batch_names_the_file_with_the_bad_signature(signed, tmp_path):
    scheme, _, envs, _ = signed
    env = _load(envs[1])
    sig = bytearray(scheme.sign(scheme.generate_key(b"someone else signs this statement x"), env.statement.digest))
    bad = tmp_path / "bad.json"
    bad.write_text(dataclasses.replace(env, signature=bytes(sig)).dumps())
    r = _poe("verify-attestation", envs[0], str(bad), "--json")
    assert r.exit_code == 1
    files = json.loads(r.stdout)["files"]
    assert files[envs[0]]["ok"] and not files[str(bad)]["ok"]
    assert files[str(bad)]["error"]["code"].startswith("attest.")


# -- keys at rest -------------------------------------------------------------------------


def test_key_file_is_private_and_never_overwritten(tmp_path):
    out = tmp_path / "k.key"
    r = _poe("keygen", "--scheme", "secp256k1", "--out", str(out))
    assert r.exit_code == 0 and (os.stat(out).st_mode & 0o777) == 0o600
    before = out.read_bytes()
    r = _poe("keygen", "--scheme", "bls", "--out", str(out))
    assert r.exit_code == 3 and "never overwrites" in r.stderr and out.read_bytes() == before


def test_key_file_readable_by_others_is_refused_and_nothing_is_signed(signed, tmp_path):
    _, key, _, store = signed
    os.chmod(key, 0o644)
    r = _poe("attest", store, "--key", key, "--deal", "d", "--out", str(tmp_path / "x.json"))
    assert r.exit_code == 3 and "chmod 600" in r.stderr and not (tmp_path / "x.json").exists()


def test_encrypted_key_round_trips_and_a_wrong_passphrase_signs_nothing(tmp_path):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("correct horse battery staple\n")
    bad.write_text("Tr0ub4dor&3\n")
    key = tmp_path / "enc.key"
    assert _poe("keygen", "--scheme", "bls", "--out", str(key), "--encrypt", "--passphrase-file", str(good)).exit_code == 0
    assert "secret_key" not in key.read_text()
    unlocked = read_key_file(str(key), b"correct horse battery staple")
    assert get_scheme("bls12-381").public_key(unlocked.secret_key) == unlocked.public_key
    with pytest.raises(PassphraseError):
        read_key_file(str(key), b"Tr0ub4dor&3")
    store = str(tmp_path / "s.poe")
    _grow(store, 3)
    r = _poe("attest", store, "--key", str(key), "--deal", "d", "--passphrase-file", str(bad), "--out", str(tmp_path / "a.json"))
    assert r.exit_code == 3 and "attest.bad-passphrase" in r.stderr and not (tmp_path / "a.json").exists()
    r = _poe("pubkey", str(key), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["public_key"] == unlocked.public_key.hex()


def test_altered_encrypted_key_file_is_refused(tmp_path):
    s = get_scheme("secp256k1")
    sk = s.generate_key(b"a seed for the altered key file test")
    key = tmp_path / "k.key"
    write_key_file(str(key), s.name, sk, s.public_key(sk), b"pw")
    doc = json.loads(key.read_text())
    doc["encrypted"]["ciphertext"] = ("00" if doc["encrypted"]["ciphertext"][:2] != "00" else "01") + doc["encrypted"]["ciphertext"][2:]
    os.chmod(key, 0o600)
    key.write_text(json.dumps(doc))
    with pytest.raises(PassphraseError):
        read_key_file(str(key), b"pw")


def _forge_public_half(scheme, key: str, tmp_path) -> str:
    """A copy of the key file whose stored public key belongs to someone else."""
    doc = json.loads(open(key).read())
    doc["public_key"] = scheme.public_key(scheme.generate_key(b"the public key an attacker wants used")).hex()
    forged = tmp_path / "forged.key"
    fd = os.open(forged, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(doc).encode())
    os.close(fd)
    return str(forged)


def test_key_whose_public_half_was_swapped_signs_nothing(signed, tmp_path):
    scheme, key, _, store = signed
    forged = _forge_public_half(scheme, key, tmp_path)
    r = _poe("attest", store, "--key", forged, "--deal", "d", "--out", str(tmp_path / "x.json"))
    assert r.exit_code == 3 and "does not match" in r.stderr and not (tmp_path / "x.json").exists()


def test_auditor_key_whose_public_half_was_swapped_signs_no_verdict(signed, tmp_path):
    # Every command that signs reads its key the same way (poe.crypto.keys.read_signing_key); the
    # audit used to skip the check, so a verdict could name an auditor whose key never signed it.
    scheme, key, _, _ = signed
    forged = _forge_public_half(scheme, key, tmp_path)
    out = tmp_path / "v.json"
    r = _poe("audit", "c.json", "ch.json", "o.json", "--deal", "d.json", "--module", "m.wasm", "--key", forged, "--out", str(out))
    assert r.exit_code == 3 and "does not match" in r.stderr and not out.exists()


@pytest.mark.parametrize("content", ["", "{}", '{"format": "poe key v1"}', "not json", '{"format": "poe key v1", "scheme": "bls12-381", "public_key": "00", "secret_key": "zz"}'])
def test_garbage_key_files_are_clear_errors(tmp_path, content):
    key = tmp_path / "g.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(KeyFileError):
        read_key_file(str(key))


def test_unknown_scheme_is_a_usage_error(tmp_path):
    assert _poe("keygen", "--scheme", "rsa", "--out", str(tmp_path / "k")).exit_code == 2


def test_envelope_round_trips_through_json(signed):
    _, _, envs, _ = signed
    env = _load(envs[1])
    assert Envelope.loads(env.dumps()) == env
    assert base64.b64decode(json.loads(env.dumps())["payload"]) == env.statement_bytes


# -- hardening after review -------------------------------------------------------------------


def test_empty_epoch_carrying_invented_totals_is_rejected(signed):
    """A head of size 0 that is not the empty tree would bill anything with nothing to audit."""
    scheme, key, envs, _ = signed
    env = _load(envs[0])
    fake_empty = Root(0, b"\x05" * 32, Sums(10**30, 10**30, 10**30))
    with pytest.raises(EncodingError, match="size 0"):
        dataclasses.replace(env.statement, first_index=0, end_index=0, root=fake_empty).encode()


def test_previous_attestation_binds_key_and_deal(signed):
    scheme, key, envs, _ = signed
    first, second = (_load(p).statement for p in envs)
    lookalike = dataclasses.replace(second, deal_id="deal-42\u00ad", epoch=2)  # soft hyphen: invisible
    with pytest.raises(EncodingError):
        lookalike.encode()
    other_key = dataclasses.replace(second, public_key=scheme.public_key(scheme.generate_key(b"a different provider's key seed 1")), epoch=2)
    with pytest.raises(ChainError, match="another key or deal"):
        verify_chain([other_key], previous=second)


def test_chain_cannot_switch_cost_model_midway(signed):
    _, _, envs, _ = signed
    first, second = (_load(p).statement for p in envs)
    with pytest.raises(ChainError, match="switches"):
        verify_chain([first, dataclasses.replace(second, cost_model_digest=b"\x09" * 32)])


def test_bls_envelope_must_carry_a_valid_proof_of_possession(signed):
    scheme, _, envs, _ = signed
    env = _load(envs[0])
    if scheme.name != "bls12-381":
        with pytest.raises(EncodingError, match="only BLS"):
            verify_envelope(dataclasses.replace(env, proof_of_possession=b"\x00" * 96), scheme)
        return
    with pytest.raises(EncodingError, match="proof of possession"):
        verify_envelope(dataclasses.replace(env, proof_of_possession=None), scheme)
    with pytest.raises(PoEError):
        verify_envelope(dataclasses.replace(env, proof_of_possession=env.signature), scheme)


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "poe", "verify-attestation", str(deep)], capture_output=True, text=True)
    assert r.returncode == 3 and "Traceback" not in r.stderr


def test_failed_attest_seals_nothing(signed, tmp_path):
    _, key, envs, store = signed
    _grow(store, 3, 100)
    before = TraceStore.open(store).epochs()
    r = _poe("attest", store, "--key", key, "--deal", "bad\u202edeal", "--out", str(tmp_path / "x.json"))
    assert r.exit_code == 3
    r = _poe("attest", store, "--key", key, "--deal", "deal-42", "--out", envs[0])  # exists already
    assert r.exit_code == 3
    assert TraceStore.open(store).epochs() == before


def test_short_write_of_a_key_file_keeps_nothing(tmp_path):
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (120, 120))

    out = tmp_path / "k.key"
    r = subprocess.run([sys.executable, "-m", "poe", "keygen", "--scheme", "bls", "--out", str(out)], preexec_fn=limit, capture_output=True, text=True)
    assert r.returncode == 3 and "nothing was kept" in r.stderr and not out.exists()


def test_passphrase_bytes_from_the_environment_need_not_be_utf8(tmp_path):
    import subprocess
    import sys

    key = tmp_path / "k.key"
    env = {**os.environ, "POE_PASSPHRASE": "caf\udce9"}
    env_b = {k.encode(): v.encode("utf-8", "surrogateescape") for k, v in env.items()}
    r = subprocess.run([sys.executable, "-m", "poe", "keygen", "--scheme", "secp256k1", "--out", str(key), "--encrypt"], env=env_b, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert read_key_file(str(key), b"caf\xe9").secret_key is not None


def test_key_file_with_unusable_scrypt_parameters_is_a_key_file_error(tmp_path):
    s = get_scheme("secp256k1")
    sk = s.generate_key(b"seed for the scrypt parameter test!!")
    key = tmp_path / "k.key"
    write_key_file(str(key), s.name, sk, s.public_key(sk), b"pw")
    doc = json.loads(key.read_text())
    doc["encrypted"]["n"] = 1 << 20
    key.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError):
        read_key_file(str(key), b"pw")


def test_pubkey_pop_refuses_a_mismatched_key_file(signed, tmp_path):
    scheme, key, _, _ = signed
    r = _poe("pubkey", _forge_public_half(scheme, key, tmp_path), "--pop")
    assert r.exit_code == 3
