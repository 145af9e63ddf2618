"""EIP-712 typed-data hashing (poe/crypto/eip712.py): the EIP's own example is in
vectors/eip712 (tests/test_vectors.py); here, eth-account (an independent implementation) on
random typed data, wallet signatures recovered by poe, and mutations that must be refused."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poe.crypto import eip712
from poe.crypto.schemes import get_scheme
from poe.errors import EncodingError, PoEError

from .test_schemes import K1_PARAMS

MAIL = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
        "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
        "Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person[]"}, {"name": "contents", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "poe", "chainId": 31337},
    "message": {
        "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
        "to": [{"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"}],
        "contents": "Hello, Bob!",
    },
}


def _eth_account_digest(typed: dict) -> bytes:
    messages = pytest.importorskip("eth_account.messages", reason="eth-account is not installed")
    from eth_utils import keccak

    signable = messages.encode_typed_data(full_message=copy.deepcopy(typed))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


# -- against eth-account ---------------------------------------------------------------------------

_ATOMS = {
    "uint8": st.integers(0, 255),
    "uint256": st.integers(0, 2**256 - 1),
    "int16": st.integers(-(2**15), 2**15 - 1),
    "int256": st.integers(-(2**255), 2**255 - 1),
    "bool": st.booleans(),
    "string": st.text(max_size=40),
    "bytes": st.binary(max_size=80).map(lambda b: "0x" + b.hex()),
    "bytes1": st.binary(min_size=1, max_size=1).map(lambda b: "0x" + b.hex()),
    "bytes32": st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
    "address": st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
}


@st.composite
def _typed_data(draw):
    inner_fields = draw(st.lists(st.sampled_from(sorted(_ATOMS)), min_size=1, max_size=4))
    outer_fields = draw(st.lists(st.sampled_from(sorted(_ATOMS)), min_size=0, max_size=4))
    inner_types = [{"name": f"i{n}", "type": t} for n, t in enumerate(inner_fields)]
    outer_types = [{"name": f"o{n}", "type": t} for n, t in enumerate(outer_fields)]
    outer_types += [{"name": "one", "type": "Inner"}, {"name": "many", "type": "Inner[]"}, {"name": "pair", "type": "uint8[2]"}]

    def inner_value():
        return {f"i{n}": draw(_ATOMS[t]) for n, t in enumerate(inner_fields)}

    message = {f"o{n}": draw(_ATOMS[t]) for n, t in enumerate(outer_fields)}
    message.update(one=inner_value(), many=[inner_value() for _ in range(draw(st.integers(0, 3)))],
                   pair=[draw(_ATOMS["uint8"]), draw(_ATOMS["uint8"])])
    return {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
                  "Inner": inner_types, "Outer": outer_types},
        "primaryType": "Outer",
        "domain": {"name": draw(st.text(max_size=10)), "chainId": draw(st.integers(0, 2**64))},
        "message": message,
    }


@settings(max_examples=60, deadline=None)
@given(typed=_typed_data())
def test_digest_matches_eth_account_on_random_typed_data(typed):
    assert eip712.typed_data_digest(typed) == _eth_account_digest(typed)


def test_nested_arrays_and_mail_match_eth_account():
    assert eip712.typed_data_digest(MAIL) == _eth_account_digest(MAIL)


@pytest.mark.parametrize("k1", K1_PARAMS)
def test_wallet_signature_recovers_to_the_wallet(k1):
    """A signature made by eth-account's sign_typed_data recovers, through poe, to its address."""
    account = pytest.importorskip("eth_account").Account
    wallet = account.from_key(bytes(range(1, 33)))
    signed = wallet.sign_typed_data(full_message=copy.deepcopy(MAIL))
    digest = eip712.typed_data_digest(MAIL)
    assert bytes(signed.message_hash) == digest
    assert k1.recover_hash(digest, bytes(signed.signature)) == wallet.address
    # and poe signs the same bytes (RFC 6979 nonces on both sides)
    assert k1.sign_hash(bytes(range(1, 33)), digest) == bytes(signed.signature)


# -- mutations: each changes what is committed, or is refused ------------------------------------


def _mutated(change) -> dict:
    typed = copy.deepcopy(MAIL)
    change(typed)
    return typed


