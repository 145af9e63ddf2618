#!/usr/bin/env bash
# Rebuild every .wasm in this directory from its source, then print sizes.
# Safe to run from any working directory. Requires (Debian packages):
#   clang-14 + lld-14 + wasi-libc   (C -> wasm32-wasi)
#   rustc 1.63 with wasm32-wasi std (Debian's /usr/bin/rustc)
#   wabt                            (wat2wasm, wasm-strip)
# Outputs are written next to their sources. Builds are reproducible:
# running this twice gives byte-identical files (see README.md).
#
# Note: membomb.wat and membomb.c would both map to membomb.wasm, so the C
# variant is built as membomb_c.wasm.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

# Use Debian's rustc explicitly: a rustup toolchain earlier in PATH may not
# have the wasm32-wasi target installed.
RUSTC="${RUSTC:-/usr/bin/rustc}"
CC_WASM="${CC_WASM:-clang}"

export LC_ALL=C
export SOURCE_DATE_EPOCH=0

# source file -> output file [extra clang flags, C only]
C_MODULES=(
    "wordfreq.c       wordfreq.wasm"
    "entropy_clock.c  entropy_clock.wasm"
    "membomb.c        membomb_c.wasm"
    "bigout.c         bigout.wasm"
    "exit_code.c      exit_code.wasm"
    # WASI reactor (exports _initialize, no _start); printf without
    # floating-point support (smaller, and no float code in the module).
    "step_sort.c      step_sort.wasm    -mexec-model=reactor -lc-printscan-no-floating-point"
)
RUST_MODULES=(
    "csv_agg.rs       csv_agg.wasm"
)
WAT_MODULES=(
    "funcs.wat        funcs.wasm"
    "loop.wat         loop.wasm"
    "membomb.wat      membomb.wasm"
    "recurse.wat      recurse.wasm"
    "trap.wat         trap.wasm"
    "bad_import.wat   bad_import.wasm"
    "mathlib.wat      mathlib.wasm"
    "linked_main.wat  linked_main.wasm"
    "counter.wat      counter.wasm"
)

# Relative source paths on purpose (we cd'd into this directory), so no
# host-specific absolute path can end up in a binary. wasm-strip removes all
# custom sections (name, producers, target_features).

build_c() {
    "$CC_WASM" --target=wasm32-wasi -O2 "$1" "${@:3}" -o "$2"
    wasm-strip "$2"
}

build_rust() {
    "$RUSTC" --edition 2021 --target wasm32-wasi \
        -O -C debuginfo=0 -C strip=symbols \
        -C codegen-units=1 -C lto=fat -C panic=abort \
        "$1" -o "$2"
    wasm-strip "$2"
}

build_wat() {
    wat2wasm "$1" -o "$2"
    wasm-strip "$2"
}

outputs=()
for entry in "${C_MODULES[@]}"; do
    read -r src out flags <<<"$entry"
    echo "cc    $src -> $out${flags:+ ($flags)}"
    # $flags is split into words on purpose (no flag contains spaces).
    # shellcheck disable=SC2086
    build_c "$src" "$out" $flags
    outputs+=("$out")
done
for entry in "${RUST_MODULES[@]}"; do
    read -r src out <<<"$entry"
    echo "rustc $src -> $out"
    build_rust "$src" "$out"
    outputs+=("$out")
done
for entry in "${WAT_MODULES[@]}"; do
    read -r src out <<<"$entry"
    echo "wat   $src -> $out"
    build_wat "$src" "$out"
    outputs+=("$out")
done

# wasm-ld marks outputs executable; normalise so git sees stable modes.
chmod 0644 "${outputs[@]}"

echo
echo "sizes (bytes):"
for out in "${outputs[@]}"; do
    printf '  %-20s %8d\n' "$out" "$(wc -c <"$out")"
done
