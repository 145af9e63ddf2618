"""Tests for poe.wasm.binary: the module parser and the memory.grow / __poe_memory instrumentation."""

from __future__ import annotations

import glob
import os
import re
import struct
import time

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poe.wasm import binary as wb
from poe.wasm.binary import POE_MEMORY_EXPORT, ModuleInfo, instrument, parse
from poe.errors import ModuleError

PAGE = 65536
VECTORS = os.path.join(os.path.dirname(__file__), os.pardir, "vectors", "modules")


def _engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    return wasmtime.Engine(cfg)


ENGINE = _engine()


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))  # wat2wasm returns a bytearray


def leb(n: int) -> bytes:
    return wb._leb(n)


def section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + leb(len(payload)) + payload


HEADER = b"\x00asm\x01\x00\x00\x00"


def module_bytes(*sections: bytes) -> bytes:
    return HEADER + b"".join(sections)


def instantiate(wasm: bytes, *, limit_pages: int | None = None, imports=()):  # type: ignore[no-untyped-def]
    store = wasmtime.Store(ENGINE)
    store.set_fuel(10**9)
    if limit_pages is not None:
        store.set_limits(memory_size=limit_pages * PAGE)
    module = wasmtime.Module(ENGINE, wasm)
    inst = wasmtime.Instance(store, module, list(imports(store)) if callable(imports) else list(imports))
    return store, inst.exports(store)


def sections_of(wasm: bytes) -> list[tuple[int, bytes]]:
    layout, _ = wb._parse(wasm)
    return [(s.id, wasm[s.payload : s.end]) for s in layout.sections]


def grows_outside(wasm: bytes, guard_index: int | None) -> int:
    """Number of memory.grow instructions in functions other than the guard."""
    layout, info = wb._parse(wasm)
    n = 0
    for i, (entry, start, end) in enumerate(layout.bodies):
        fidx = info.imported_func_count + i
        if fidx != guard_index:
            n += len(wb._scan_body(wasm, entry, start, end, fidx))
    return n