@pytest.mark.parametrize(
    "name, change",
    [
        ("extra_member", lambda t: t["message"].update(bcc="Eve")),
        ("missing_member", lambda t: t["message"].pop("contents")),
        ("extra_member_in_nested_struct", lambda t: t["message"]["from"].update(age=3)),
        ("uint_overflow", lambda t: t["domain"].update(chainId=2**256)),
        ("negative_uint", lambda t: t["domain"].update(chainId=-1)),
        ("bool_as_integer", lambda t: t["types"]["Mail"].append({"name": "urgent", "type": "bool"}) or t["message"].update(urgent=1)),
        ("integer_as_bool", lambda t: t["domain"].update(chainId=True)),
        ("float_integer", lambda t: t["domain"].update(chainId=1.5)),
        ("short_address", lambda t: t["message"]["from"].update(wallet="0x1234")),
        ("bad_checksum", lambda t: t["message"]["from"].update(wallet="0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD827".replace("CD2a", "Cd2a"))),
        ("array_as_object", lambda t: t["message"].update(to={"name": "Bob"})),
        ("string_as_bytes", lambda t: t["message"].update(contents=b"Hello")),
        ("unknown_type", lambda t: t["types"]["Mail"].append({"name": "x", "type": "Bogus"})),
        ("duplicate_member", lambda t: t["types"]["Person"].append({"name": "name", "type": "string"})),
        ("member_with_extra_key", lambda t: t["types"]["Person"][0].update(indexed=True)),
        ("bytes33", lambda t: t["types"]["Person"].append({"name": "h", "type": "bytes33"})),
        ("uint7", lambda t: t["types"]["Person"].append({"name": "h", "type": "uint7"})),
        ("unknown_domain_member", lambda t: t["domain"].update(owner="me") or t["types"].pop("EIP712Domain")),
        ("missing_primary_type", lambda t: t.pop("primaryType")),
        ("extra_top_level_member", lambda t: t.update(note="x")),
        ("undefined_primary_type", lambda t: t.update(primaryType="Letter")),
    ],
)
def test_malformed_typed_data_is_refused(name, change):
    with pytest.raises(EncodingError):
        eip712.typed_data_digest(_mutated(change))


def test_fixed_size_array_of_the_wrong_length_is_refused():
    typed = _mutated(lambda t: t["types"]["Mail"].__setitem__(1, {"name": "to", "type": "Person[2]"}))
    with pytest.raises(EncodingError, match="has 2 elements"):
        eip712.typed_data_digest(typed)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t["message"].update(contents="Hello, Bob?"),
        lambda t: t["message"]["to"].append(dict(t["message"]["to"][0])),
        lambda t: t["message"]["from"].update(name="Cow "),
        lambda t: t["domain"].update(chainId=1),
        lambda t: t["domain"].update(name="poe2"),
        lambda t: t["message"]["to"][0].update(wallet=t["message"]["from"]["wallet"]),
    ],
)
def test_every_changed_value_changes_the_digest(change):
    assert eip712.typed_data_digest(_mutated(change)) != eip712.typed_data_digest(MAIL)


def test_integer_spellings_hash_alike():
    """JSON from wallets spells big integers as strings; they must commit to the same number."""
    ref = eip712.typed_data_digest(MAIL)
    for spelling in ("31337", "0x7a69"):
        assert eip712.typed_data_digest(_mutated(lambda t: t["domain"].update(chainId=spelling))) == ref
    for bad in ("31337.0", "", "0x", "1e3", " "):
        with pytest.raises(EncodingError):
            eip712.typed_data_digest(_mutated(lambda t: t["domain"].update(chainId=bad)))


def test_types_are_checked_once_and_reused():
    types = eip712.Types(MAIL["types"])
    assert types.encode_type("Mail") == "Mail(Person from,Person[] to,string contents)Person(string name,address wallet)"
    separator = eip712.domain_separator(MAIL["domain"], types)
    assert eip712.digest(separator, types, "Mail", MAIL["message"]) == eip712.typed_data_digest(MAIL)
    with pytest.raises(EncodingError):
        types.hash_struct("Letter", {})


@settings(max_examples=200, deadline=None)
@given(garbage=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
))
def test_garbage_never_escapes_as_an_internal_error(garbage):
    for typed in (garbage, {**MAIL, "message": garbage}, {**MAIL, "types": garbage}, {**MAIL, "domain": garbage}):
        try:
            eip712.typed_data_digest(typed)
        except PoEError:
            pass


def test_recursive_types_are_allowed():
    typed = {
        "types": {"EIP712Domain": [], "Node": [{"name": "value", "type": "uint8"}, {"name": "children", "type": "Node[]"}]},
        "primaryType": "Node",
        "domain": {},
        "message": {"value": 1, "children": [{"value": 2, "children": []}]},
    }
    assert eip712.Types(typed["types"]).encode_type("Node") == "Node(uint8 value,Node[] children)"
    assert eip712.typed_data_digest(typed) == _eth_account_digest(typed)


def test_default_scheme_signs_and_recovers_typed_data():
    k1 = get_scheme("secp256k1")
    sk = k1.generate_key(b"eip712 test key seed, 32 bytes.!")
    digest = eip712.typed_data_digest(MAIL)
    assert k1.recover_hash(digest, k1.sign_hash(sk, digest)) == k1.identity(k1.public_key(sk))
