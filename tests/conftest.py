from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / "vectors" / "modules"
SHARED_VECTORS = ROOT.parent / "shared" / "vectors"


def module_bytes(name: str) -> bytes:
    return (MODULES / name).read_bytes()


def data_bytes(name: str) -> bytes:
    return (MODULES / "data" / name).read_bytes()


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "trace.poe")