def assert_guard_trap(call, guard_index: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(wasmtime.Trap) as exc:
        call()
    trap = exc.value
    assert trap.trap_code == wasmtime.TrapCode.UNREACHABLE
    frames = trap.frames
    assert frames, "trap has no frames"
    assert frames[0].func_index == guard_index


GROW_WAT = """
(module
  (memory (export "mem") 1)
  (func (export "grow_then_size") (param i32) (result i32)
    (drop (memory.grow (local.get 0)))
    (memory.size))
  (func (export "grow") (param i32) (result i32)
    (memory.grow (local.get 0)))
  (func (export "store") (param i32 i32)
    (i32.store (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32)
    (i32.load (local.get 0))))
"""


# ----------------------------------------------------------------------------------------------
# Behaviour of instrumented modules
# ----------------------------------------------------------------------------------------------


def test_instrumented_module_validates_and_behaves_like_original():
    original = wat(GROW_WAT)
    result = instrument(original)
    assert result.wasm != original
    assert result.grow_guard_index == 4  # appended after the four defined functions
    assert result.memory_export == POE_MEMORY_EXPORT
    assert result.memory_imported is False
    wasmtime.Module.validate(ENGINE, result.wasm)
    assert grows_outside(result.wasm, result.grow_guard_index) == 0

    outs = []
    for wasm in (original, result.wasm):
        store, ex = instantiate(wasm)
        seq = [
            ex["grow_then_size"](store, 0),
            ex["grow_then_size"](store, 3),
            ex["grow"](store, 2),
            ex["grow"](store, 0),
        ]
        ex["store"](store, 5 * PAGE - 4, 0x1234)
        seq.append(ex["load"](store, 5 * PAGE - 4))
        outs.append(seq)
    assert outs[0] == outs[1] == [1, 4, 4, 6, 0x1234]


def test_existing_function_and_type_indices_do_not_shift():
    original = wat(
        """
        (module
          (import "env" "f" (func $imp (param i64) (result i64)))
          (type $t (func (param i32) (result i32)))
          (table 2 funcref)
          (elem (i32.const 0) $double $grow)
          (memory 1)
          (func $double (type $t) (i32.mul (local.get 0) (i32.const 2)))
          (func $grow (type $t) (memory.grow (local.get 0)))
          (func (export "run") (param i32 i32) (result i32)
            (call_indirect (type $t) (local.get 0) (local.get 1))))
        """
    )
    info = parse(original)
    assert info.imported_func_count == 1 and info.defined_func_count == 3
    result = instrument(original)
    assert result.grow_guard_index == 4
    after = parse(result.wasm)
    # (i32)->(i32) already existed as type $t: it is reused, no type is appended.
    assert after.func_types == info.func_types
    assert after.func_type_indices == info.func_type_indices + (info.func_type_indices[0],)

    def imports(store):  # type: ignore[no-untyped-def]
        ty = wasmtime.FuncType([wasmtime.ValType.i64()], [wasmtime.ValType.i64()])
        return [wasmtime.Func(store, ty, lambda x: x)]

    store, ex = instantiate(result.wasm, imports=imports, limit_pages=2)
    assert ex["run"](store, 21, 0) == 42
    assert ex["run"](store, 1, 1) == 1
    assert_guard_trap(lambda: ex["run"](store, 1, 1), result.grow_guard_index)


def test_guard_type_is_appended_when_no_matching_type_exists():
    original = wat(
        """
        (module
          (memory 1)
          (func (export "g") (param i64) (result i32)
            (memory.grow (i32.wrap_i64 (local.get 0)))))
        """
    )
    before = parse(original)
    result = instrument(original)
    after = parse(result.wasm)
    assert after.func_types[: len(before.func_types)] == before.func_types
    assert after.func_types[-1] == wb.FuncType(("i32",), ("i32",))
    assert after.func_type_indices[-1] == len(after.func_types) - 1
    store, ex = instantiate(result.wasm)
    assert ex["g"](store, 1) == 1


def test_grow_past_store_limit_traps_in_guard():
    result = instrument(wat(GROW_WAT))
    store, ex = instantiate(result.wasm, limit_pages=3)
    assert ex["grow"](store, 1) == 1
    assert ex["grow"](store, 1) == 2
    assert_guard_trap(lambda: ex["grow"](store, 1), result.grow_guard_index)
    # The original module, under the same limit, just sees -1.
    store, ex = instantiate(wat(GROW_WAT), limit_pages=3)
    assert ex["grow"](store, 2) == 1
    assert ex["grow"](store, 1) == -1


def test_guard_trap_frames_name_the_guard_when_called_deep_in_the_stack():
    original = wat(
        """
        (module
          (import "env" "nop" (func $nop))
          (memory 1)
          (func $inner (param i32) (result i32) (call $nop) (memory.grow (local.get 0)))
          (func $mid (param i32) (result i32) (call $inner (local.get 0)))
          (func (export "outer") (param i32) (result i32) (call $mid (local.get 0))))
        """
    )
    result = instrument(original)
    assert result.grow_guard_index == 4

    def imports(store):  # type: ignore[no-untyped-def]
        return [wasmtime.Func(store, wasmtime.FuncType([], []), lambda: None)]

    store, ex = instantiate(result.wasm, imports=imports, limit_pages=1)
    with pytest.raises(wasmtime.Trap) as exc:
        ex["outer"](store, 1)
    assert [f.func_index for f in exc.value.frames] == [4, 1, 2, 3]


def test_grow_past_declared_maximum_returns_minus_one():
    original = wat(
        """
        (module
          (memory 1 3)
          (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
        """
    )
    result = instrument(original)
    store, ex = instantiate(result.wasm, limit_pages=100)
    assert ex["grow"](store, 3) == -1  # 1 + 3 > 3: the module's own maximum
    assert ex["grow"](store, 2) == 1
    assert ex["grow"](store, 1) == -1
    assert ex["grow"](store, -1) == -1  # delta 0xFFFFFFFF must not overflow
    assert ex["grow"](store, 0) == 3
    # The module's maximum is checked before the host's: with a host limit below the
    # module's maximum, asking past the module's maximum is still plain -1.
    store, ex = instantiate(result.wasm, limit_pages=2)
    assert ex["grow"](store, 5) == -1
    assert_guard_trap(lambda: ex["grow"](store, 2), result.grow_guard_index)


def test_grow_without_declared_maximum_uses_the_4gib_limit():
    original = wat(
        "(module (memory 1) (func (export \"grow\") (param i32) (result i32) (memory.grow (local.get 0))))"
    )
    result = instrument(original)
    store, ex = instantiate(result.wasm, limit_pages=2)
    assert ex["grow"](store, 65536) == -1  # 1 + 65536 pages > 4 GiB: ordinary failure
    assert ex["grow"](store, -1) == -1
    assert ex["grow"](store, 1) == 1
    assert_guard_trap(lambda: ex["grow"](store, 65535 - 1), result.grow_guard_index)


def test_memory64_guard_uses_i64():
    original = wat(
        """
        (module
          (memory i64 1)
          (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0))))
        """
    )
    result = instrument(original)
    after = parse(result.wasm)
    assert after.func_type(result.grow_guard_index) == wb.FuncType(("i64",), ("i64",))
    store, ex = instantiate(result.wasm, limit_pages=2)
    assert ex["grow"](store, -1) == -1  # 2**64-1 pages: beyond any memory64
    assert ex["grow"](store, 1 << 48) == -1
    assert ex["grow"](store, 1) == 1
    assert_guard_trap(lambda: ex["grow"](store, 1), result.grow_guard_index)


def test_shared_memory_module_instruments_and_validates():
    original = wat(
        """
        (module
          (memory 1 4 shared)
          (func (export "grow") (param i32) (result i32)
            (drop (i32.atomic.rmw.add offset=64 (i32.const 0) (i32.const -64)))
            (memory.atomic.notify (i32.const 0) (i32.const 1))
            (drop)
            (atomic.fence)
            (memory.grow (local.get 0))))
        """
    )
    result = instrument(original)
    assert parse(result.wasm).memory0 == wb.MemoryLimits(1, 4, shared=True)
    wasmtime.Module.validate(ENGINE, result.wasm)
    assert grows_outside(result.wasm, result.grow_guard_index) == 0


# ----------------------------------------------------------------------------------------------
# The __poe_memory export
# ----------------------------------------------------------------------------------------------


def test_poe_memory_export_aliases_the_modules_own_memory():
    result = instrument(wat(GROW_WAT))
    store, ex = instantiate(result.wasm)
    ex["store"](store, 100, 0xDEADBEEF - (1 << 32))
    own, poe = ex["mem"], ex[POE_MEMORY_EXPORT]
    assert isinstance(poe, wasmtime.Memory)
    assert poe.read(store, 100, 104) == own.read(store, 100, 104) == (0xDEADBEEF).to_bytes(4, "little")
    ex["grow"](store, 2)
    assert poe.size(store) == own.size(store) == 3


def test_unexported_memory_becomes_reachable_and_export_section_is_created():
    original = wat(
        """
        (module
          (memory 2 5)
          (data (i32.const 8) "hello")
          (func $start (i32.store8 (i32.const 0) (i32.const 42)))
          (start $start))
        """
    )
    info = parse(original)
    assert info.exports == () and info.start == 0
    result = instrument(original)
    assert result.grow_guard_index is None
    after = parse(result.wasm)
    assert after.exports == (wb.Export(POE_MEMORY_EXPORT, "memory", 0),)
    ids = [sid for sid, _ in sections_of(result.wasm)]
    assert ids == [1, 3, 5, 7, 8, 10, 11] or ids == [1, 3, 5, 7, 8, 10, 11, 0]
    store, ex = instantiate(result.wasm)
    mem = ex[POE_MEMORY_EXPORT]
    assert mem.size(store) == 2
    assert mem.read(store, 0, 1) == b"\x2a"
    assert mem.read(store, 8, 13) == b"hello"


def test_module_without_memory_has_no_memory_export():
    original = wat('(module (func (export "f") (result i32) (i32.const 7)))')
    result = instrument(original)
    assert result.memory_export is None
    assert result.grow_guard_index is None
    assert result.memory_imported is False
    assert result.wasm is original


def test_imported_memory_is_flagged_and_exported():
    original = wat(
        """
        (module
          (import "env" "memory" (memory 1 4))
          (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
        """
    )
    info = parse(original)
    assert info.imported_memory == wb.MemoryLimits(1, 4)
    assert info.memories == ()
    result = instrument(original)
    assert result.memory_imported is True
    assert result.memory_export == POE_MEMORY_EXPORT
    store = wasmtime.Store(ENGINE)
    store.set_fuel(10**9)
    store.set_limits(memory_size=3 * PAGE)
    memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(1, 4)))
    inst = wasmtime.Instance(store, wasmtime.Module(ENGINE, result.wasm), [memory])
    ex = inst.exports(store)
    assert ex["grow"](store, 5) == -1  # beyond the import's declared maximum
    assert ex["grow"](store, 2) == 1
    assert ex[POE_MEMORY_EXPORT].size(store) == memory.size(store) == 3
    assert_guard_trap(lambda: ex["grow"](store, 1), result.grow_guard_index)


