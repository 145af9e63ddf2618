"""The verifier's public API: the README's example runs, and importing it loads no engine or backend."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from poe.cli import main

from .conftest import MODULES

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Auditing from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _poe(*args: str) -> None:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.stderr


def test_readme_example_audits_a_claim_from_python(tmp_path, monkeypatch):
    wasm = tmp_path / "csv_agg.wasm"
    shutil.copy(MODULES / "csv_agg.wasm", wasm)
    store, key = str(tmp_path / "p.poe"), str(tmp_path / "p.key")
    for i in range(12):
        (tmp_path / "in.csv").write_bytes(b"region,product,units,price_cents\n" + b"north,anvil,%d,100\n" % (i + 1) * (i + 1))
        _poe("run", str(wasm), "--stdin", str(tmp_path / "in.csv"), "--store", store, "-q")
    _poe("keygen", "--scheme", "secp256k1", "--out", key)
    pk = json.loads(CliRunner().invoke(main, ["pubkey", key, "--json"]).stdout)["public_key"]
    with __import__("poe").TraceStore.open(store) as s:
        cm = s.cost_model.digest.hex()
    from poe.formats.moduleset import Service

    deal = {"format": "poe deal v1", "deal_id": "readme", "provider": {"scheme": "secp256k1", "public_key": pk},
            "module_digest": Service(wasm.read_bytes()).digest.hex(), "cost_model_digest": cm,
            "prices": {"fuel": 1, "mem": 0, "io": 3}, "subscription": 0, "penalty": {"kind": "forfeit"}}
    (tmp_path / "deal.json").write_text(json.dumps(deal))
    _poe("attest", store, "--key", key, "--deal", "readme", "--out", str(tmp_path / "att.json"))
    _poe("claim", str(tmp_path / "att.json"), "--deal", str(tmp_path / "deal.json"), "--out", str(tmp_path / "claim.json"))
    _poe("challenge", str(tmp_path / "claim.json"), "--beacon", "ab" * 32, "--out", str(tmp_path / "challenge.json"))
    _poe("respond", store, str(tmp_path / "claim.json"), str(tmp_path / "challenge.json"), "--out", str(tmp_path / "openings.json"))
    monkeypatch.chdir(tmp_path)
    out = subprocess.run([sys.executable, "-c", _readme_example()], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ACCEPT overbilling of the metered amount is below")
    # the same example on openings whose record was inflated rejects
    doc = json.loads((tmp_path / "openings.json").read_text())
    rec = bytearray.fromhex(doc["openings"][0]["record"])
    rec[16] ^= 1
    doc["openings"][0]["record"] = rec.hex()
    (tmp_path / "openings.json").write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, "-c", _readme_example()], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("REJECT"), out.stdout + out.stderr


@pytest.mark.parametrize("api", ["poe.verify", "poe.customer"])
def test_importing_the_verifier_and_customer_apis_loads_neither_wasmtime_nor_py_ecc(api):
    code = f"import sys, {api}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('wasmtime', 'py_ecc')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_version_and_inspect_load_neither_wasmtime_nor_py_ecc(tmp_path):
    code = ("import sys; from poe.cli import main\n"
            "try:\n    main([*sys.argv[1:]], prog_name='poe')\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'wasmtime', 'py_ecc'}))")
    for args in (["--version"], ["inspect", str(tmp_path / "absent.poe")]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout, out.stderr)
