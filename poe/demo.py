"""The bundled demo workloads: a Rust CSV aggregator with a deterministic input generator, and a
stateful C program that sorts a million numbers in steps."""

from __future__ import annotations

from importlib import resources

_REGIONS = ("north", "south", "east", "west", "central")
_PRODUCTS = ("anvil", "chisel", "dowel", "easel", "file", "gimlet", "hammer")


def demo_module() -> bytes:
    """csv_agg.wasm: built from vectors/modules/csv_agg.rs (a test checks the copies agree)."""
    return resources.files("poe").joinpath("_data/csv_agg.wasm").read_bytes()


def step_module() -> bytes:
    """step_sort.wasm: built from vectors/modules/step_sort.c (a test checks the copies agree)."""
    return resources.files("poe").joinpath("_data/step_sort.wasm").read_bytes()


def demo_csv(seed: int, rows: int) -> bytes:
    """A sales CSV of `rows` rows, the same bytes for the same seed on every machine."""
    state = (seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF or 1
    lines = ["region,product,units,price_cents"]
    for _ in range(rows):
        values = []
        for _ in range(4):
            state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
            state ^= state >> 7
            state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
            values.append(state)
        lines.append(f"{_REGIONS[values[0] % 5]},{_PRODUCTS[values[1] % 7]},{1 + values[2] % 40},{100 + values[3] % 9900}")
    return ("\n".join(lines) + "\n").encode()