def test_reserved_export_name_is_refused():
    for text in (
        '(module (func (export "__poe_memory")))',
        '(module (memory 1) (func (export "__poe_memory")))',
        '(module (memory 1) (global (export "__poe_memory") i32 (i32.const 0)))',
    ):
        with pytest.raises(ModuleError, match="reserved"):
            instrument(wat(text))


def test_module_that_already_exports_memory_under_the_reserved_name_is_unchanged():
    original = wat('(module (memory (export "__poe_memory") 1) (func (export "f")))')
    result = instrument(original)
    assert result.wasm is original
    assert result.memory_export == POE_MEMORY_EXPORT


def test_module_with_nothing_to_do_is_returned_byte_identical():
    original = wat(
        """
        (module
          (memory (export "m") 1)
          (export "__poe_memory" (memory 0))
          (func $f (export "f") (param i32) (result i32) (i32.const -64) (i32.add (local.get 0))))
        """
    )
    assert instrument(original).wasm is original
    assert instrument(bytearray(original)).wasm == original


# ----------------------------------------------------------------------------------------------
# Everything else is preserved
# ----------------------------------------------------------------------------------------------


def test_name_and_custom_sections_preserved():
    original = wat(
        """
        (module $named
          (memory $heap 1)
          (global $counter (mut i32) (i32.const 0))
          (func $grow_it (export "grow") (param $delta i32) (result i32)
            (local $tmp i32)
            (memory.grow (local.get $delta)))
          (func $other (result i32) (global.get $counter)))
        """
    )
    custom = section(0, leb(len(b"poe.test")) + b"poe.test" + b"\x01\x02\x03")
    # Place a custom section right after the type section too.
    layout, _ = wb._parse(original)
    t = layout.sections[0]
    assert t.id == 1
    original = original[: t.end] + custom + original[t.end :]
    info = parse(original)
    assert "name" in info.custom_sections and "poe.test" in info.custom_sections

    result = instrument(original)
    before, after = sections_of(original), sections_of(result.wasm)
    assert [s for s in before if s[0] == 0] == [s for s in after if s[0] == 0]
    # Custom sections keep their position relative to the other sections.
    before_ids = [sid for sid, _ in before]
    after_ids = [sid for sid, _ in after]
    assert after_ids == before_ids
    store, ex = instantiate(result.wasm)
    assert ex["grow"](store, 1) == 1


def test_data_count_element_data_and_start_sections_untouched():
    original = wat(
        """
        (module
          (memory 1)
          (table 4 funcref)
          (data $d "abc")
          (data (i32.const 16) "xyz")
          (elem $e func $f $g)
          (elem (i32.const 0) $g)
          (global $started (mut i32) (i32.const 0))
          (func $f (result i32) (i32.const 1))
          (func $g (result i32) (i32.const 2))
          (func $s (global.set $started (i32.const 1)))
          (start $s)
          (func (export "run") (param i32) (result i32)
            (memory.init $d (i32.const 0) (i32.const 0) (i32.const 3))
            (data.drop $d)
            (table.init $e (i32.const 1) (i32.const 0) (i32.const 2))
            (elem.drop $e)
            (memory.copy (i32.const 32) (i32.const 0) (i32.const 3))
            (memory.fill (i32.const 40) (i32.const 64) (i32.const 2))
            (drop (memory.grow (local.get 0)))
            (i32.add (global.get $started) (i32.load8_u (i32.const 33)))))
        """
    )
    result = instrument(original)
    before = dict((sid, p) for sid, p in sections_of(original) if sid != 0)
    after = dict((sid, p) for sid, p in sections_of(result.wasm) if sid != 0)
    assert 12 in before  # data count
    for sid in (12, 9, 11, 8, 5, 4):
        assert after[sid] == before[sid], sid
    # the global section keeps its globals and gains the guard's flag at the end
    assert after[6][0] == before[6][0] + 1 and after[6][1:].startswith(before[6][1:])
    store, ex = instantiate(result.wasm)
    assert ex["run"](store, 1) == 1 + ord("b")


# ----------------------------------------------------------------------------------------------
# Decoding of every instruction family (a grow after them must be found and replaced)
# ----------------------------------------------------------------------------------------------


def _check_grow_replaced(text: str, export: str, *args, expected_calls: int = 1):  # type: ignore[no-untyped-def]
    original = wat(text)
    assert grows_outside(original, None) == expected_calls
    result = instrument(original)
    assert result.grow_guard_index is not None
    wasmtime.Module.validate(ENGINE, result.wasm)
    assert grows_outside(result.wasm, result.grow_guard_index) == 0
    # The byte 0x40 appears in these bodies in immediates too; nothing but the grows may move.
    store, ex = instantiate(result.wasm, limit_pages=1)
    assert_guard_trap(lambda: ex[export](store, *args), result.grow_guard_index)
    return result


