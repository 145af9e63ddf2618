"""Executor overhead: a poe-recorded segment vs the same fuel-metered call in bare wasmtime-py."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import wasmtime
from wasmtime import _ffi as ffi

from poe import CostModel, Executor, Invocation, Service, Value
from poe.wasm.executor import _engine

FUNCS = (Path(__file__).resolve().parent.parent / "vectors" / "modules" / "funcs.wasm").read_bytes()
CM = CostModel.current()
ENGINE = _engine(CM)  # the same engine configuration for baseline and poe
MODULE = wasmtime.Module(ENGINE, FUNCS)
PRE = wasmtime.Linker(ENGINE).instantiate_pre(MODULE)
EXECUTOR = Executor(Service(FUNCS), CM)
WORK_N = 2_000_000  # about 5 ms of compute on this machine


def bare_call(export: str, *args):
    """What a wasmtime-py user writes: fresh store, fuel, instantiate, call, read fuel."""
    store = wasmtime.Store(ENGINE)
    store.set_fuel(CM.limits.fuel)
    instance = PRE.instantiate(store)
    result = instance.exports(store)[export](store, *args)
    return result, CM.limits.fuel - store.get_fuel()


_PARAMS = (ffi.wasmtime_val_t * 0)()
_RESULTS = (ffi.wasmtime_val_t * 0)()


def lean_noop():
    """The fastest path through the C API: one export looked up by name, a prepared call."""
    store = wasmtime.Store(ENGINE)
    store.set_fuel(CM.limits.fuel)
    instance = PRE.instantiate(store)
    item = ffi.wasmtime_extern_t()
    ffi.wasmtime_instance_export_get(store._context(), ctypes.byref(instance._instance), ctypes.create_string_buffer(b"noop", 4), 4, ctypes.byref(item))
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    ffi.wasmtime_func_call(store._context(), ctypes.byref(item.of.func), _PARAMS, 0, _RESULTS, 0, ctypes.byref(trap))
    return store.get_fuel()


@pytest.mark.benchmark(group="compute")
def test_compute_baseline(measured):
    result, fuel = measured(bare_call, "work", WORK_N)
    measured.extra_info["fuel"] = fuel


@pytest.mark.benchmark(group="compute")
def test_compute_poe(measured):
    inv = Invocation.build("work", params=[Value.of("i32", WORK_N)])
    e = measured(EXECUTOR.run, inv)
    _, fuel = bare_call("work", WORK_N)
    assert e.record.fuel == fuel  # same work measured: poe reads fuel around the same call
    measured.extra_info["fuel"] = e.record.fuel


@pytest.mark.benchmark(group="trivial")
def test_trivial_baseline(measured):
    measured(bare_call, "noop")


@pytest.mark.benchmark(group="trivial")
def test_trivial_lean_c_api(measured):
    measured(lean_noop)


@pytest.mark.benchmark(group="trivial")
def test_trivial_poe(measured):
    inv = Invocation.build("noop")
    measured(EXECUTOR.run, inv)
