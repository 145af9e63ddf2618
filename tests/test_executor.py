"""The executor: same segment, same record bytes; every ending is an outcome, never an exception."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import wasmtime

from poe import CostModel, Executor, Invocation, Limits, Outcome, Service, TrapKind, Value
from poe.errors import (
    ArgumentError,
    CostModelMismatchError,
    ExportNotFoundError,
    LimitError,
    ModuleError,
    UnknownImportError,
)

from .conftest import data_bytes, module_bytes

SMALL = CostModel.current(Limits(fuel=50_000_000, memory_pages=64, output_bytes=64 * 1024))


def _run(name: str, inv: Invocation | None = None, cm: CostModel = SMALL, links: dict[str, bytes] | None = None):
    ex = Executor(Service(module_bytes(name), links), cm)
    return ex.run(inv or Invocation.build(argv=[name]))


def _wat(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


# -- real programs ------------------------------------------------------------------------


def test_rust_csv_aggregation_reads_stdin_and_prints_json():
    e = _run("csv_agg.wasm", Invocation.build(argv=["csv_agg"], stdin=data_bytes("sales_small.csv")))
    assert e.record.outcome is Outcome.OK
    summary = json.loads(e.output.stdout.data)
    assert summary["bad_rows"] == 2 and summary["header_ok"] is True
    assert e.record.fuel > 0 and e.record.peak_pages > 0 and e.record.host_calls > 0


def test_c_program_reads_its_input_from_the_preopened_directory():
    words = data_bytes("words.txt")
    e = _run("wordfreq.wasm", Invocation.build(argv=["wordfreq", "words.txt"], files={"words.txt": words}))
    assert e.record.outcome is Outcome.OK
    assert f"bytes: {len(words)}".encode() in e.output.stdout.data


def test_missing_input_file_is_the_programs_own_exit_code():
    e = _run("wordfreq.wasm", Invocation.build(argv=["wordfreq", "absent.txt"]))
    assert (e.record.outcome, e.record.outcome_code) == (Outcome.EXIT, 2)
    assert b"absent.txt" in e.output.stderr.data


def test_random_and_clocks_are_deterministic_and_seeded():
    inv = Invocation.build(argv=["entropy_clock"], env={"GREETING": "hi"})
    a, b = _run("entropy_clock.wasm", inv), _run("entropy_clock.wasm", inv)
    assert a.record_bytes == b.record_bytes and a.output.stdout == b.output.stdout
    c = _run("entropy_clock.wasm", inv.with_seed(b"\x01" * 32))
    random_line = lambda e: next(ln for ln in e.output.stdout.data.splitlines() if ln.startswith(b"random"))  # noqa: E731
    assert random_line(a) != random_line(c)
    assert b"GREETING: hi" in a.output.stdout.data


def test_virtual_clock_advances_with_fuel():
    out = _run("entropy_clock.wasm").output.stdout.data.decode()
    values = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    delta = int(values["monotonic2"]) - int(values["monotonic1"])
    assert delta > 0
    assert float(values["realtime1"]) >= SMALL.clock_realtime_base_ns / 1e9


def test_exported_function_returns_results_as_values():
    e = _run("funcs.wasm", Invocation.build("add", params=[Value.of("i32", 2), Value.of("i32", 40)]))
    assert e.record.outcome is Outcome.OK
    assert [v.python for v in e.output.results] == [42]
    assert e.record.host_calls == 0


def test_nan_results_are_canonical():
    e = _run("funcs.wasm", Invocation.build("nan"))
    (v,) = e.output.results
    assert v.bits & 0x7FFFFFFF == 0x7FC00000  # canonical quiet NaN, sign aside


# -- hostile programs: every ending is a recorded outcome -----------------------------------


def test_infinite_loop_ends_out_of_fuel_having_used_exactly_the_budget():
    e = _run("loop.wasm", Invocation.build())
    assert e.record.outcome is Outcome.OUT_OF_FUEL
    assert e.record.fuel == SMALL.limits.fuel


def test_memory_bomb_ends_with_memory_limit():
    e = _run("membomb.wasm", Invocation.build())
    assert e.record.outcome is Outcome.MEMORY_LIMIT
    assert e.record.peak_pages <= SMALL.limits.memory_pages


def test_c_memory_bomb_ends_with_memory_limit():
    e = _run("membomb_c.wasm", Invocation.build(argv=["membomb"]))
    assert e.record.outcome is Outcome.MEMORY_LIMIT


def test_grow_past_the_modules_own_maximum_is_ordinary_wasm():
    wasm = _wat('(module (memory 1 2) (func (export "g") (result i32) (drop (memory.grow (i32.const 1))) (memory.grow (i32.const 1))))')
    e = Executor(Service(wasm), SMALL).run(Invocation.build("g"))
    assert e.record.outcome is Outcome.OK and e.output.results[0].python == -1


def test_deep_recursion_is_a_stack_overflow_trap():
    e = _run("recurse.wasm", Invocation.build())
    assert (e.record.outcome, e.record.outcome_code) == (Outcome.TRAP, TrapKind.STACK_OVERFLOW)


@pytest.mark.parametrize(
    ("export", "params", "kind"),
    [
        ("div0", [Value.of("i32", 5)], TrapKind.INTEGER_DIVISION_BY_ZERO),
        ("unreachable", [], TrapKind.UNREACHABLE),
        ("oob", [], TrapKind.MEMORY_OUT_OF_BOUNDS),
    ],
)
def test_traps_are_recorded_with_their_kind(export, params, kind):
    e = _run("trap.wasm", Invocation.build(export, params=params))
    assert (e.record.outcome, e.record.outcome_code) == (Outcome.TRAP, kind)


def test_endless_output_ends_with_output_limit_and_keeps_the_limit():
    e = _run("bigout.wasm", Invocation.build(argv=["bigout"]))
    assert e.record.outcome is Outcome.OUTPUT_LIMIT
    assert len(e.output.stdout) + len(e.output.stderr) == SMALL.limits.output_bytes


def test_exit_code_is_recorded():
    e = _run("exit_code.wasm", Invocation.build(argv=["exit_code", "9"]))
    assert (e.record.outcome, e.record.outcome_code) == (Outcome.EXIT, 9)


# -- metering semantics ---------------------------------------------------------------------


def test_start_function_fuel_is_not_billed_to_the_invocation():
    body = "(local i32) (loop (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br_if 0 (i32.lt_u (local.get 0) (i32.const 1000))))"
    with_start = _wat(f'(module (func $s {body}) (start $s) (func (export "f")))')
    without = _wat('(module (func (export "f")))')
    a = Executor(Service(with_start), SMALL).run(Invocation.build("f"))
    b = Executor(Service(without), SMALL).run(Invocation.build("f"))
    assert a.record.fuel == b.record.fuel


def test_host_calls_are_charged_fuel_per_call_and_per_byte():
    small = Invocation.build(argv=["csv_agg"], stdin=b"region,product,units,price_cents\n")
    big = Invocation.build(argv=["csv_agg"], stdin=b"region,product,units,price_cents\n" + b" " * 64 * 1024)
    a, b = _run("csv_agg.wasm", small), _run("csv_agg.wasm", big)
    assert b.record.fuel > a.record.fuel + (64 * 1024) // SMALL.host_bytes_per_fuel


def test_io_digest_tells_apart_runs_whose_inputs_differ():
    a = _run("csv_agg.wasm", Invocation.build(argv=["c"], stdin=b"region,product,units,price_cents\nn,a,1,2\n"))
    b = _run("csv_agg.wasm", Invocation.build(argv=["c"], stdin=b"region,product,units,price_cents\nn,a,1,3\n"))
    assert a.record.io_digest != b.record.io_digest


def test_same_invocation_gives_identical_record_bytes_in_separate_processes(tmp_path):
    script = (
        "import sys; from poe import *\n"
        "from pathlib import Path\n"
        "m = Path(sys.argv[1]).read_bytes(); d = Path(sys.argv[2]).read_bytes()\n"
        "cm = CostModel.current(Limits(fuel=50_000_000, memory_pages=64, output_bytes=65536))\n"
        "e = Executor(Service(m), cm).run(Invocation.build(argv=['csv_agg'], stdin=d), 5)\n"
        "sys.stdout.write(e.record_bytes.hex())\n"
    )
    from .conftest import MODULES

    args = [sys.executable, "-c", script, str(MODULES / "csv_agg.wasm"), str(MODULES / "data" / "sales_small.csv")]
    first = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    here = Executor(Service(module_bytes("csv_agg.wasm")), SMALL).run(
        Invocation.build(argv=["csv_agg"], stdin=data_bytes("sales_small.csv")), 5
    )
    assert first == second == here.record_bytes.hex()


def test_record_commits_to_module_cost_model_and_index():
    inv = Invocation.build("add", params=[Value.of("i32", 1), Value.of("i32", 1)])
    a = Executor(Service(module_bytes("funcs.wasm")), SMALL).run(inv, 3)
    assert a.record.index == 3
    assert a.record.module_digest == Service(module_bytes("funcs.wasm")).digest
    assert a.record.cost_model_digest == SMALL.digest
    other = CostModel.current(Limits(fuel=50_000_001, memory_pages=64, output_bytes=64 * 1024))
    assert Executor(Service(module_bytes("funcs.wasm")), other).run(inv, 3).record.cost_model_digest != SMALL.digest


# -- linking ----------------------------------------------------------------------------------


def test_linked_module_satisfies_imports_and_is_in_the_module_digest():
    links = {"mathlib": module_bytes("mathlib.wasm")}
    e = _run("linked_main.wasm", Invocation.build("run", params=[Value.of("i32", 3)]), links=links)
    assert e.record.outcome is Outcome.OK and e.output.results
    alone = Service(module_bytes("linked_main.wasm")).digest
    assert e.record.module_digest != alone


def test_missing_link_is_refused_before_running():
    with pytest.raises(UnknownImportError, match="--link mathlib="):
        Executor(Service(module_bytes("linked_main.wasm")), SMALL)


def test_link_cycle_is_refused():
    a = _wat('(module (import "b" "f" (func)) (func (export "f")))')
    b = _wat('(module (import "a" "f" (func)) (func (export "f")))')
    with pytest.raises(ModuleError, match="cycle"):
        Executor(Service(_wat('(module (import "a" "f" (func)))'), {"a": a, "b": b}), SMALL)


# -- bad input ----------------------------------------------------------------------------------


def test_non_wasm_bytes_are_a_module_error():
    with pytest.raises(ModuleError, match="not a WebAssembly"):
        Executor(Service(b"#!/bin/sh\necho hi\n"), SMALL)


def test_truncated_wasm_is_a_module_error():
    with pytest.raises(ModuleError):
        Executor(Service(module_bytes("funcs.wasm")[:-7]), SMALL)


def test_unknown_import_is_named_before_running():
    with pytest.raises(UnknownImportError) as e:
        Executor(Service(module_bytes("bad_import.wasm")), SMALL)
    assert "env.mystery" in e.value.message or "fd_teleport" in e.value.message


def test_wasi_import_with_wrong_signature_is_refused():
    wasm = _wat('(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32))))')
    with pytest.raises(UnknownImportError, match="signature"):
        Executor(Service(wasm), SMALL)


def test_missing_export_lists_what_exists():
    ex = Executor(Service(module_bytes("funcs.wasm")), SMALL)
    with pytest.raises(ExportNotFoundError, match="add"):
        ex.run(Invocation.build("nope"))


@pytest.mark.parametrize(
    "params",
    [[], [Value.of("i32", 1)], [Value.of("i32", 1), Value.of("i64", 1)], [Value.of("i32", 1)] * 3],
)
def test_wrong_argument_count_or_type_is_refused(params):
    ex = Executor(Service(module_bytes("funcs.wasm")), SMALL)
    with pytest.raises(ArgumentError):
        ex.run(Invocation.build("add", params=params))


def test_cost_model_of_another_wasmtime_release_is_refused():
    foreign = dataclasses.replace(SMALL, wasmtime="45.0.0")
    with pytest.raises(CostModelMismatchError) as e:
        Executor(Service(module_bytes("funcs.wasm")), foreign)
    assert e.value.expected == "45.0.0"


def test_cost_model_with_other_engine_flags_is_refused():
    foreign = dataclasses.replace(SMALL, engine={**SMALL.engine, "cranelift_nan_canonicalization": False})
    with pytest.raises(CostModelMismatchError):
        Executor(Service(module_bytes("funcs.wasm")), foreign)


@pytest.mark.parametrize("kw", [{"fuel": 0}, {"memory_pages": 70_000}, {"fuel": 2**62, "memory_pages": 65536},
                                {"table_elements": 10**30}, {"output_bytes": 10**30}, {"table_elements": 2**32}])
def test_limits_that_could_overflow_or_make_no_sense_are_refused(kw):
    with pytest.raises(LimitError):
        Limits(**kw)


# -- limits hit at instantiation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("wat", "text"),
    [
        ('(module (table 2000000 funcref) (func (export "f")))', "table-limit"),
        ('(module (memory 65) (func (export "f")))', "memory-limit"),
        ('(module (func $s unreachable) (start $s) (func (export "f")))', "trap(instantiation)"),
        ('(module (memory 1) (data (i32.const 70000) "x") (func (export "f")))', "trap(instantiation)"),
    ],
)
def test_failures_while_instantiating_are_recorded_with_zero_fuel(wat, text):
    e = Executor(Service(_wat(wat)), SMALL).run(Invocation.build("f"))
    assert (e.record.describe_outcome(), e.record.fuel) == (text, 0)


def test_table_grow_past_the_limit_is_ordinary_wasm():
    wasm = _wat('(module (table 1 funcref) (func (export "f") (result i32) (table.grow (ref.null func) (i32.const 2000000))))')
    e = Executor(Service(wasm), SMALL).run(Invocation.build("f"))
    assert e.record.outcome is Outcome.OK and e.output.results[0].python == -1


# -- hardening --------------------------------------------------------------------------------


def test_fd_write_with_huge_iovecs_reads_no_more_than_the_output_limit():
    """1024 iovecs each covering 1 MiB ask for 1 GiB of host memory; the host must not gather it."""
    import tracemalloc

    wasm = _wat(
        '(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))'
        ' (memory (export "memory") 16)'
        ' (func (export "_start") (local i32)'
        '  (loop (i32.store (i32.mul (local.get 0) (i32.const 8)) (i32.const 0))'
        '        (i32.store (i32.add (i32.mul (local.get 0) (i32.const 8)) (i32.const 4)) (i32.const 1048576))'
        '        (local.set 0 (i32.add (local.get 0) (i32.const 1)))'
        '        (br_if 0 (i32.lt_u (local.get 0) (i32.const 1024))))'
        '  (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1024) (i32.const 9000)))))'
    )
    tracemalloc.start()
    e = Executor(Service(wasm), SMALL).run(Invocation.build())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert e.record.outcome is Outcome.OUTPUT_LIMIT
    assert len(e.output.stdout) == SMALL.limits.output_bytes
    assert peak < 32 * 1024 * 1024


def test_plain_trap_in_main_is_not_mistaken_for_a_linked_modules_memory_limit():
    lib = _wat('(module (memory 1) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))')
    # lib's guard is function 1; main's function 1 simply traps
    main = _wat('(module (import "lib" "grow" (func $g (param i32) (result i32))) (func (export "run") unreachable))')
    e = Executor(Service(main, {"lib": lib}), SMALL).run(Invocation.build("run"))
    assert (e.record.outcome, e.record.outcome_code) == (Outcome.TRAP, TrapKind.UNREACHABLE)


def test_linked_modules_memory_limit_is_still_recognised():
    lib = _wat('(module (memory 1) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))')
    main = _wat('(module (import "lib" "grow" (func $g (param i32) (result i32))) (func (export "run") (result i32) (call $g (i32.const 1000))))')
    e = Executor(Service(main, {"lib": lib}), SMALL).run(Invocation.build("run"))
    assert e.record.outcome is Outcome.MEMORY_LIMIT


def test_monotonic_clock_never_runs_backwards_from_start_function_to_call():
    wasm = _wat(
        '(module (import "wasi_snapshot_preview1" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))'
        ' (memory (export "memory") 1)'
        ' (func $s (local i32) (drop (call $c (i32.const 1) (i64.const 0) (i32.const 0)))'
        '  (loop (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br_if 0 (i32.lt_u (local.get 0) (i32.const 100000)))))'
        ' (start $s)'
        ' (func (export "later") (result i32) (drop (call $c (i32.const 1) (i64.const 0) (i32.const 8)))'
        '  (i64.ge_u (i64.load (i32.const 8)) (i64.load (i32.const 0)))))'
    )
    e = Executor(Service(wasm), SMALL).run(Invocation.build("later"))
    assert e.output.results[0].python == 1


def test_services_of_more_than_sixteen_modules_are_refused():
    lib = _wat('(module (func (export "f")))')
    with pytest.raises(ModuleError, match="at most"):
        Executor(Service(_wat("(module)"), {f"m{i}": lib for i in range(16)}), SMALL)