def test_simd_bodies_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (func (export "f") (param i32) (result i32)
            (local $v v128) (local $f f32) (local $d f64)
            (local.set $v (v128.const i8x16 0x40 0 0x40 0 0x40 0 0x40 0 0x40 0 0x40 0 0x40 0 0x40 0))
            (local.set $v (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 31 (local.get $v) (local.get $v)))
            (local.set $v (i8x16.replace_lane 15 (local.get $v) (i32.const -64)))
            (drop (i8x16.extract_lane_u 3 (local.get $v)))
            (drop (i64x2.extract_lane 1 (local.get $v)))
            (local.set $f (f32x4.extract_lane 3 (f32x4.splat (f32.const 2.0))))
            (local.set $d (f64x2.extract_lane 1 (f64x2.splat (f64.const 2.0))))
            (v128.store offset=64 align=1 (i32.const 0) (local.get $v))
            (local.set $v (v128.load8_lane offset=64 15 (i32.const 0) (local.get $v)))
            (v128.store64_lane offset=64 1 (i32.const 0) (local.get $v))
            (local.set $v (v128.load32_zero offset=64 (i32.const 0)))
            (local.set $v (v128.load16x4_s offset=64 (i32.const 0)))
            (local.set $v (v128.load64_splat (i32.const 64)))
            (local.set $v (i16x8.q15mulr_sat_s (local.get $v) (local.get $v)))
            (local.set $v (i32x4.dot_i16x8_s (local.get $v) (local.get $v)))
            (local.set $v (f64x2.convert_low_i32x4_u (local.get $v)))
            (local.set $v (i32x4.trunc_sat_f64x2_u_zero (local.get $v)))
            (local.set $v (i8x16.relaxed_swizzle (local.get $v) (local.get $v)))
            (local.set $v (f32x4.relaxed_madd (local.get $v) (local.get $v) (local.get $v)))
            (local.set $v (i32x4.relaxed_dot_i8x16_i7x16_add_s (local.get $v) (local.get $v) (local.get $v)))
            (local.set $v (i8x16.popcnt (local.get $v)))
            (drop (i8x16.bitmask (local.get $v)))
            (drop (v128.any_true (local.get $v)))
            (memory.grow (local.get 0))))
        """,
        "f",
        1,
    )


def test_bulk_memory_and_saturating_truncation_bodies_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (table $t 2 funcref)
          (data $d "\\40\\40")
          (elem $e func $f)
          (func $f)
          (func (export "f") (param i32) (result i32)
            (drop (i32.trunc_sat_f32_s (f32.const 2.0)))
            (drop (i64.trunc_sat_f64_u (f64.const 2.0)))
            (memory.init $d (i32.const 64) (i32.const 0) (i32.const 2))
            (data.drop $d)
            (memory.copy (i32.const 0) (i32.const 64) (i32.const 2))
            (memory.fill (i32.const 0) (i32.const 64) (i32.const 2))
            (table.init $t $e (i32.const 0) (i32.const 0) (i32.const 1))
            (elem.drop $e)
            (table.copy $t $t (i32.const 1) (i32.const 0) (i32.const 1))
            (drop (table.grow $t (ref.null func) (i32.const 64)))
            (drop (table.size $t))
            (table.fill $t (i32.const 0) (ref.null func) (i32.const 1))
            (memory.grow (local.get 0))))
        """,
        "f",
        1,
    )


def test_reference_types_and_typed_select_bodies_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (table $t 2 funcref)
          (table $x 2 externref)
          (func $f)
          (elem declare func $f)
          (func (export "f") (param i32) (result i32)
            (local $r funcref) (local $e externref)
            (local.set $r (ref.func $f))
            (drop (ref.is_null (local.get $r)))
            (table.set $t (i32.const 0) (local.get $r))
            (local.set $r (table.get $t (i32.const 1)))
            (local.set $e (ref.null extern))
            (table.set $x (i32.const 1) (local.get $e))
            (local.set $r (select (result funcref) (local.get $r) (ref.null func) (i32.const 1)))
            (drop (select (result i32) (i32.const -64) (i32.const 64) (local.get 0)))
            (memory.grow (local.get 0))))
        """,
        "f",
        1,
    )


def test_multi_value_block_types_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (type $pair (func (param i32) (result i32 i32)))
          (func (export "f") (param i32) (result i32)
            (local.get 0)
            (block $b (type $pair)
              (i32.const -64))
            (drop)
            (if (result i64) (i32.const 1)
              (then (i64.const 64))
              (else (i64.const -64)))
            (drop)
            (loop $l (param i32) (result i32))
            (block $x (result i32 i64) (i32.const 1) (i64.const 2))
            (drop) (drop)
            (block $bt (br_table $bt $bt (i32.const 0)))
            (memory.grow)))
        """,
        "f",
        1,
    )


def test_tail_call_bodies_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (type $t (func (param i32) (result i32)))
          (table 1 funcref)
          (elem (i32.const 0) $grow)
          (func $grow (param i32) (result i32) (memory.grow (local.get 0)))
          (func $via_table (param i32) (result i32)
            (return_call_indirect (type $t) (local.get 0) (i32.const 0)))
          (func (export "f") (param i32) (result i32)
            (if (i32.eqz (local.get 0)) (then (return_call $grow (i32.const 64))))
            (return_call $via_table (local.get 0))))
        """,
        "f",
        1,
    )


def test_exception_handling_bodies_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (tag $e (param i32))
          (tag $e2)
          (func $thrower (param i32) (throw $e (local.get 0)))
          (func (export "f") (param i32) (result i32)
            (local $x exnref)
            (block $h (result i32)
              (try_table (catch $e $h) (call $thrower (i32.const -64)))
              (i32.const 0))
            (drop)
            (block $h2 (result exnref)
              (try_table (catch_all_ref $h2) (throw $e2))
              (unreachable))
            (local.set $x)
            (block $h3
              (block $h4 (result i32 exnref)
                (try_table (catch $e2 $h3) (catch_ref $e $h4) (catch_all $h3) (nop))
                (br $h3))
              (drop) (drop))
            (memory.grow (local.get 0))))
        """,
        "f",
        1,
    )


