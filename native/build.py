"""cffi build script for poe's native Merkle sum tree kernel (API mode, out of line).

setup.py names it (`cffi_modules=["native/build.py:ffibuilder"]`), so `pip install .` and
`pip install -e .` compile native/*.c into the extension module `poe._poe_native`. It can also be
run by hand from anywhere: `python3 native/build.py` builds the module and installs it into
poe/, replacing any other build there.

The C interface is native/poe_native.h; its preprocessor lines other than integer constants are
dropped to make the cdef. The SIMD kernels carry their own target attributes and are chosen at
run time, so no machine-specific global flag is passed to the compiler.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["blake3_portable.c", "blake3_avx2.c", "blake3_avx512.c", "merkle.c", "memtree.c"]
HEADERS = ["poe_native.h", "poe_internal.h", "blake3_rounds.h"]

_CONSTANT = re.compile(r"#define\s+POE_[A-Z0-9_]+\s+-?\d+\s*$")


def _cdef() -> str:
    lines = []
    for line in (HERE / "poe_native.h").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not _CONSTANT.match(stripped):
            continue
        lines.append(line)
    return "\n".join(lines)


def _rel(name: str) -> str:
    # setuptools wants source paths relative to the project root (the working directory of
    # a pip build); fall back to absolute ones when run from elsewhere. Run by hand, cffi
    # compiles inside its tmpdir, so relative paths would not resolve: absolute there too.
    path = HERE / name
    if __name__ == "__main__":
        return str(path)
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    return ["-O3", "-std=c11"]


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "poe._poe_native",
    '#include "poe_native.h"\n',
    sources=[_rel(s) for s in SOURCES],
    # The headers, and this script itself so that an sdist carries it (setup.py names it).
    depends=[_rel(h) for h in [*HEADERS, "build.py"]],
    include_dirs=[_rel(".")],
    extra_compile_args=_compile_args(),
)

if __name__ == "__main__":
    import shutil

    built = Path(ffibuilder.compile(tmpdir=str(HERE / "_build"), verbose=True))
    # The name a pip build uses, so the next `pip install -e .` replaces this build instead of
    # being shadowed by it (CPython prefers a version-tagged name over abi3).
    target = HERE.parent / "poe" / "_poe_native.abi3.so"
    for old in target.parent.glob("_poe_native*.so"):  # one build only: another would shadow it
        old.unlink()
    shutil.copy2(built, target)
    print(f"installed {target}")
