"""The metered executor: one segment in, one record out, the same bytes on every machine.

A :class:`Service` is the main module plus the modules it links by name. The
:class:`Executor` compiles it once under a :class:`CostModel` and runs invocations: each
segment gets a fresh store and instance (stateless mode), fuel is read around the call
only, and however the call ends (return, proc_exit, trap, exhausted fuel, a limit) the
outcome is data in the record, never an exception.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import wasmtime

from poe.formats import hashing as h
from poe.formats.execution import Execution
from poe.formats.moduleset import Service
from poe.formats.costmodel import MAX_MODULES, WASM_PAGE, CostModel
from poe.formats.invocation import EMPTY, VALTYPES, Invocation, Output, Payload, Value
from poe.formats.record import Outcome, Record, TrapKind, describe_outcome
from poe.wasm.wasi import WASI_FUNCTIONS, WASI_MODULE, HostStop, WasiHost, wasi_signature
from poe.formats.state import State
from poe.wasm.binary import POE_MEMORY_EXPORT, instrument, state_hazards
from poe.errors import (
    ArgumentError,
    ExportNotFoundError,
    InternalError,
    ModuleError,
    StatefulModuleError,
    StateMismatchError,
    UnknownImportError,
)

__all__ = ["Service", "Executor", "Execution", "Session"]

# wasmtime-py's Func.__call__ spends ~17 us per call in Python (type lookups and value
# conversion); a segment of a trivial function costs about that much in total. poe calls
# through the same C entry point with a prepared argument array. The private names used
# are checked here once so a wasmtime-py release that moves them fails loudly at import.
try:
    from wasmtime import _ffi as _wffi
    from wasmtime import _func as _wfunc

    _FUNC_CALL = _wffi.wasmtime_func_call
    _EXPORT_GET = _wffi.wasmtime_instance_export_get
    _VAL_T = _wffi.wasmtime_val_t
    _TRAP_PTR = ctypes.POINTER(_wffi.wasm_trap_t)
    _KIND = {"i32": _wffi.WASMTIME_I32.value, "i64": _wffi.WASMTIME_I64.value, "f32": _wffi.WASMTIME_F32.value, "f64": _wffi.WASMTIME_F64.value}
    _wfunc.LAST_EXCEPTION  # noqa: B018 (presence check)
except (ImportError, AttributeError) as exc:  # pragma: no cover - only on an unsupported wasmtime-py
    raise ImportError(f"poe needs wasmtime-py 50.x internals it was tested with: {exc}") from exc

_TRAP_KIND = {
    wasmtime.TrapCode.STACK_OVERFLOW: TrapKind.STACK_OVERFLOW,
    wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS: TrapKind.MEMORY_OUT_OF_BOUNDS,
    wasmtime.TrapCode.HEAP_MISALIGNED: TrapKind.HEAP_MISALIGNED,
    wasmtime.TrapCode.TABLE_OUT_OF_BOUNDS: TrapKind.TABLE_OUT_OF_BOUNDS,
    wasmtime.TrapCode.INDIRECT_CALL_TO_NULL: TrapKind.INDIRECT_CALL_TO_NULL,
    wasmtime.TrapCode.BAD_SIGNATURE: TrapKind.BAD_SIGNATURE,
    wasmtime.TrapCode.INTEGER_OVERFLOW: TrapKind.INTEGER_OVERFLOW,
    wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO: TrapKind.INTEGER_DIVISION_BY_ZERO,
    wasmtime.TrapCode.BAD_CONVERSION_TO_INTEGER: TrapKind.BAD_CONVERSION_TO_INTEGER,
    wasmtime.TrapCode.UNREACHABLE: TrapKind.UNREACHABLE,
    wasmtime.TrapCode.NULL_REFERENCE: TrapKind.NULL_REFERENCE,
    wasmtime.TrapCode.ARRAY_OUT_OF_BOUNDS: TrapKind.ARRAY_OUT_OF_BOUNDS,
    wasmtime.TrapCode.ALLOCATION_TOO_LARGE: TrapKind.ALLOCATION_TOO_LARGE,
    wasmtime.TrapCode.CAST_FAILURE: TrapKind.CAST_FAILURE,
    wasmtime.TrapCode.UNCAUGHT_EXCEPTION: TrapKind.UNCAUGHT_EXCEPTION,
}


@dataclass(frozen=True)
class _Compiled:
    name: str
    module: wasmtime.Module
    grow_flag: str | None  # export of the global the memory.grow guard raises before trapping
    owns_memory: bool
    global_exports: tuple[tuple[str, str], ...] = ()  # every mutable global, as instrument() exported it


_ENGINES: dict[bytes, wasmtime.Engine] = {}
_MODULES: dict[tuple[bytes, bytes], _Compiled] = {}


def _engine(cm: CostModel) -> wasmtime.Engine:
    engine = _ENGINES.get(cm.digest)
    if engine is None:
        cfg = wasmtime.Config()
        for flag, value in cm.engine.items():
            setattr(cfg, flag, value)
        cfg.max_wasm_stack = cm.limits.stack_bytes
        engine = _ENGINES[cm.digest] = wasmtime.Engine(cfg)
    return engine


def _compile(cm: CostModel, name: str, wasm: bytes) -> _Compiled:
    key = (cm.digest, h.blob_digest(wasm))
    compiled = _MODULES.get(key)
    if compiled is None:
        what = f"module {name!r}" if name else "the module"
        if len(wasm) < 8 or wasm[:4] != b"\x00asm":
            raise ModuleError(f"{what} is not a WebAssembly binary (no \\0asm magic)")
        inst = instrument(wasm)
        try:
            module = wasmtime.Module(_engine(cm), inst.wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleError(f"{what} is not a valid WebAssembly module: {_first_line(exc)}") from None
        compiled = _MODULES[key] = _Compiled(
            name, module, inst.grow_flag_export, inst.memory_export is not None and not inst.memory_imported, inst.global_exports,
        )
    return compiled


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # wasmtime puts the cause last ("Caused by: ..."); the first line is the context.
    return "; ".join(dict.fromkeys(lines[:1] + lines[-1:])) if lines else type(exc).__name__


def _types(ty: wasmtime.FuncType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


class Executor:
    """Compiles a service once under a cost model and runs its segments."""

    def __init__(self, service: Service, cost_model: CostModel | None = None) -> None:
        self.cost_model = cm = cost_model or CostModel.current()
        cm.check_reproducible()
        self.service = service
        self.module_digest = service.digest
        self._engine = _engine(cm)
        self._main = _compile(cm, "", service.main)
        self._links = {n: _compile(cm, n, w) for n, w in service.links.items()}
        self._order = self._link_order()
        self._check_imports(self._main)
        for c in self._links.values():
            self._check_imports(c)
        self.exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            e.name: _types(e.type) for e in self._main.module.exports if isinstance(e.type, wasmtime.FuncType)
        }
        if 1 + len(self._links) > MAX_MODULES:
            raise ModuleError(f"a service links at most {MAX_MODULES - 1} modules, got {len(self._links)}")
        self.host = WasiHost(cm)
        self._hazards: list[str] | None = None
        self._genesis: tuple[State, bytes] | None = None
        self._replay_session: Session | None = None
        self._linker = wasmtime.Linker(self._engine)
        self.host.define(self._linker)
        if self._links:
            self._linker.allow_shadowing = True
            self._pre = None
        else:
            try:
                self._pre = self._linker.instantiate_pre(self._main.module)
            except wasmtime.WasmtimeError as exc:
                raise ModuleError(f"the module cannot be linked: {_first_line(exc)}") from None

    # -- checks before running -----------------------------------------------------------

    def _link_order(self) -> list[str]:
        """Linked modules in dependency order (each after the modules it imports from)."""
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise ModuleError(f"linked modules import each other in a cycle: {' -> '.join(path + (name,))}")
            state[name] = 1
            for imp in self._links[name].module.imports:
                if imp.module in self._links:
                    visit(imp.module, path + (name,))
            state[name] = 2
            order.append(name)

        for imp in self._main.module.imports:
            if imp.module in self._links:
                visit(imp.module, ("main",))
        return order

    def _check_imports(self, c: _Compiled) -> None:
        who = f"linked module {c.name!r}" if c.name else "the module"
        for imp in c.module.imports:
            where = f"{imp.module}.{imp.name}"
            if imp.module == WASI_MODULE:
                if imp.name not in WASI_FUNCTIONS:
                    raise UnknownImportError(f"{who} imports {where}, which is not a WASI preview1 function", import_name=where)
                if not isinstance(imp.type, wasmtime.FuncType) or _types(imp.type) != wasi_signature(imp.name):
                    raise UnknownImportError(f"{who} imports {where} with a signature WASI preview1 does not define", import_name=where)
            elif imp.module in self._links:
                target = self._links[imp.module].module
                if imp.name not in {e.name for e in target.exports}:
                    raise UnknownImportError(f"{who} imports {where}, but linked module {imp.module!r} exports no {imp.name!r}", import_name=where)
            else:
                raise UnknownImportError(
                    f"{who} imports {where}, which poe does not provide"
                    + (" (WASI preview0 'wasi_unstable' is not supported; rebuild for wasm32-wasi preview1)" if imp.module == "wasi_unstable" else f"; if another module provides it, pass --link {imp.module}=FILE.wasm"),
                    import_name=where,
                )

    def check(self, inv: Invocation) -> None:
        """Raise a clear error if `inv` cannot be run against this service's exports."""
        sig = self.exports.get(inv.export)
        if sig is None:
            known = ", ".join(sorted(n for n in self.exports if n != POE_MEMORY_EXPORT)) or "none"
            raise ExportNotFoundError(f"the module has no exported function {inv.export!r} (exported functions: {known})", export=inv.export)
        params, results = sig
        for t in (*params, *results):
            if t not in VALTYPES:
                raise ArgumentError(f"export {inv.export!r} uses type {t}; poe can invoke only exports with i32/i64/f32/f64 parameters and results")
        if len(inv.params) != len(params):
            raise ArgumentError(f"export {inv.export!r} takes {len(params)} argument(s) ({', '.join(params) or 'none'}), got {len(inv.params)}")
        for i, (want, v) in enumerate(zip(params, inv.params)):
            if v.type != want:
                raise ArgumentError(f"argument {i} of {inv.export!r} must be {want}, got {v.type}")

    # -- stateful mode ---------------------------------------------------------------------

    def check_stateful(self) -> None:
        """Raise StatefulModuleError unless a snapshot captures this service's whole state."""
        if self.service.links:
            raise StatefulModuleError("stateful mode runs single-module services; this one links "
                                      + ", ".join(sorted(self.service.links)) + " (each module's state would need committing)")
        if self._hazards is None:
            self._hazards = state_hazards(self.service.main)
        if self._hazards:
            more = f" (and {len(self._hazards) - 1} more)" if len(self._hazards) > 1 else ""
            raise StatefulModuleError(
                f"the module cannot run statefully: it changes state a snapshot does not capture: {self._hazards[0]}{more}; "
                "poe commits linear memory and numeric mutable globals only"
            )

    def session(self, start: tuple[State, bytes] | None = None, *, tracking: str = "auto") -> Session:
        """A stateful session: one instance across segments, from genesis or from `start`
        (a state and its memory image, checked against each other)."""
        return Session(self, start, tracking=tracking)

    def genesis(self) -> tuple[State, bytes]:
        """The state every lineage starts from: the instance right after instantiation (and
        `_initialize`, for WASI reactors), clock 0. Same on every machine under this cost model."""
        if self._genesis is None:
            with Session(self, tracking="rehash") as s:
                self._genesis = (s.state, s.image())
        return self._genesis

    def run_stateful(self, start: tuple[State, bytes], inv: Invocation, index: int = 0) -> Execution:
        """Re-execute one stateful segment from a given pre-state (what an auditor does). The
        post-state is rehashed in full, independently of any dirty-chunk tracking.

        One instance is reused from call to call while its memory is no larger than the next
        pre-state's: restoring overwrites all of the state a snapshot holds (memory, globals,
        clock), and stateful modules have no other mutable state (tables and segment drops are
        refused), so it is the same as a fresh instance, without re-instantiating and faulting
        in fresh copy-on-write pages every time."""
        s = self._replay_session
        try:
            if s is not None and s._tree is not None and s.pages <= start[0].pages:
                s.restore(start)
            else:
                if s is not None:
                    s.close()
                self._replay_session = None
                s = Session(self, start, tracking="rehash")
            self._replay_session = s
            return s.run(inv, index)
        except BaseException:
            if self._replay_session is not None:
                self._replay_session.close()
            self._replay_session = None
            raise

    # -- running -------------------------------------------------------------------------

    def run(self, inv: Invocation, index: int = 0, *, trace: bool = False) -> Execution:
        self.check(inv)
        cm = self.cost_model
        budget = cm.limits.fuel
        store = wasmtime.Store(self._engine)
        store.set_limits(
            memory_size=cm.limits.memory_pages * WASM_PAGE, table_elements=cm.limits.table_elements,
            instances=MAX_MODULES, memories=MAX_MODULES,
        )
        store.set_fuel(budget)
        ctx = self.host.begin(inv, trace=trace)
        results: tuple[Value, ...] = ()
        fuel = 0
        instances: list[tuple[_Compiled, wasmtime.Instance]] = []
        outcome, code = self._instantiate(store, instances)
        if outcome is None:
            # Fuel is read around the call only: start functions are not billed. The budget
            # is not refilled, so the virtual clock (fuel-driven) never runs backwards. A call
            # that answers a customer's request gets at most the fuel the customer signed for.
            if inv.fuel_budget is not None and inv.fuel_budget < store.get_fuel():
                store.set_fuel(inv.fuel_budget)
            before = store.get_fuel()
            func = _export(store, instances[-1][1], inv.export)
            assert isinstance(func, wasmtime.Func)
            outcome, code, results = self._call(store, func, inv)
            fuel = before - store.get_fuel()
            if outcome is Outcome.TRAP and code == TrapKind.UNREACHABLE and self._grow_refused(store, instances):
                outcome, code = Outcome.MEMORY_LIMIT, 0
        pages = 0
        for compiled, instance in instances:
            if compiled.owns_memory:
                mem = _export(store, instance, POE_MEMORY_EXPORT)
                if isinstance(mem, wasmtime.Memory):
                    pages += mem.size(store)
        output, record = self._record(inv, index, ctx, outcome, code, fuel, pages, results)
        self.host.ctx = None
        return Execution(record, inv, output, ctx.log)

    def _record(self, inv: Invocation, index: int, ctx, outcome: Outcome, code: int, fuel: int, pages: int,
                results: tuple[Value, ...], pre_state: bytes = bytes(32), post_state: bytes = bytes(32)) -> tuple[Output, Record]:
        """A finished segment's output and record, in either mode."""
        output = Output(
            results,
            Payload(bytes(ctx.stdout)) if ctx.stdout else EMPTY,
            Payload(bytes(ctx.stderr)) if ctx.stderr else EMPTY,
        )
        record = Record(
            index=index, outcome=outcome, outcome_code=code, fuel=fuel, peak_pages=pages,
            input_bytes=inv.payload_bytes, output_bytes=output.payload_bytes, host_calls=ctx.calls,
            module_digest=self.module_digest, cost_model_digest=self.cost_model.digest, input_digest=inv.digest,
            output_digest=output.digest, io_digest=ctx.io.digest(), pre_state=pre_state, post_state=post_state,
        )
        return output, record

    @staticmethod
    def _grow_refused(store: wasmtime.Store, instances: list[tuple[_Compiled, wasmtime.Instance]]) -> bool:
        """Did a memory.grow guard trap because the host's limit refused (its flag is raised)?"""
        for compiled, instance in instances:
            if compiled.grow_flag is not None:
                flag = _export(store, instance, compiled.grow_flag)
                if isinstance(flag, wasmtime.Global) and flag.value(store) == 1:
                    return True
        return False

    def _instantiate(self, store: wasmtime.Store, instances: list) -> tuple[Outcome | None, int]:
        try:
            if self._pre is not None:
                instances.append((self._main, self._pre.instantiate(store)))
                return None, 0
            for name in self._order:
                c = self._links[name]
                inst = self._linker.instantiate(store, c.module)
                self._linker.define_instance(store, name, inst)
                instances.append((c, inst))
            instances.append((self._main, self._linker.instantiate(store, self._main.module)))
            return None, 0
        except HostStop as stop:  # wasmtime-py re-raises a host call's exception from instantiate
            _take_host_exception()
            return _stop_outcome(stop)
        except wasmtime.Trap as trap:
            _raise_host_failure(_take_host_exception())
            if trap.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                return Outcome.OUT_OF_FUEL, 0
            if trap.trap_code == wasmtime.TrapCode.UNREACHABLE and self._grow_refused(store, instances):
                return Outcome.MEMORY_LIMIT, 0
            return Outcome.TRAP, TrapKind.INSTANTIATION
        except wasmtime.WasmtimeError as exc:
            host_exc = _take_host_exception()
            if isinstance(host_exc, HostStop):
                return _stop_outcome(host_exc)
            _raise_host_failure(host_exc)
            text = str(exc)
            if "exceeds memory limits" in text or "memory minimum size" in text:
                return Outcome.MEMORY_LIMIT, 0
            if "table" in text and ("limit" in text or "exceeds" in text):
                return Outcome.MEMORY_LIMIT, 1
            raise ModuleError(f"the module cannot be instantiated: {_first_line(exc)}") from None
        except Exception as exc:  # a bug in poe's host surfaced through instantiate
            _take_host_exception()
            raise InternalError(f"poe's WASI host failed while instantiating: {type(exc).__name__}: {exc}") from exc

    def _call(self, store: wasmtime.Store, func: wasmtime.Func, inv: Invocation) -> tuple[Outcome, int, tuple[Value, ...]]:
        _, result_types = self.exports[inv.export]
        params = (_VAL_T * len(inv.params))()
        for slot, v in zip(params, inv.params):
            slot.kind = _KIND[v.type]
            if v.type in ("i32", "f32"):
                slot.of.i32 = v.bits - (1 << 32) if v.bits >> 31 else v.bits
            else:
                slot.of.i64 = v.bits - (1 << 64) if v.bits >> 63 else v.bits
        results = (_VAL_T * len(result_types))()
        trap = _TRAP_PTR()
        error = _FUNC_CALL(store._context(), ctypes.byref(func._func), params, len(params), results, len(results), ctypes.byref(trap))
        trap_obj = wasmtime.Trap._from_ptr(trap) if trap else None
        error_obj = wasmtime.WasmtimeError._from_ptr(error) if error else None
        host_exc = _take_host_exception()
        if isinstance(host_exc, HostStop):
            return (*_stop_outcome(host_exc), ())
        _raise_host_failure(host_exc)
        if error_obj is not None:
            raise InternalError(f"wasmtime refused the call: {_first_line(error_obj)}")
        if trap_obj is not None:
            tc = trap_obj.trap_code
            if tc == wasmtime.TrapCode.OUT_OF_FUEL:
                return Outcome.OUT_OF_FUEL, 0, ()
            return Outcome.TRAP, int(_TRAP_KIND.get(tc, TrapKind.OTHER)) if tc is not None else int(TrapKind.OTHER), ()
        values = []
        for t, slot in zip(result_types, results):
            if t in ("i32", "f32"):
                values.append(Value(t, slot.of.i32 & 0xFFFFFFFF))
            else:
                values.append(Value(t, slot.of.i64 & 0xFFFFFFFFFFFFFFFF))
        return Outcome.OK, 0, tuple(values)