def test_function_references_and_gc_bodies_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (type $s (struct (field $a (mut i32)) (field $b i8) (field $c (mut i16))))
          (type $arr (array (mut i32)))
          (type $parr (array (mut i8)))
          (type $farr (array (mut funcref)))
          (type $ft (func (param i32) (result i32)))
          (data $d "\\40\\40\\40\\40")
          (elem $el func $id)
          (func $id (type $ft) (local.get 0))
          (elem declare func $id)
          (func (export "f") (param i32) (result i32)
            (local $sr (ref null $s)) (local $a (ref null $arr)) (local $any anyref)
            (drop (call_ref $ft (i32.const 64) (ref.func $id)))
            (local.set $sr (struct.new $s (i32.const 1) (i32.const 2) (i32.const 3)))
            (drop (struct.get_s $s $b (local.get $sr)))
            (drop (struct.get_u $s $c (local.get $sr)))
            (struct.set $s $a (local.get $sr) (i32.const -64))
            (drop (struct.new_default $s))
            (local.set $a (array.new $arr (i32.const 64) (i32.const 2)))
            (drop (array.new_fixed $arr 3 (i32.const 1) (i32.const 2) (i32.const 3)))
            (drop (array.new_data $parr $d (i32.const 0) (i32.const 2)))
            (drop (array.new_elem $farr $el (i32.const 0) (i32.const 1)))
            (drop (array.get_u $parr (array.new_default $parr (i32.const 1)) (i32.const 0)))
            (array.set $arr (local.get $a) (i32.const 0) (i32.const 5))
            (drop (array.len (local.get $a)))
            (array.fill $arr (local.get $a) (i32.const 0) (i32.const 7) (i32.const 1))
            (array.copy $arr $arr (local.get $a) (i32.const 0) (local.get $a) (i32.const 1) (i32.const 1))
            (array.init_data $parr $d (array.new_default $parr (i32.const 4)) (i32.const 0) (i32.const 0) (i32.const 1))
            (local.set $any (ref.i31 (i32.const 64)))
            (drop (i31.get_s (ref.cast (ref i31) (local.get $any))))
            (drop (ref.test (ref $s) (local.get $any)))
            (drop (ref.eq (local.get $sr) (local.get $sr)))
            (drop (ref.as_non_null (local.get $sr)))
            (drop (extern.convert_any (local.get $any)))
            (drop (block $l (result anyref)
              (br_on_cast $l anyref (ref $s) (local.get $any))
              (drop)
              (ref.null any)))
            (drop (block $l2 (result anyref)
              (br_on_cast_fail $l2 anyref (ref null $arr) (local.get $any))
              (drop)
              (ref.null any)))
            (drop (block $l3 (result (ref $s))
              (br_on_non_null $l3 (local.get $sr))
              (unreachable)))
            (block $l4 (br_on_null $l4 (local.get $sr)) (drop))
            (memory.grow (local.get 0))))
        """,
        "f",
        1,
    )


def test_wide_arithmetic_and_sign_extension_bodies_decode():
    _check_grow_replaced(
        """
        (module
          (memory 1)
          (func (export "f") (param i32) (result i32)
            (drop (drop (i64.add128 (i64.const 64) (i64.const -64) (i64.const 1) (i64.const 2))))
            (drop (drop (i64.mul_wide_u (i64.const 64) (i64.const 64))))
            (drop (i32.extend8_s (i32.const -64)))
            (drop (i64.extend32_s (i64.const 64)))
            (memory.grow (local.get 0))))
        """,
        "f",
        1,
    )


def test_several_grows_in_several_functions_all_replaced():
    result = _check_grow_replaced(
        """
        (module
          (memory 1)
          (func $a (param i32) (result i32) (memory.grow (local.get 0)))
          (func $b (param i32) (result i32)
            (drop (memory.grow (i32.const 0)))
            (if (result i32) (local.get 0)
              (then (memory.grow (local.get 0)))
              (else (memory.grow (i32.const 0)))))
          (func (export "f") (param i32) (result i32) (call $b (call $a (local.get 0)))))
        """,
        "f",
        2,
        expected_calls=4,
    )
    assert result.grow_guard_index == 3


def test_non_minimal_leb_encodings_are_accepted():
    def padded(n: int) -> bytes:  # n (< 128) as a five-byte LEB128
        return bytes([n | 0x80, 0x80, 0x80, 0x80, 0x00])

    body = b"\x00\x20\x00\x40\x80\x00\x0b"  # memory.grow whose memory index 0 is 0x80 0x00
    code = b"\x01" + leb(len(body)) + body
    wasm = HEADER + b"".join(
        [
            section(1, b"\x01\x60\x01\x7f\x01\x7f"),
            b"\x03" + padded(2) + b"\x01\x00",
            section(5, b"\x01\x00\x01"),
            section(7, b"\x01\x01g\x00\x00"),
            b"\x0a" + padded(len(code)) + code,
        ]
    )
    wasmtime.Module.validate(ENGINE, wasm)
    result = instrument(wasm)
    assert result.grow_guard_index == 1
    store, ex = instantiate(result.wasm, limit_pages=1)
    assert ex["g"](store, 0) == 1
    assert_guard_trap(lambda: ex["g"](store, 1), 1)


def test_instrumented_module_cannot_be_instrumented_again_reserved_names():
    once = instrument(wat(GROW_WAT))
    with pytest.raises(ModuleError, match="reserved"):
        instrument(once.wasm)


def test_guard_raises_its_exported_flag_before_trapping():
    result = instrument(wat(GROW_WAT))
    assert result.grow_flag_export == "__poe_grow_refused"
    store, ex = instantiate(result.wasm, limit_pages=2)
    assert ex["__poe_grow_refused"].value(store) == 0
    assert ex["grow"](store, 70000) == -1  # the module's own maximum: no flag
    assert ex["__poe_grow_refused"].value(store) == 0
    assert_guard_trap(lambda: ex["grow"](store, 5), result.grow_guard_index)
    assert ex["__poe_grow_refused"].value(store) == 1


def test_module_without_a_global_section_gets_one_for_the_flag():
    result = instrument(wat('(module (memory 1) (func (export "g") (param i32) (result i32) (memory.grow (local.get 0))))'))
    store, ex = instantiate(result.wasm, limit_pages=1)
    assert_guard_trap(lambda: ex["g"](store, 1), result.grow_guard_index)
    assert ex["__poe_grow_refused"].value(store) == 1


def test_legacy_exception_handling_opcodes_decode():
    # wat2wasm no longer writes legacy EH, and wasmtime rejects it, so build the bytes by hand:
    # try (0x06) / catch (0x07) / catch_all (0x19) / rethrow (0x09) / delegate (0x18) / throw.
    code = bytes(
        [
            0x06, 0x40,  # try
            0x41, 0x40,  # i32.const -64
            0x08, 0x00,  # throw 0
            0x07, 0x00,  # catch 0
            0x1A,  # drop
            0x19,  # catch_all
            0x09, 0x00,  # rethrow 0
            0x0B,  # end
            0x06, 0x40,  # try
            0x01,  # nop
            0x18, 0x00,  # delegate 0
            0x20, 0x00,  # local.get 0
            0x40, 0x00,  # memory.grow 0
            0x0B,  # end
        ]
    )
    body = b"\x00" + code
    wasm = module_bytes(
        section(1, b"\x02\x60\x01\x7f\x00\x60\x01\x7f\x01\x7f"),
        section(3, b"\x01\x01"),
        section(5, b"\x01\x00\x01"),
        section(13, b"\x01\x00\x00"),
        section(10, b"\x01" + leb(len(body)) + body),
    )
    result = instrument(wasm)
    assert result.grow_guard_index == 1
    after = wb._parse(result.wasm)[0]
    entry, start, end = after.bodies[0]
    assert result.wasm[start:end] == b"\x00" + code.replace(b"\x20\x00\x40\x00", b"\x20\x00\x10\x01")


def _opcode_probe_module(code: bytes) -> tuple[bytes, int]:
    """A module whose one function body is ``code`` (after one i32 local); also returns the
    offset just past the code. Index 0 of every index space exists, so that zero immediates
    are valid: types 0 func, 1 struct{mut i32}, 2 array(mut i32), 3 struct{mut i8},
    4 array(mut i8), 5 array(mut funcref); a funcref table, a memory, a tag, a mutable
    global, a declarative elem segment holding function 0 and a passive data segment."""
    body = b"\x01\x01\x7f" + code
    types = (
        b"\x06"
        b"\x60\x00\x00"
        b"\x5f\x01\x7f\x01"
        b"\x5e\x7f\x01"
        b"\x5f\x01\x78\x01"
        b"\x5e\x78\x01"
        b"\x5e\x70\x01"
    )
    tail = section(11, b"\x01\x01\x00")
    m = module_bytes(
        section(1, types),
        section(3, b"\x01\x00"),
        section(4, b"\x01\x70\x00\x01"),
        section(5, b"\x01\x00\x01"),
        section(13, b"\x01\x00\x00"),
        section(6, b"\x01\x7f\x01\x41\x00\x0b"),
        section(9, b"\x01\x03\x00\x01\x00"),
        section(12, b"\x01"),
        section(10, b"\x01" + leb(len(body)) + body),
        tail,
    )
    return m, len(m) - len(tail)


def _wasmtime_error(m: bytes) -> str:
    try:
        wasmtime.Module.validate(ENGINE, m)
        return "OK"
    except Exception as e:  # noqa: BLE001
        return str(e).split("\n")[0]


def _immediate_candidates(prefix: int | None, kind: int) -> list[tuple[bytes, bytes]]:
    """(context before the instruction, immediates) pairs that poe believes are well formed
    and that should be valid for some opcode of this kind."""
    plain = b""
    in_anyref_block = b"\x02\x6e"  # block (result anyref): label 0 takes a reference
    if prefix is None:
        table = {
            wb._K_NONE: [b""], wb._K_LEB: [b"\x00"], wb._K_BLOCK: [b"\x40", b"\x7f", b"\x00"],
            wb._K_MEMARG: [bytes([a, 0]) for a in range(4)], wb._K_LEB2: [b"\x00\x00"],
            wb._K_GROW: [b"\x00"], wb._K_BRTABLE: [b"\x01\x00\x00"], wb._K_F32: [b"\x00" * 4],
            wb._K_F64: [b"\x00" * 8], wb._K_SELECT_T: [b"\x01\x7f", b"\x01\x64\x70"],
            wb._K_TRY_TABLE: [b"\x40\x02\x00\x00\x00\x02\x00"],
        }
        out = [(plain, imm) for imm in table[kind]]
        if kind == wb._K_LEB:
            out += [(in_anyref_block, b"\x00"), (plain, b"\x70")]
        return out
    if kind == wb._S_MEMARG:
        return [(plain, bytes([a, 0])) for a in range(5)]
    if kind == wb._S_MEMARG_LANE:
        return [(plain, bytes([a, 0, 0])) for a in range(4)]
    if kind == wb._S_LEB:
        return [(plain, leb(t)) for t in (0, 1, 2, 3, 4, 5, 0x6E, 0x70)]
    if kind == wb._S_LEB2:
        return [(plain, leb(t) + leb(u)) for t in range(6) for u in range(6)]
    if kind == wb._S_BR_ON_CAST:
        return [(in_anyref_block, b"\x00\x00\x6e\x6e")]
    return [(plain, {wb._S_NONE: b"", wb._S_BYTES16: b"\x00" * 16, wb._S_LANE: b"\x00",
                     wb._S_ZERO_BYTE: b"\x00"}[kind])]


def test_decoder_agrees_with_wasmtime_on_opcodes_and_immediate_lengths():
    """For every opcode: poe knows it iff wasmtime's decoder does (bar proposals wasmtime does
    not enable by default), and after poe's idea of its immediates the next instruction starts
    exactly where wasmtime's decoder thinks it does.

    Each probe body is ``unreachable`` (so operand types never matter; some probes sit inside a
    block whose label takes a reference), the instruction with
    immediates as poe would skip them, then the illegal opcode 0x1d: wasmtime must report that
    illegal opcode at the offset poe predicts."""
    not_default = re.compile(r"(support is not enabled|feature required)")
    legacy_eh = {0x06, 0x07, 0x09, 0x18, 0x19}  # wasmtime rejects legacy EH before decoding on
    structural = {0x05, 0x0B}  # else / end cannot stand alone
    problems = []

    def probe(opcode: bytes, candidates: list[tuple[bytes, bytes]], label: str) -> None:
        seen = []
        for context, imm in candidates:
            m, code_end = _opcode_probe_module(context + b"\x00" + opcode + imm + b"\x1d")
            e = _wasmtime_error(m)
            if e.startswith("illegal opcode: 0x1d") and f"(at offset {code_end - 1:#x})" in e:
                return
            seen.append(e)
        problems.append((label, seen[-1]))

    for op in range(256):
        if op in (0xFB, 0xFC, 0xFD, 0xFE):
            continue
        kind = wb._KINDS_BODY[op]
        m, _ = _opcode_probe_module(b"\x00" + bytes([op]) + b"\x00" * 40)
        e = _wasmtime_error(m)
        theirs = not e.startswith("illegal opcode") and not not_default.search(e)
        ours = kind != wb._K_UNKNOWN
        if op in legacy_eh:
            assert ours and re.search("legacy.exceptions|LegacyTry", e), e
            continue
        if ours != theirs:
            problems.append((f"{op:#04x}: poe knows it: {ours}", e))
        if ours and op not in structural:
            probe(bytes([op]), _immediate_candidates(None, kind), f"{op:#04x}")
    for prefix, table in wb._SUBS.items():
        for sub in range(0x140):
            m, _ = _opcode_probe_module(b"\x00" + bytes([prefix]) + leb(sub) + b"\x00" * 40)
            e = _wasmtime_error(m)
            theirs = not e.startswith("unknown 0x") and not not_default.search(e)
            ours = sub in table
            if ours != theirs:
                problems.append((f"{prefix:#04x} {sub:#x}: poe knows it: {ours}", e))
            if ours:
                probe(bytes([prefix]) + leb(sub), _immediate_candidates(prefix, table[sub]), f"{prefix:#04x} {sub:#x}")
    assert problems == []


# ----------------------------------------------------------------------------------------------
# parse()
# ----------------------------------------------------------------------------------------------


def test_parse_lists_imports_exports_types_memories_globals():
    wasm = wat(
        """
        (module
          (import "env" "f" (func (param i32 f64) (result i64)))
          (import "env" "g" (global $g (mut i64)))
          (import "env" "t" (table 1 8 funcref))
          (import "wasi" "mem" (memory 2 10))
          (func $h (export "h") (param v128 externref) (result f32 funcref)
            (f32.const 0) (ref.null func))
          (global $a (export "a") (mut i32) (i32.const -64))
          (global $b f64 (f64.const 1.5))
          (table (export "tab") 3 externref)
          (export "mem" (memory 0))
          (export "g" (global $g)))
        """
    )
    info = parse(wasm)
    assert isinstance(info, ModuleInfo)
    assert info.imports == (
        wb.Import("env", "f", "func", 0),
        wb.Import("env", "g", "global", wb.GlobalType("i64", True)),
        wb.Import("env", "t", "table", wb.TableType("funcref", 1, 8)),
        wb.Import("wasi", "mem", "memory", wb.MemoryLimits(2, 10)),
    )
    assert info.func_types[0] == wb.FuncType(("i32", "f64"), ("i64",))
    assert info.func_type(0) == wb.FuncType(("i32", "f64"), ("i64",))
    assert info.func_type(1) == wb.FuncType(("v128", "externref"), ("f32", "funcref"))
    assert info.func_type(2) is None
    assert info.imported_func_count == 1 and info.defined_func_count == 1 and info.func_count == 2
    assert info.imported_global_count == 1
    assert info.globals == (
        wb.GlobalInfo(1, "i32", True, b"\x41\x40\x0b"),
        wb.GlobalInfo(2, "f64", False, b"\x44" + struct.pack("<d", 1.5) + b"\x0b"),
    )
    assert info.imported_memory == wb.MemoryLimits(2, 10) and info.memory0 == wb.MemoryLimits(2, 10)
    assert info.tables == (wb.TableType("externref", 3, None),)
    assert {e.name: (e.kind, e.index) for e in info.exports} == {
        "h": ("func", 1),
        "a": ("global", 1),
        "tab": ("table", 1),
        "mem": ("memory", 0),
        "g": ("global", 0),
    }
    assert info.export("h") == wb.Export("h", "func", 1)
    assert info.export("nope") is None
    assert info.start is None


def test_parse_gc_types_and_memory64():
    info = parse(
        wat(
            """
            (module
              (rec (type $a (struct (field (ref null $b)))) (type $b (func (param (ref $a)))))
              (type $c (sub (array i8)))
              (type $d (func (param i32) (result i32)))
              (memory i64 3 7))
            """
        )
    )
    assert info.func_types[0] is None and info.func_types[2] is None
    assert info.func_types[1] == wb.FuncType(("(ref 0)",), ())
    assert info.func_types[3] == wb.FuncType(("i32",), ("i32",))
    assert info.memories == (wb.MemoryLimits(3, 7, memory64=True),)
    assert info.memories[0].effective_maximum == 7
    assert wb.MemoryLimits(1, None).effective_maximum == 65536
    assert wb.MemoryLimits(1, None, memory64=True).effective_maximum == 1 << 48


# ----------------------------------------------------------------------------------------------
# Malformed input: only ModuleError, with a clear message
# ----------------------------------------------------------------------------------------------

SMALL = wat(
    """
    (module
      (import "env" "f" (func $f (param i32)))
      (memory 1 2)
      (global (mut i32) (i32.const 5))
      (data (i32.const 0) "hi")
      (func (export "grow") (param i32) (result i32)
        (call $f (local.get 0))
        (block (result i32) (memory.grow (local.get 0)))))
    """
)


def _refuses(wasm: bytes, *patterns: str) -> ModuleError:
    for fn in (parse, instrument):
        try:
            fn(wasm)
        except ModuleError as e:
            assert "internal decoder error" not in e.message, e.message
            for p in patterns:
                assert re.search(p, e.message), (p, e.message)
            err = e
        else:
            if fn is instrument or not patterns:
                raise AssertionError(f"{fn.__name__} accepted {wasm!r}")
    return err


def test_empty_input_is_refused():
    _refuses(b"", "not a WebAssembly module")


def test_wrong_magic_is_refused():
    _refuses(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8, r"not a WebAssembly module \(bad magic bytes\)")
    _refuses(b"(module)", "bad magic")


def test_wrong_version_is_refused():
    _refuses(b"\x00asm\x02\x00\x00\x00", "version 2")
    _refuses(b"\x00asm\x0d\x00\x01\x00", "component")


def test_every_truncation_is_refused_with_module_error():
    boundaries = {8} | {s.end for s in wb._parse(SMALL)[0].sections}
    for n in range(len(SMALL)):
        prefix = SMALL[:n]
        for fn in (parse, instrument):
            try:
                fn(prefix)
            except ModuleError as e:
                assert "internal decoder error" not in e.message
                assert e.message
            else:
                # Only a prefix ending on a section boundary can be a (smaller) module.
                assert n in boundaries, n


def test_truncated_code_section_names_the_function():
    layout, _ = wb._parse(SMALL)
    entry, start, end = layout.bodies[0]
    with pytest.raises(ModuleError, match=r"code section ends inside function 1"):
        instrument(SMALL[: start + 3])


def test_bad_leb_is_refused():
    # A section size with six continuation bytes.
    _refuses(HEADER + b"\x01\x80\x80\x80\x80\x80\x00", "LEB128")
    # A type count that does not fit in 32 bits.
    _refuses(module_bytes(section(1, b"\xff\xff\xff\xff\x7f")), "LEB128")


def test_section_order_duplicates_and_unknown_ids_are_refused():
    t = section(1, b"\x01\x60\x00\x00")
    f = section(3, b"\x01\x00")
    c = section(10, b"\x01\x02\x00\x0b")
    assert parse(module_bytes(t, f, c)).defined_func_count == 1
    _refuses(module_bytes(f, t, c), "out of order")
    _refuses(module_bytes(t, t, f, c), "duplicate type section")
    _refuses(module_bytes(t, f, c, section(42, b"")), "unknown section id 42")


def test_section_overrun_and_trailing_bytes_are_refused():
    _refuses(HEADER + b"\x01\x10\x00", r"declares 16 bytes but only 1 remain")
    _refuses(module_bytes(section(1, b"\x01\x60\x00\x00\x00")), "unexpected bytes")
    _refuses(module_bytes(section(1, b"\x02\x60\x00\x00")), "run past the end")


def test_count_mismatch_is_refused():
    t = section(1, b"\x01\x60\x00\x00")
    _refuses(module_bytes(t, section(3, b"\x02\x00\x00"), section(10, b"\x01\x02\x00\x0b")), "2 functions.*1 body")
    _refuses(module_bytes(t, section(10, b"\x01\x02\x00\x0b")), "0 functions.*1 body")
    _refuses(module_bytes(t, section(3, b"\x01\x05"), section(10, b"\x01\x02\x00\x0b")), "uses type 5")


def test_unknown_opcode_and_bad_bodies_are_refused():
    def with_body(code: bytes) -> bytes:
        body = b"\x00" + code
        return module_bytes(
            section(1, b"\x01\x60\x01\x7f\x01\x7f"),
            section(3, b"\x01\x00"),
            section(5, b"\x01\x00\x01"),
            section(10, b"\x01" + leb(len(body)) + body),
        )

    assert instrument(with_body(b"\x20\x00\x40\x00\x0b")).grow_guard_index == 1
    with pytest.raises(ModuleError, match=r"unknown opcode 0x1d in function 0 at offset"):
        instrument(with_body(b"\x41\x40\x1d\x0b"))
    with pytest.raises(ModuleError, match=r"unknown opcode 0xfd 0x9a"):
        instrument(with_body(b"\xfd\x9a\x01\x40\x00\x0b"))
    with pytest.raises(ModuleError, match=r"function 0 runs past the end of its body"):
        instrument(with_body(b"\x40\x00\x44\x00\x00\x0b"))
    with pytest.raises(ModuleError, match=r"memory.grow on memory 1.*multiple memories"):
        instrument(with_body(b"\x20\x00\x40\x01\x0b"))
    no_memory = module_bytes(
        section(1, b"\x01\x60\x01\x7f\x01\x7f"),
        section(3, b"\x01\x00"),
        section(10, b"\x01\x06\x00\x20\x00\x40\x00\x0b"),
    )
    with pytest.raises(ModuleError, match="no memory"):
        instrument(no_memory)


def test_invalid_utf8_names_are_refused():
    _refuses(module_bytes(section(0, b"\x02\xff\xfe")), "UTF-8")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_module_error(data):
    for candidate in (data, HEADER + data):
        for fn in (parse, instrument):
            try:
                fn(candidate)
            except ModuleError as e:
                assert "internal decoder error" not in e.message, e.message


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(min_value=8, max_value=len(SMALL) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_modules_raise_only_module_error(mutations):
    data = bytearray(SMALL)
    for pos, value in mutations:
        data[pos] = value
    for fn in (parse, instrument):
        try:
            fn(bytes(data))
        except ModuleError as e:
            assert "internal decoder error" not in e.message, e.message


def test_non_bytes_input_is_a_type_error():
    with pytest.raises(TypeError):
        instrument("(module)")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Size and speed
# ----------------------------------------------------------------------------------------------


def test_large_module_instruments_quickly():
    # ~200k instructions over 400 functions, a grow in every tenth one.
    funcs = []
    for i in range(400):
        ops = "\n".join(
            "(local.set 1 (i32.add (i32.load offset=64 (local.get 1)) (i32.const -64)))" for _ in range(120)
        )
        grow = "(drop (memory.grow (local.get 0)))" if i % 10 == 0 else ""
        funcs.append(f"(func (param i32) (result i32) (local i32) {ops} {grow} (local.get 1))")
    wasm = wat("(module (memory 1) " + " ".join(funcs) + ")")
    t0 = time.perf_counter()
    result = instrument(wasm)
    elapsed = time.perf_counter() - t0
    assert result.grow_guard_index == 400
    assert elapsed < 1.0, f"instrument() took {elapsed:.3f}s"
    wasmtime.Module.validate(ENGINE, result.wasm)


# ----------------------------------------------------------------------------------------------
# The project's test vectors
# ----------------------------------------------------------------------------------------------

_VECTOR_MODULES = sorted(glob.glob(os.path.join(VECTORS, "*.wasm")))


@pytest.mark.skipif(not _VECTOR_MODULES, reason="no vectors/modules/*.wasm built yet")
@pytest.mark.parametrize("path", _VECTOR_MODULES, ids=os.path.basename)
def test_vector_modules_instrument_and_compile(path):
    with open(path, "rb") as fh:
        original = fh.read()
    result = instrument(original)
    wasmtime.Module(ENGINE, result.wasm)
    if result.grow_guard_index is not None:
        assert grows_outside(result.wasm, result.grow_guard_index) == 0
    assert parse(result.wasm).export(POE_MEMORY_EXPORT) is not None or result.memory_export is None
