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


def with_root(statement, root):
    """`statement` with another head: what a lying provider re-signs. A version-2 statement's bill
    root must add up to the epoch's totals, so it is moved by the same amount, as a liar would."""
    import dataclasses

    from poe.merkle.hasher import Root

    if statement.bill_root is None:
        return dataclasses.replace(statement, root=root)
    b = statement.bill_root
    shifted = Root(b.size, b.hash, b.sums + (root.sums - statement.root.sums))
    return dataclasses.replace(statement, root=root, bill_root=shifted)