_U64_MAX = (1 << 64) - 1
_INIT_EXPORT = "_initialize"  # WASI reactors: the host calls it once before any other export


class Session:
    """Stateful mode (spec §13): one instance lives across segments.

    Each segment's record carries the state root before and after it; the state is linear
    memory 0, every mutable global (made reachable by the instrumenter's exports) and the
    lineage's virtual clock. Memory is committed as its plain BLAKE3 hash, kept up to date by
    a :class:`MemoryTree` that rehashes only the chunks a segment dirtied.
    """

    def __init__(self, executor: Executor, start: tuple[State, bytes] | None = None, *, tracking: str = "auto") -> None:
        from poe.merkle.memory import MemoryTree

        executor.check_stateful()
        self._ex = ex = executor
        cm = ex.cost_model
        self._store = store = wasmtime.Store(ex._engine)
        store.set_limits(memory_size=cm.limits.memory_pages * WASM_PAGE, table_elements=cm.limits.table_elements, instances=1, memories=1)
        self._tree: MemoryTree | None = None
        instances: list[tuple[_Compiled, wasmtime.Instance]] = []
        ex.host.begin(_GENESIS_INVOCATION)
        try:
            store.set_fuel(cm.limits.fuel)
            outcome, code = ex._instantiate(store, instances)
            if outcome is None:
                init = _export(store, instances[-1][1], _INIT_EXPORT)
                if isinstance(init, wasmtime.Func) and _types(init.type(store)) == ((), ()):
                    outcome, code, _ = ex._call(store, init, _GENESIS_INVOCATION)
                    outcome = None if outcome is Outcome.OK else outcome
        finally:
            ex.host.ctx = None
        if outcome is not None:
            raise StatefulModuleError(f"the module cannot start a stateful lineage: instantiating it ends in {describe_outcome(outcome, code)}")
        compiled, self._instance = instances[-1]
        mem = _export(store, self._instance, POE_MEMORY_EXPORT)
        self._memory = mem if isinstance(mem, wasmtime.Memory) else None
        self._globals: list[tuple[int, str, wasmtime.Global]] = []
        for name, vtype in compiled.global_exports:
            g = _export(store, self._instance, name)
            assert isinstance(g, wasmtime.Global)
            self._globals.append((int(name.rsplit("_", 1)[1]), vtype, g))
        flag = _export(store, self._instance, compiled.grow_flag) if compiled.grow_flag else None
        self._flag = flag if isinstance(flag, wasmtime.Global) else None
        self._tree = MemoryTree(tracking)
        if start is not None:
            self.restore(start)
        else:
            address, length = self._region()
            self.state = State(length // WASM_PAGE, 0, self._tree.attach(address, length), self._read_globals())

    def restore(self, start: tuple[State, bytes]) -> None:
        """Put the instance in state `start` (memory image, globals, clock), checked against it.
        The instance's memory must not be larger than the state's (memory never shrinks)."""
        assert self._tree is not None, "session is closed"
        try:
            self._restore(*start)
            address, length = self._region()
            memory = self._tree.attach(address, length)  # hashed once, here, as the tree is built
            if memory != start[0].memory:
                raise StateMismatchError(f"the memory image does not hash to state {start[0].root.hex()[:16]}...'s memory root",
                                         expected=start[0].memory.hex(), observed=memory.hex())
            self.state = State(length // WASM_PAGE, start[0].clock, memory, self._read_globals())
            if self.state != start[0]:
                raise StateMismatchError(
                    "the restored instance does not reproduce the state it was given",
                    expected=start[0].root.hex(), observed=self.state.root.hex(),
                )
        except BaseException:
            self.close()
            raise

    @property
    def pages(self) -> int:
        return self._region()[1] // WASM_PAGE

    @property
    def tracking(self) -> str:
        assert self._tree is not None
        return self._tree.tracking

    # -- state access ----------------------------------------------------------------------

    def _region(self) -> tuple[int, int]:
        if self._memory is None:
            return 0, 0
        length = self._memory.data_len(self._store)
        address = ctypes.cast(self._memory.data_ptr(self._store), ctypes.c_void_p).value or 0
        return address, length

    def image(self) -> bytes:
        """A copy of linear memory as it is now."""
        address, length = self._region()
        return ctypes.string_at(address, length) if length else b""

    def _read_globals(self) -> tuple[tuple[int, str, int], ...]:
        out = []
        ctx = self._store._context()
        for index, vtype, g in self._globals:
            raw = _VAL_T()
            _wffi.wasmtime_global_get(ctx, ctypes.byref(g._global), ctypes.byref(raw))
            # Raw bits through the union, so a float global's NaN payload survives.
            bits = raw.of.i32 & 0xFFFFFFFF if vtype in ("i32", "f32") else raw.of.i64 & _U64_MAX
            out.append((index, vtype, bits))
        return tuple(out)

    def _restore(self, state: State, image: bytes) -> None:
        cm = self._ex.cost_model
        _, length = self._region()
        state.check_shape([(i, t) for i, t, _ in self._globals], length // WASM_PAGE)
        if state.pages > cm.limits.memory_pages:
            raise StateMismatchError(f"the state has {state.pages} pages, beyond this cost model's memory limit of {cm.limits.memory_pages}",
                                     expected=cm.limits.memory_pages, observed=state.pages)
        if len(image) != state.memory_bytes:
            raise StateMismatchError(f"state {state.root.hex()[:16]}... has {state.pages} pages but its image is {len(image)} bytes",
                                     expected=state.memory_bytes, observed=len(image))
        if self._memory is None:
            if state.pages:
                raise StateMismatchError("the state has memory but the module has none: a state for another module", expected=0, observed=state.pages)
        else:
            grow = state.pages - length // WASM_PAGE
            try:
                if grow:
                    self._memory.grow(self._store, grow)
            except wasmtime.WasmtimeError:  # beyond the module's own declared maximum
                maximum = self._memory.type(self._store).limits.max
                raise StateMismatchError(f"the state has {state.pages} pages, beyond the module's declared memory maximum ({maximum}): "
                                         "no run of this module reaches it", expected=maximum, observed=state.pages) from None
            address, length = self._region()
            ctypes.memmove(address, image, length)
        ctx = self._store._context()
        for (index, vtype, g), (_, _, bits) in zip(self._globals, state.globals):
            raw = _VAL_T()
            raw.kind = _KIND[vtype]
            if vtype in ("i32", "f32"):
                raw.of.i32 = bits - (1 << 32) if bits >> 31 else bits
            else:
                raw.of.i64 = bits - (1 << 64) if bits >> 63 else bits
            error = _wffi.wasmtime_global_set(ctx, ctypes.byref(g._global), ctypes.byref(raw))
            if error:
                raise InternalError(f"cannot restore global {index}: {_first_line(wasmtime.WasmtimeError._from_ptr(error))}")

    # -- running ---------------------------------------------------------------------------

    def run(self, inv: Invocation, index: int = 0, *, trace: bool = False) -> Execution:
        """Run one segment on the live instance; the record's pre-state is the state before it."""
        assert self._tree is not None, "session is closed"
        ex = self._ex
        ex.check(inv)
        cm = ex.cost_model
        store = self._store
        pre = self.state
        store.set_fuel(cm.limits.fuel if inv.fuel_budget is None else min(cm.limits.fuel, inv.fuel_budget))
        if self._flag is not None:
            self._flag.set_value(store, 0)  # a limit hit in an earlier segment must not colour this one
        # The random stream of a step depends on where the lineage stands, so a guest calling
        # `step` with the same invocation does not see the same bytes every time.
        key = h.digest(h.CTX_STATE_RANDOM, inv.seed + pre.root)
        ctx = ex.host.begin(inv, trace=trace, clock_base=pre.clock, random_key=key)
        try:
            func = _export(store, self._instance, inv.export)
            assert isinstance(func, wasmtime.Func)
            before = store.get_fuel()
            outcome, code, results = ex._call(store, func, inv)
            fuel = before - store.get_fuel()
            if outcome is Outcome.TRAP and code == TrapKind.UNREACHABLE and self._flag is not None and self._flag.value(store) == 1:
                outcome, code = Outcome.MEMORY_LIMIT, 0
        finally:
            ex.host.ctx = None
        address, length = self._region()
        memory, changed = self._tree.commit(address, length)
        clock = min(pre.clock + fuel * cm.clock_ns_per_fuel + ctx.slept_ns, _U64_MAX)  # saturates, never wraps
        post = State(length // WASM_PAGE, clock, memory, self._read_globals())
        output, record = ex._record(inv, index, ctx, outcome, code, fuel, post.pages, results, pre.root, post.root)
        self.state = post
        chunks = tuple((i, ctypes.string_at(address + i * 1024, 1024)) for i in changed)
        return Execution(record, inv, output, ctx.log, post, chunks)

    def close(self) -> None:
        if self._tree is not None:
            self._tree.close()
            self._tree = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_GENESIS_INVOCATION = Invocation(_INIT_EXPORT)


_NAME_BUFFERS: dict[str, tuple[ctypes.Array, int]] = {}
_EXTERN_FUNC = _wffi.WASMTIME_EXTERN_FUNC.value
_EXTERN_MEMORY = _wffi.WASMTIME_EXTERN_MEMORY.value
_EXTERN_GLOBAL = _wffi.WASMTIME_EXTERN_GLOBAL.value


def _export(store: wasmtime.Store, instance: wasmtime.Instance, name: str) -> wasmtime.Func | wasmtime.Memory | wasmtime.Global | None:
    """One function, memory or global export by name. Instance.exports() wraps every export of the
    module on each call, which for a trivial segment costs more than running it."""
    buf = _NAME_BUFFERS.get(name)
    if buf is None:
        raw = name.encode()
        buf = _NAME_BUFFERS[name] = (ctypes.create_string_buffer(raw, len(raw)), len(raw))
    item = _wffi.wasmtime_extern_t()
    if not _EXPORT_GET(store._context(), ctypes.byref(instance._instance), buf[0], buf[1], ctypes.byref(item)):
        return None
    if item.kind == _EXTERN_FUNC:
        return wasmtime.Func._from_raw(item.of.func)
    if item.kind == _EXTERN_MEMORY:
        return wasmtime.Memory._from_raw(item.of.memory)
    if item.kind == _EXTERN_GLOBAL:
        return wasmtime.Global._from_raw(item.of.global_)
    return None


def _take_host_exception() -> BaseException | None:
    exc = _wfunc.LAST_EXCEPTION
    _wfunc.LAST_EXCEPTION = None
    return exc


def _raise_host_failure(exc: BaseException | None) -> None:
    if exc is not None:
        raise InternalError(f"poe's WASI host failed: {type(exc).__name__}: {exc}") from exc


def _stop_outcome(stop: HostStop) -> tuple[Outcome, int]:
    if stop.kind == "exit":
        return Outcome.EXIT, stop.code
    if stop.kind == "out-of-fuel":
        return Outcome.OUT_OF_FUEL, 0
    return Outcome.OUTPUT_LIMIT, 0
