#!/usr/bin/env python3
"""Generate data/sales_10k.csv for the csv_agg module.

Deterministic: uses its own 64-bit xorshift* generator with a fixed seed
instead of the `random` module, so the output is byte-identical across
Python versions and platforms.  Stdlib only.

Usage:  python3 gen_sales.py [ROWS] [OUT_PATH]
        (defaults: 10000 rows -> data/sales_10k.csv next to this script)

Roughly one row in 500 is deliberately malformed (wrong field count,
non-numeric units, negative price, empty region) so the bad-row path of
csv_agg is exercised.
"""

import os
import sys

SEED = 0x5EED_CAFE_F00D_1234
MASK64 = (1 << 64) - 1

REGIONS = ["north", "south", "east", "west", "central", "islands"]
PRODUCTS = [
    ("anvil", 4999),
    ("bellows", 2450),
    ("chisel", 899),
    ("dowel", 35),
    ("easel", 6200),
    ("file", 725),
    ("gimlet", 1180),
    ("hammer", 1599),
    ("inkpot", 310),
    ("jigsaw", 8900),
    ("kettle", 2799),
    ("lantern", 3425),
]


class XorShiftStar:
    def __init__(self, seed):
        self.state = (seed & MASK64) or 1

    def next_u64(self):
        x = self.state
        x ^= (x >> 12)
        x ^= (x << 25) & MASK64
        x ^= (x >> 27)
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & MASK64

    def below(self, n):
        # Modulo bias is irrelevant for test data; keep it simple and exact.
        return (self.next_u64() >> 11) % n


def bad_row(rng):
    kind = rng.below(4)
    if kind == 0:
        return "west,anvil,3"  # missing field
    if kind == 1:
        return "east,chisel,lots,899"  # non-numeric units
    if kind == 2:
        return "south,file,2,-725"  # negative price
    return ",kettle,1,2799"  # empty region


def generate(rows):
    rng = XorShiftStar(SEED)
    lines = ["region,product,units,price_cents"]
    for _ in range(rows):
        if rng.below(500) == 0:
            lines.append(bad_row(rng))
            continue
        region = REGIONS[rng.below(len(REGIONS))]
        product, base = PRODUCTS[rng.below(len(PRODUCTS))]
        units = 1 + rng.below(40)
        # price varies +/- 20% around the base price
        delta = rng.below(base // 5 * 2 + 1) - base // 5
        price = max(1, base + delta)
        lines.append(f"{region},{product},{units},{price}")
    return "\n".join(lines) + "\n"


def main(argv):
    rows = int(argv[1]) if len(argv) > 1 else 10000
    here = os.path.dirname(os.path.abspath(__file__))
    out = argv[2] if len(argv) > 2 else os.path.join(here, "data", "sales_10k.csv")
    text = generate(rows)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="ascii", newline="\n") as f:
        f.write(text)
    print(f"wrote {out}: {rows} rows, {len(text)} bytes")


if __name__ == "__main__":
    main(sys.argv)
