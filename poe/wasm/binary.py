"""Reading WebAssembly module binaries, and the memory-limit instrumentation poe applies.

Two things live here:

* :func:`parse` -- a small, read-only parser that lists what a core module imports, exports
  and defines (types, functions, memories, globals). It decodes section framing and the
  "header" sections fully; element and data segments and function bodies are only framed.

* :func:`instrument` -- rewrites a module before poe compiles it:

  - every ``memory.grow`` is replaced by a ``call`` to one injected *guard* function (appended
    after all existing functions, so no function index shifts) that performs the grow and, when
    the grow failed although the module's own declared maximum would have allowed it -- that
    is, the host's store limit refused it -- executes ``unreachable``. The executor recognises
    that trap by the innermost frame's function index (:attr:`Instrumented.grow_guard_index`)
    and reports a distinct, deterministic "memory-limit" outcome. A grow refused by the module's
    own maximum still returns -1 as plain WebAssembly requires;
  - memory 0 (defined or imported) is exported as ``__poe_memory`` so the host can always read
    its size and contents, even when the module does not export its memory.

  Everything else is copied byte for byte: custom sections (including ``name``) stay where they
  are, as do the data-count, start, element and data sections. Only the sizes of rewritten
  sections and bodies are re-encoded. (DWARF ``.debug_*`` sections, which address code by
  offset, therefore go stale where a body changed; execution does not use them.)

  A module that already exports memory 0 as ``__poe_memory`` keeps that export. Instrumenting
  an instrumented module again is harmless: the old guard's own grow is routed through the new
  guard, which is then the one that traps.

  For an *imported* memory 0 the guard knows only the maximum the import declares (or 65536
  pages); if the memory actually supplied has a lower maximum, a grow refused by that lower
  maximum is reported as the host's limit.

Function bodies are decoded by a table-driven walker over the raw bytes (no per-instruction
objects). It knows the immediates of the MVP and of the sign-extension, non-trapping
float-to-int, bulk-memory, reference-types, multi-value, tail-call, SIMD (including relaxed
SIMD), threads (atomics), exception-handling (legacy ``try``/``catch`` and ``try_table``),
function-references, GC and wide-arithmetic instruction sets.

Every malformed input raises :class:`poe.errors.ModuleError` with a message meant for a human;
no ``IndexError``/``ValueError``/``UnicodeDecodeError`` escapes for any input bytes. Function
numbers in messages are WebAssembly function indices (imports count first), the same numbers
the ``name`` section and wasmtime backtraces use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from poe.errors import ModuleError

__all__ = [
    "POE_MEMORY_EXPORT",
    "POE_GROW_FLAG_EXPORT",
    "POE_GLOBAL_EXPORT_PREFIX",
    "FuncType",
    "MemoryLimits",
    "TableType",
    "GlobalType",
    "GlobalInfo",
    "Import",
    "Export",
    "ModuleInfo",
    "Instrumented",
    "parse",
    "instrument",
    "state_hazards",
]

#: Export name under which :func:`instrument` makes memory 0 reachable. Reserved: a module that
#: exports this name for anything other than memory 0 is refused.
POE_MEMORY_EXPORT = "__poe_memory"
#: Export name of the global that the memory.grow guard sets when the host's limit refused.
POE_GROW_FLAG_EXPORT = "__poe_grow_refused"
#: Prefix of the exports :func:`instrument` adds for every mutable global the module defines
#: (``__poe_global_<global index>``), so stateful mode can read and restore globals the module
#: does not export itself. Reserved like the names above.
POE_GLOBAL_EXPORT_PREFIX = "__poe_global_"

_MAGIC = b"\x00asm"
_VERSION = b"\x01\x00\x00\x00"
_COMPONENT_VERSION = b"\x0d\x00\x01\x00"


# --------------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FuncType:
    """A function signature. Value types are named ``'i32'``, ``'i64'``, ``'f32'``, ``'f64'``,
    ``'v128'``, ``'funcref'``, ``'externref'`` (and, for GC / function-references modules,
    ``'anyref'``, ``'exnref'``, ``'(ref null 3)'``, ``'(ref func)'``, ...)."""

    params: tuple[str, ...]
    results: tuple[str, ...]


@dataclass(frozen=True)
class MemoryLimits:
    """A memory type. ``minimum``/``maximum`` are in pages (64 KiB unless ``page_size_log2``
    says otherwise, custom-page-sizes proposal); ``maximum`` is None when undeclared."""

    minimum: int
    maximum: int | None
    shared: bool = False
    memory64: bool = False
    page_size_log2: int = 16

    @property
    def effective_maximum(self) -> int:
        """The declared maximum, or the largest size the address space allows (65536 pages for
        a 32-bit memory with 64 KiB pages)."""
        if self.maximum is not None:
            return self.maximum
        return (1 << (64 if self.memory64 else 32)) >> self.page_size_log2


@dataclass(frozen=True)
class TableType:
    element: str
    minimum: int
    maximum: int | None
    table64: bool = False


@dataclass(frozen=True)
class GlobalType:
    valtype: str
    mutable: bool


@dataclass(frozen=True)
class GlobalInfo:
    """A global defined by the module. ``index`` is its index in the global index space
    (imported globals come first); ``init`` is the raw constant expression including its
    final ``end`` byte."""

    index: int
    valtype: str
    mutable: bool
    init: bytes


ImportDesc = Union[int, TableType, MemoryLimits, GlobalType]


@dataclass(frozen=True)
class Import:
    """An import. ``kind`` is ``'func'``, ``'table'``, ``'memory'``, ``'global'`` or ``'tag'``;
    ``desc`` is the type index for ``'func'`` and ``'tag'``, else a :class:`TableType`,
    :class:`MemoryLimits` or :class:`GlobalType`."""

    module: str
    name: str
    kind: str
    desc: ImportDesc


@dataclass(frozen=True)
class Export:
    """An export; ``kind`` as for :class:`Import`, ``index`` in that kind's index space."""

    name: str
    kind: str
    index: int


@dataclass(frozen=True)
class ModuleInfo:
    """What :func:`parse` learns about a module.

    ``func_types`` is indexed by type index; GC struct/array types appear as ``None``.
    ``func_type_indices`` holds the type index of each *defined* function.
    ``memories`` are the defined memories; ``imported_memory`` is the first imported memory
    (memory 0 if any memory is imported). ``globals`` are the defined globals.
    ``custom_sections`` lists custom section names in file order.
    """

    imports: tuple[Import, ...]
    exports: tuple[Export, ...]
    func_types: tuple[FuncType | None, ...]
    imported_func_count: int
    defined_func_count: int
    func_type_indices: tuple[int, ...]
    memories: tuple[MemoryLimits, ...]
    imported_memory: MemoryLimits | None
    imported_memory_count: int
    globals: tuple[GlobalInfo, ...]
    imported_global_count: int
    tables: tuple[TableType, ...]
    start: int | None
    custom_sections: tuple[str, ...]

    @property
    def func_count(self) -> int:
        return self.imported_func_count + self.defined_func_count

    @property
    def memory0(self) -> MemoryLimits | None:
        """The type of memory 0 (imported or defined), or None if the module has no memory."""
        if self.imported_memory is not None:
            return self.imported_memory
        return self.memories[0] if self.memories else None

    def export(self, name: str) -> Export | None:
        for e in self.exports:
            if e.name == name:
                return e
        return None

    def func_type(self, func_index: int) -> FuncType | None:
        """The signature of function ``func_index`` (imports first); None if out of range."""
        if func_index < 0:
            return None
        if func_index < self.imported_func_count:
            funcs = [i for i in self.imports if i.kind == "func"]
            tidx = funcs[func_index].desc
        elif func_index < self.func_count:
            tidx = self.func_type_indices[func_index - self.imported_func_count]
        else:
            return None
        assert isinstance(tidx, int)
        return self.func_types[tidx] if tidx < len(self.func_types) else None


@dataclass(frozen=True)
class Instrumented:
    """The result of :func:`instrument`.

    ``wasm`` -- the instrumented module (the input bytes themselves if nothing had to change);
    ``grow_guard_index`` -- function index of the injected guard, None if the module has no
    ``memory.grow``; ``memory_export`` -- export name under which memory 0 is reachable
    (``"__poe_memory"``), None if the module has no memory; ``memory_imported`` -- True if
    memory 0 is imported (owned and counted by another module); ``grow_flag_export`` -- name of
    the exported mutable i32 global the guard sets to 1 just before it traps (None without a
    guard), so the executor can tell which instance hit the limit even when linked modules'
    function indices coincide.
    """

    wasm: bytes
    grow_guard_index: int | None
    memory_export: str | None
    memory_imported: bool
    grow_flag_export: str | None = None
    global_exports: tuple[tuple[str, str], ...] = ()  # (export name, value type), in index order


# --------------------------------------------------------------------------------------------
# Low-level reading
# --------------------------------------------------------------------------------------------


class _Eof(Exception):
    """Internal: a read ran past the end of the current region."""


class _Bad(Exception):
    """Internal: malformed encoding at ``offset``."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Reader:
    __slots__ = ("b", "pos", "end")

    def __init__(self, b: bytes, pos: int, end: int) -> None:
        self.b = b
        self.pos = pos
        self.end = end

    def byte(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise _Eof
        self.pos = pos + 1
        return self.b[pos]

    def peek(self) -> int:
        if self.pos >= self.end:
            raise _Eof
        return self.b[self.pos]

    def uleb(self, bits: int) -> int:
        """An unsigned LEB128 integer of at most ``bits`` bits (any valid length)."""
        b, pos, end = self.b, self.pos, self.end
        start = pos
        result = 0
        shift = 0
        maxlen = (bits + 6) // 7
        while True:
            if pos >= end:
                raise _Eof
            c = b[pos]
            pos += 1
            result |= (c & 0x7F) << shift
            if not c & 0x80:
                break
            shift += 7
            if pos - start >= maxlen:
                raise _Bad("malformed LEB128 integer (too many bytes)", start)
        if result >> bits:
            raise _Bad(f"LEB128 integer too large for {bits} bits", start)
        self.pos = pos
        return result

    def u32(self) -> int:
        return self.uleb(32)

    def sleb(self, bits: int) -> int:
        """A signed LEB128 integer of at most ``bits`` bits."""
        b, pos, end = self.b, self.pos, self.end
        start = pos
        result = 0
        shift = 0
        maxlen = (bits + 6) // 7
        while True:
            if pos >= end:
                raise _Eof
            c = b[pos]
            pos += 1
            result |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                break
            if pos - start >= maxlen:
                raise _Bad("malformed LEB128 integer (too many bytes)", start)
        if c & 0x40:
            result -= 1 << shift
        if not -(1 << (bits - 1)) <= result < (1 << (bits - 1)):
            raise _Bad(f"LEB128 integer too large for {bits} bits", start)
        self.pos = pos
        return result

    def take(self, n: int) -> bytes:
        pos = self.pos
        if n > self.end - pos:
            raise _Eof
        self.pos = pos + n
        return self.b[pos : pos + n]

    def name(self) -> str:
        start = self.pos
        raw = self.take(self.u32())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad("name is not valid UTF-8", start) from None


def _leb(value: int) -> bytes:
    """Minimal unsigned LEB128 encoding."""
    out = bytearray()
    while True:
        c = value & 0x7F
        value >>= 7
        if value:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def _sleb(value: int) -> bytes:
    """Minimal signed LEB128 encoding."""
    out = bytearray()
    while True:
        c = value & 0x7F
        value >>= 7
        if (value == 0 and not c & 0x40) or (value == -1 and c & 0x40):
            out.append(c)
            return bytes(out)
        out.append(c | 0x80)


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------

_VALTYPE_NAMES = {
    0x7F: "i32",
    0x7E: "i64",
    0x7D: "f32",
    0x7C: "f64",
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
    0x6E: "anyref",
    0x6D: "eqref",
    0x6C: "i31ref",
    0x6B: "structref",
    0x6A: "arrayref",
    0x71: "nullref",
    0x72: "nullexternref",
    0x73: "nullfuncref",
    0x69: "exnref",
    0x74: "nullexnref",
}

_HEAPTYPE_NAMES = {
    0x70: "func",
    0x6F: "extern",
    0x6E: "any",
    0x6D: "eq",
    0x6C: "i31",
    0x6B: "struct",
    0x6A: "array",
    0x71: "none",
    0x72: "noextern",
    0x73: "nofunc",
    0x69: "exn",
    0x74: "noexn",
}


def _heaptype(r: _Reader) -> str:
    start = r.pos
    c = r.peek()
    if c in _HEAPTYPE_NAMES:
        r.pos += 1
        return _HEAPTYPE_NAMES[c]
    v = r.sleb(33)
    if v < 0:
        raise _Bad(f"unknown heap type 0x{c:02x}", start)
    return str(v)


def _valtype(r: _Reader) -> str:
    start = r.pos
    c = r.byte()
    name = _VALTYPE_NAMES.get(c)
    if name is not None:
        return name
    if c == 0x63:
        return f"(ref null {_heaptype(r)})"
    if c == 0x64:
        return f"(ref {_heaptype(r)})"
    raise _Bad(f"unknown value type 0x{c:02x}", start)


def _valtypes(r: _Reader) -> tuple[str, ...]:
    n = r.u32()
    return tuple(_valtype(r) for _ in range(n))


def _storagetype_and_mut(r: _Reader) -> None:
    c = r.peek()
    if c in (0x78, 0x77):  # i8, i16 packed storage types
        r.pos += 1
    else:
        _valtype(r)
    _mutability(r)


def _mutability(r: _Reader) -> bool:
    start = r.pos
    m = r.byte()
    if m > 1:
        raise _Bad(f"bad mutability flag 0x{m:02x}", start)
    return m == 1


def _comptype(r: _Reader, form: int, start: int) -> FuncType | None:
    if form == 0x60:
        params = _valtypes(r)
        results = _valtypes(r)
        return FuncType(params, results)
    if form == 0x5F:  # struct
        for _ in range(r.u32()):
            _storagetype_and_mut(r)
        return None
    if form == 0x5E:  # array
        _storagetype_and_mut(r)
        return None
    raise _Bad(f"unknown type form 0x{form:02x}", start)


def _subtype(r: _Reader, form: int, start: int) -> FuncType | None:
    if form in (0x50, 0x4F):  # sub / sub final
        for _ in range(r.u32()):
            r.u32()
        start = r.pos
        form = r.byte()
    return _comptype(r, form, start)


def _limits(r: _Reader, what: str, allow_shared: bool) -> tuple[int, int | None, int]:
    start = r.pos
    flags = r.byte()
    allowed = 0x0F if allow_shared else 0x05
    if flags & ~allowed:
        raise _Bad(f"bad {what} limits flags 0x{flags:02x}", start)
    bits = 64 if flags & 0x04 else 32
    minimum = r.uleb(bits)
    maximum = r.uleb(bits) if flags & 0x01 else None
    return minimum, maximum, flags


def _memtype(r: _Reader) -> MemoryLimits:
    minimum, maximum, flags = _limits(r, "memory", True)
    page_log2 = 16
    if flags & 0x08:
        start = r.pos
        page_log2 = r.u32()
        if page_log2 > 16:
            raise _Bad(f"bad memory page size 2**{page_log2}", start)
    return MemoryLimits(minimum, maximum, bool(flags & 0x02), bool(flags & 0x04), page_log2)


def _tabletype(r: _Reader) -> TableType:
    element = _valtype(r)
    minimum, maximum, flags = _limits(r, "table", False)
    return TableType(element, minimum, maximum, bool(flags & 0x04))


# --------------------------------------------------------------------------------------------
# Instruction walker
# --------------------------------------------------------------------------------------------

# Kinds of immediates following a one-byte opcode.
_K_UNKNOWN = -1
_K_NONE = 0
_K_LEB = 1  # one LEB128 (index, label, integer constant, s33 heap type)
_K_MEMARG = 2
_K_BLOCK = 3  # block type
_K_END = 4  # `end` -- only special when skipping a constant expression
_K_LEB2 = 5
_K_GROW = 6
_K_PREFIX = 7  # 0xFB / 0xFC / 0xFD / 0xFE
_K_BRTABLE = 8
_K_F32 = 9
_K_F64 = 10
_K_SELECT_T = 11
_K_TRY_TABLE = 12
_K_TABLE_SET = 13  # only in _KINDS_STATE: table.set, reported as a state hazard


def _build_kinds() -> list[int]:
    k = [_K_UNKNOWN] * 256

    def put(kind: int, *ops: int | range) -> None:
        for op in ops:
            for o in op if isinstance(op, range) else (op,):
                k[o] = kind

    put(_K_NONE, 0x00, 0x01, 0x05, 0x0A, 0x0F, 0x19, 0x1A, 0x1B)
    # 0x00 unreachable, 0x01 nop, 0x05 else, 0x0A throw_ref, 0x0F return, 0x19 catch_all,
    # 0x1A drop, 0x1B select
    put(_K_BLOCK, 0x02, 0x03, 0x04, 0x06)  # block, loop, if, try (legacy EH)
    put(_K_END, 0x0B)
    put(_K_LEB, 0x07, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x12, 0x14, 0x15, 0x18)
    # catch tag, throw tag, rethrow label, br, br_if, call, return_call, call_ref,
    # return_call_ref, delegate label
    put(_K_LEB2, 0x11, 0x13)  # call_indirect / return_call_indirect: type, table
    put(_K_BRTABLE, 0x0E)
    put(_K_SELECT_T, 0x1C)
    put(_K_TRY_TABLE, 0x1F)
    put(_K_LEB, range(0x20, 0x27))  # local.get/set/tee, global.get/set, table.get/set
    put(_K_MEMARG, range(0x28, 0x3F))  # loads and stores
    put(_K_LEB, 0x3F)  # memory.size memidx
    put(_K_GROW, 0x40)
    put(_K_LEB, 0x41, 0x42)  # i32.const, i64.const
    put(_K_F32, 0x43)
    put(_K_F64, 0x44)
    put(_K_NONE, range(0x45, 0xC5))  # numeric, incl. sign extension 0xC0-0xC4
    put(_K_LEB, 0xD0, 0xD2, 0xD5, 0xD6)  # ref.null ht, ref.func, br_on_null, br_on_non_null
    put(_K_NONE, 0xD1, 0xD3, 0xD4)  # ref.is_null, ref.eq, ref.as_non_null
    put(_K_PREFIX, 0xFB, 0xFC, 0xFD, 0xFE)
    return k


_KINDS_CONST = _build_kinds()
_KINDS_BODY = list(_KINDS_CONST)
_KINDS_BODY[0x0B] = _K_NONE
_KINDS_STATE = list(_KINDS_BODY)
_KINDS_STATE[0x26] = _K_TABLE_SET

# 0xFC sub-opcodes that change state a stateful snapshot does not capture (tables, dropped
# segments): data.drop, table.init, elem.drop, table.copy, table.grow, table.fill.
_STATE_HAZARDS_FC = {9: "data.drop", 12: "table.init", 13: "elem.drop", 14: "table.copy", 15: "table.grow", 17: "table.fill"}

# Kinds of immediates after a prefix opcode's LEB128 sub-opcode.
_S_NONE = 0
_S_LEB = 1
_S_LEB2 = 2
_S_MEMARG = 3
_S_MEMARG_LANE = 4
_S_BYTES16 = 5
_S_LANE = 6
_S_ZERO_BYTE = 7
_S_BR_ON_CAST = 8


def _sub_table(spec: dict[int | range, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for key, kind in spec.items():
        for sub in key if isinstance(key, range) else (key,):
            out[sub] = kind
    return out


_SUB_FC = _sub_table(
    {
        range(0, 8): _S_NONE,  # saturating float-to-int
        8: _S_LEB2,  # memory.init data mem
        9: _S_LEB,  # data.drop
        10: _S_LEB2,  # memory.copy mem mem
        11: _S_LEB,  # memory.fill mem
        12: _S_LEB2,  # table.init elem table
        13: _S_LEB,  # elem.drop
        14: _S_LEB2,  # table.copy
        15: _S_LEB,  # table.grow
        16: _S_LEB,  # table.size
        17: _S_LEB,  # table.fill
        range(19, 23): _S_NONE,  # wide arithmetic: i64.add128, sub128, mul_wide_s/u
    }
)

_SIMD_NONE = [
    range(0x0E, 0x15),  # swizzle, splats
    range(0x23, 0x54),  # comparisons, bitwise, any_true
    range(0x5E, 0x80),  # demote/promote, i8x16 ops, f32x4/f64x2 rounding, extadd
    range(0x80, 0x9A),
    range(0x9B, 0xA2),
    range(0xA3, 0xA5),
    range(0xA7, 0xAF),
    (0xB1,),
    range(0xB5, 0xBB),
    range(0xBC, 0xC2),
    range(0xC3, 0xC5),
    range(0xC7, 0xCF),
    (0xD1,),
    range(0xD5, 0xE2),
    range(0xE3, 0xEE),
    range(0xEF, 0x100),
    range(0x100, 0x114),  # relaxed SIMD
]


def _build_sub_fd() -> dict[int, int]:
    out: dict[int, int] = {}
    for r in _SIMD_NONE:
        for sub in r:
            out[sub] = _S_NONE
    for sub in range(0x00, 0x0C):  # v128.load*, v128.store
        out[sub] = _S_MEMARG
    out[0x0C] = _S_BYTES16  # v128.const
    out[0x0D] = _S_BYTES16  # i8x16.shuffle
    for sub in range(0x15, 0x23):  # extract_lane / replace_lane
        out[sub] = _S_LANE
    for sub in range(0x54, 0x5C):  # v128.load*_lane / store*_lane
        out[sub] = _S_MEMARG_LANE
    out[0x5C] = _S_MEMARG  # v128.load32_zero
    out[0x5D] = _S_MEMARG  # v128.load64_zero
    return out


_SUB_FD = _build_sub_fd()

_SUB_FE = _sub_table(
    {
        range(0x00, 0x03): _S_MEMARG,  # memory.atomic.notify / wait32 / wait64
        0x03: _S_ZERO_BYTE,  # atomic.fence
        range(0x10, 0x4F): _S_MEMARG,  # atomic loads, stores, rmw, cmpxchg
    }
)

_SUB_FB = _sub_table(
    {
        range(0, 2): _S_LEB,  # struct.new, struct.new_default
        range(2, 6): _S_LEB2,  # struct.get/_s/_u, struct.set
        range(6, 8): _S_LEB,  # array.new, array.new_default
        range(8, 11): _S_LEB2,  # array.new_fixed, array.new_data, array.new_elem
        range(11, 15): _S_LEB,  # array.get/_s/_u, array.set
        15: _S_NONE,  # array.len
        16: _S_LEB,  # array.fill
        range(17, 20): _S_LEB2,  # array.copy, array.init_data, array.init_elem
        range(20, 24): _S_LEB,  # ref.test, ref.cast (heap type)
        range(24, 26): _S_BR_ON_CAST,
        range(26, 31): _S_NONE,  # any.convert_extern, extern.convert_any, ref.i31, i31.get_*
    }
)

_SUBS = {0xFB: _SUB_FB, 0xFC: _SUB_FC, 0xFD: _SUB_FD, 0xFE: _SUB_FE}


def _read_u32_at(b: bytes, pos: int) -> tuple[int, int]:
    """Strict u32 LEB128 at ``pos`` (IndexError past the buffer end, caught by the caller)."""
    start = pos
    c = b[pos]
    pos += 1
    if c < 0x80:
        return c, pos
    result = c & 0x7F
    shift = 7
    while True:
        c = b[pos]
        pos += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            break
        shift += 7
        if shift >= 35:
            raise _Bad("malformed LEB128 integer (too many bytes)", start)
    if result > 0xFFFFFFFF:
        raise _Bad("LEB128 integer too large for 32 bits", start)
    return result, pos


def _walk(
    b: bytes,
    pos: int,
    end: int,
    kinds: list[int],
    grows: list[tuple[int, int, int]] | None,
    hazards: list[tuple[int, str]] | None = None,
) -> int:
    """Decode instructions from ``pos``.

    With ``kinds=_KINDS_BODY`` decodes up to ``end`` and returns the position reached (the
    caller checks it equals ``end``); ``memory.grow`` instructions are appended to ``grows`` as
    ``(start, stop, memory_index)``. With ``kinds=_KINDS_STATE`` instructions that change tables
    or drop segments are appended to ``hazards`` as ``(offset, name)``.
    With ``kinds=_KINDS_CONST`` stops after the first
    ``end`` opcode and returns the position after it.

    Immediates that cannot affect where the next instruction starts are skipped, not checked.
    Raises _Bad for unknown opcodes and _Eof when the code runs past ``end``.
    """
    try:
        while pos < end:
            op = b[pos]
            pos += 1
            k = kinds[op]
            if k == 0:  # _K_NONE
                continue
            if k == 1:  # _K_LEB
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                continue
            if k == 2:  # _K_MEMARG: align (bit 6: memory index follows), offset
                if b[pos] & 0x40:
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                continue
            if k == 3:  # _K_BLOCK: 0x40, a value type, or an s33 type index
                c = b[pos]
                if c == 0x63 or c == 0x64:
                    pos += 1
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                continue
            if k == 4:  # _K_END in a constant expression
                return pos
            if k == 5:  # _K_LEB2
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                continue
            if k == 6:  # _K_GROW
                memidx, after = _read_u32_at(b, pos)
                if grows is not None:
                    grows.append((pos - 1, after, memidx))
                pos = after
                continue
            if k == 7:  # _K_PREFIX
                sub, pos = _read_u32_at(b, pos)
                if hazards is not None and op == 0xFC and sub in _STATE_HAZARDS_FC:
                    hazards.append((pos - 1, _STATE_HAZARDS_FC[sub]))
                s = _SUBS[op].get(sub)
                if s is None:
                    raise _Bad(f"unknown opcode 0x{op:02x} 0x{sub:02x}", pos - 1)
                if s == 0:  # _S_NONE
                    continue
                if s == 3 or s == 4:  # _S_MEMARG, _S_MEMARG_LANE
                    if b[pos] & 0x40:
                        while b[pos] & 0x80:
                            pos += 1
                        pos += 1
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                    if s == 4:
                        pos += 1
                    continue
                if s == 1:  # _S_LEB
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                    continue
                if s == 2:  # _S_LEB2
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                    continue
                if s == 5:  # _S_BYTES16
                    pos += 16
                    continue
                if s == 6 or s == 7:  # _S_LANE, _S_ZERO_BYTE
                    pos += 1
                    continue
                # _S_BR_ON_CAST: flags byte, label, two heap types
                pos += 1
                for _ in range(3):
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                continue
            if k == 8:  # _K_BRTABLE: vec(label) then the default label
                n, pos = _read_u32_at(b, pos)
                for _ in range(n + 1):
                    while b[pos] & 0x80:
                        pos += 1
                    pos += 1
                    if pos > end:
                        raise _Eof
                continue
            if k == 9:  # _K_F32
                pos += 4
                continue
            if k == 10:  # _K_F64
                pos += 8
                continue
            if k == 11:  # _K_SELECT_T: vec(valtype)
                n, pos = _read_u32_at(b, pos)
                for _ in range(n):
                    c = b[pos]
                    pos += 1
                    if c == 0x63 or c == 0x64:
                        while b[pos] & 0x80:
                            pos += 1
                        pos += 1
                    if pos > end:
                        raise _Eof
                continue
            if k == 13:  # _K_TABLE_SET
                if hazards is not None:
                    hazards.append((pos - 1, "table.set"))
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                continue
            if k == 12:  # _K_TRY_TABLE: block type, vec(catch clause)
                c = b[pos]
                if c == 0x63 or c == 0x64:
                    pos += 1
                while b[pos] & 0x80:
                    pos += 1
                pos += 1
                n, pos = _read_u32_at(b, pos)
                for _ in range(n):
                    clause = b[pos]
                    pos += 1
                    if clause > 3:
                        raise _Bad(f"unknown try_table catch kind 0x{clause:02x}", pos - 1)
                    if clause <= 1:  # catch / catch_ref: tag index, label
                        while b[pos] & 0x80:
                            pos += 1
                        pos += 1
                    while b[pos] & 0x80:  # label
                        pos += 1
                    pos += 1
                    if pos > end:
                        raise _Eof
                continue
            raise _Bad(f"unknown opcode 0x{op:02x}", pos - 1)
    except IndexError:
        raise _Eof from None
    if kinds is _KINDS_CONST:
        raise _Eof  # no `end` before the region ended
    return pos


def _skip_const_expr(r: _Reader) -> bytes:
    start = r.pos
    r.pos = _walk(r.b, start, r.end, _KINDS_CONST, None)
    if r.pos > r.end:
        raise _Eof
    return r.b[start : r.pos]


def _skip_locals(b: bytes, pos: int, end: int) -> int:
    r = _Reader(b, pos, end)
    for _ in range(r.u32()):
        r.u32()
        _valtype(r)
    return r.pos


# --------------------------------------------------------------------------------------------
# Module parsing
# --------------------------------------------------------------------------------------------

_SECTION_NAMES = {
    0: "custom",
    1: "type",
    2: "import",
    3: "function",
    4: "table",
    5: "memory",
    6: "global",
    7: "export",
    8: "start",
    9: "element",
    10: "code",
    11: "data",
    12: "data count",
    13: "tag",
}

# Required order of the non-custom sections (the tag section sits between memory and global,
# the data-count section between element and code).
_SECTION_RANK = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

_EXTERN_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}
_EXTERN_CODES = {v: k for k, v in _EXTERN_KINDS.items()}


@dataclass
class _Section:
    id: int
    start: int  # offset of the id byte
    payload: int  # offset of the first payload byte
    end: int  # offset after the payload
    body: int = 0  # offset after the leading vector count (for vector sections)
    count: int = 0  # that vector count


@dataclass
class _Layout:
    sections: list[_Section]
    type_count: int  # number of type indices (rec groups expanded)
    plain_func_types: dict[FuncType, int]  # standalone `func` types -> first type index
    bodies: list[tuple[int, int, int]]  # (entry start, body start, body end) per function


def _fail(message: str, offset: int | None = None) -> ModuleError:
    if offset is None:
        return ModuleError(message)
    return ModuleError(message, offset=offset)


def _as_bytes(wasm: object) -> bytes:
    if isinstance(wasm, bytes):
        return wasm
    if isinstance(wasm, (bytearray, memoryview)):
        return bytes(wasm)
    raise TypeError(f"expected the module's bytes, got {type(wasm).__name__}")


def _check_header(b: bytes) -> None:
    n = len(b)
    if n == 0:
        raise _fail("not a WebAssembly module (the input is empty)")
    if b[:4] != _MAGIC[: min(n, 4)]:
        raise _fail("not a WebAssembly module (bad magic bytes)", 0)
    if n < 8:
        raise _fail(f"truncated WebAssembly module: only {n} bytes, shorter than the 8-byte header")
    version = b[4:8]
    if version == _COMPONENT_VERSION:
        raise _fail("this is a WebAssembly component, not a core module; poe runs core modules", 4)
    if version != _VERSION:
        raise _fail(
            f"unsupported WebAssembly binary version {int.from_bytes(version, 'little')} "
            "(expected version 1)",
            4,
        )


def _truncated_code_message(b: bytes, payload: int, first_func: int) -> str:
    """Describe where a code section cut off by the end of the file ends."""
    r = _Reader(b, payload, len(b))
    where = "inside its function count"
    try:
        count = r.u32()
        for i in range(count):
            where = f"inside function {first_func + i}"
            size = r.u32()
            if size > r.end - r.pos:
                break
            r.pos += size
    except (_Eof, _Bad):
        pass
    return f"truncated WebAssembly module: code section ends {where}"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _parse(b: bytes) -> tuple[_Layout, ModuleInfo]:
    _check_header(b)
    n = len(b)
    sections: list[_Section] = []
    last_rank = 0
    last_id = -1

    imports: list[Import] = []
    exports: list[Export] = []
    types: list[FuncType | None] = []
    plain: dict[FuncType, int] = {}
    func_type_indices: list[int] = []
    memories: list[MemoryLimits] = []
    tables: list[TableType] = []
    globals_: list[GlobalInfo] = []
    customs: list[str] = []
    bodies: list[tuple[int, int, int]] = []
    start_func: int | None = None
    imported_funcs = imported_globals = imported_mems = 0
    imported_memory: MemoryLimits | None = None
    func_count_declared: int | None = None
    code_count: int | None = None

    pos = 8
    while pos < n:
        sid = b[pos]
        hdr = pos
        r = _Reader(b, pos + 1, n)
        try:
            size = r.u32()
        except _Eof:
            raise _fail(f"truncated WebAssembly module: section header at offset {hdr} is cut off", hdr) from None
        except _Bad as e:
            raise _fail(f"malformed section header at offset {hdr}: {e.message}", e.offset) from None
        if sid not in _SECTION_NAMES:
            raise _fail(f"malformed WebAssembly module: unknown section id {sid} at offset {hdr}", hdr)
        sname = _SECTION_NAMES[sid]
        payload = r.pos
        if size > n - payload:
            if sid == 10:
                raise _fail(_truncated_code_message(b, payload, imported_funcs), hdr)
            raise _fail(
                f"truncated WebAssembly module: the {sname} section at offset {hdr} declares "
                f"{size} bytes but only {n - payload} remain",
                hdr,
            )
        end = payload + size
        if sid != 0:
            rank = _SECTION_RANK[sid]
            if rank <= last_rank:
                if sid == last_id:
                    raise _fail(f"malformed WebAssembly module: duplicate {sname} section at offset {hdr}", hdr)
                raise _fail(
                    f"malformed WebAssembly module: the {sname} section at offset {hdr} is out of "
                    f"order (it must come before the {_SECTION_NAMES[last_id]} section)",
                    hdr,
                )
            last_rank = rank
            last_id = sid
        sec = _Section(sid, hdr, payload, end)
        sections.append(sec)
        r = _Reader(b, payload, end)
        item = -1
        try:
            if sid == 0:
                customs.append(r.name())
                r.pos = end
            elif sid in (8, 12):
                value = r.u32()
                if sid == 8:
                    start_func = value
            elif sid in (9, 11):
                sec.count = r.u32()
                sec.body = r.pos
                r.pos = end  # element and data segments are not decoded
            else:
                count = r.u32()
                sec.count = count
                sec.body = r.pos
                if sid == 1:
                    for item in range(count):
                        ent_start = r.pos
                        form = r.byte()
                        if form == 0x4E:  # rec group
                            for _ in range(r.u32()):
                                sub_start = r.pos
                                types.append(_subtype(r, r.byte(), sub_start))
                        else:
                            t = _subtype(r, form, ent_start)
                            if form == 0x60 and t is not None and t not in plain:
                                plain[t] = len(types)
                            types.append(t)
                elif sid == 2:
                    for item in range(count):
                        module = r.name()
                        field = r.name()
                        kstart = r.pos
                        kind = r.byte()
                        desc: ImportDesc
                        if kind == 0x00:
                            desc = r.u32()
                            imported_funcs += 1
                        elif kind == 0x01:
                            desc = _tabletype(r)
                        elif kind == 0x02:
                            desc = _memtype(r)
                            if imported_memory is None:
                                imported_memory = desc
                            imported_mems += 1
                        elif kind == 0x03:
                            desc = GlobalType(_valtype(r), _mutability(r))
                            imported_globals += 1
                        elif kind == 0x04:
                            _tag_attribute(r)
                            desc = r.u32()
                        else:
                            raise _Bad(f"unknown import kind 0x{kind:02x}", kstart)
                        imports.append(Import(module, field, _EXTERN_KINDS[kind], desc))
                elif sid == 3:
                    func_count_declared = count
                    for item in range(count):
                        func_type_indices.append(r.u32())
                elif sid == 4:
                    for item in range(count):
                        if r.peek() == 0x40:  # table with an initialiser expression
                            r.pos += 1
                            zstart = r.pos
                            if r.byte() != 0x00:
                                raise _Bad("bad table encoding (expected 0x00 after 0x40)", zstart)
                            tables.append(_tabletype(r))
                            _skip_const_expr(r)
                        else:
                            tables.append(_tabletype(r))
                elif sid == 5:
                    for item in range(count):
                        memories.append(_memtype(r))
                elif sid == 13:
                    for item in range(count):
                        _tag_attribute(r)
                        r.u32()
                elif sid == 6:
                    for item in range(count):
                        vt = _valtype(r)
                        mut = _mutability(r)
                        init = _skip_const_expr(r)
                        globals_.append(GlobalInfo(imported_globals + item, vt, mut, init))
                elif sid == 7:
                    for item in range(count):
                        name = r.name()
                        kstart = r.pos
                        kind = r.byte()
                        if kind not in _EXTERN_KINDS:
                            raise _Bad(f"unknown export kind 0x{kind:02x}", kstart)
                        exports.append(Export(name, _EXTERN_KINDS[kind], r.u32()))
                elif sid == 10:
                    code_count = count
                    for item in range(count):
                        entry = r.pos
                        bsize = r.u32()
                        if bsize > end - r.pos:
                            raise _fail(
                                f"malformed WebAssembly module: code section ends inside function "
                                f"{imported_funcs + item} (its body declares {bsize} bytes, "
                                f"{end - r.pos} remain in the section)",
                                entry,
                            )
                        bodies.append((entry, r.pos, r.pos + bsize))
                        r.pos += bsize
            if r.pos != end:
                raise _fail(
                    f"malformed {sname} section at offset {hdr}: {end - r.pos} unexpected bytes "
                    "after its last entry",
                    r.pos,
                )
        except _Eof:
            where = f" in entry {item}" if item >= 0 else ""
            raise _fail(
                f"malformed {sname} section at offset {hdr}: its contents{where} run past the "
                f"end of the section ({size} bytes)",
                hdr,
            ) from None
        except _Bad as e:
            where = f" entry {item}" if item >= 0 else ""
            raise _fail(f"malformed {sname} section{where}: {e.message} at offset {e.offset}", e.offset) from None
        pos = end

    declared = func_count_declared or 0
    if declared != (code_count or 0):
        raise _fail(
            f"malformed WebAssembly module: the function section declares "
            f"{_plural(declared, 'function', 'functions')} but the code section has "
            f"{_plural(code_count or 0, 'body', 'bodies')}"
        )
    ntypes = len(types)
    for i, t in enumerate(func_type_indices):
        if t >= ntypes:
            raise _fail(
                f"malformed WebAssembly module: function {imported_funcs + i} uses type {t}, "
                f"but only {ntypes} types are defined"
            )

    info = ModuleInfo(
        imports=tuple(imports),
        exports=tuple(exports),
        func_types=tuple(types),
        imported_func_count=imported_funcs,
        defined_func_count=declared,
        func_type_indices=tuple(func_type_indices),
        memories=tuple(memories),
        imported_memory=imported_memory,
        imported_memory_count=imported_mems,
        globals=tuple(globals_),
        imported_global_count=imported_globals,
        tables=tuple(tables),
        start=start_func,
        custom_sections=tuple(customs),
    )
    return _Layout(sections, ntypes, plain, bodies), info


def _tag_attribute(r: _Reader) -> None:
    start = r.pos
    if r.byte() != 0x00:
        raise _Bad("bad tag attribute (expected 0x00)", start)


def _guarded(fn, wasm):  # type: ignore[no-untyped-def]
    """Run ``fn(bytes)`` so that nothing but ModuleError escapes for malformed input."""
    b = _as_bytes(wasm)
    try:
        return fn(b)
    except ModuleError:
        raise
    except (_Eof, _Bad, IndexError, ValueError, OverflowError, KeyError) as e:  # pragma: no cover
        # Safety net: every path above reports its own precise error; this must not happen.
        raise ModuleError(f"malformed WebAssembly module (internal decoder error: {e!r})") from None


def parse(wasm: bytes) -> ModuleInfo:
    """Parse a core WebAssembly module's header sections. Raises ModuleError if malformed."""
    return _guarded(lambda b: _parse(b)[1], wasm)


# --------------------------------------------------------------------------------------------
# Instrumentation
# --------------------------------------------------------------------------------------------


def _scan_body(b: bytes, entry: int, start: int, end: int, func_index: int) -> list[tuple[int, int, int]]:
    grows: list[tuple[int, int, int]] = []
    try:
        pos = _skip_locals(b, start, end)
        pos = _walk(b, pos, end, _KINDS_BODY, grows)
    except _Eof:
        raise _fail(
            f"malformed WebAssembly module: the code of function {func_index} runs past the end "
            f"of its body (body at offset {start}, {end - start} bytes)",
            entry,
        ) from None
    except _Bad as e:
        raise _fail(
            f"malformed WebAssembly module: {e.message} in function {func_index} at offset {e.offset}",
            e.offset,
        ) from None
    if pos != end:
        raise _fail(
            f"malformed WebAssembly module: the code of function {func_index} runs past the end "
            f"of its body (body at offset {start}, {end - start} bytes)",
            entry,
        )
    return grows


def _guard_body(mem: MemoryLimits, flag_global: int) -> tuple[FuncType, bytes]:
    """The guard function: type and body (locals + code), for memory 0 of type ``mem``."""
    limit = mem.effective_maximum
    raise_flag = b"\x41\x01\x24" + _leb(flag_global)  # i32.const 1, global.set <flag>
    if not mem.memory64:
        code = bytes(
            [
                0x01, 0x01, 0x7F,  # locals: 1 x i32 (the grow result)
                0x20, 0x00,  # local.get 0 (delta)
                0x40, 0x00,  # memory.grow 0
                0x22, 0x01,  # local.tee 1
                0x41, 0x7F,  # i32.const -1
                0x47,  # i32.ne
                0x04, 0x40,  # if
                0x20, 0x01, 0x0F,  # local.get 1, return
                0x0B,  # end
                0x3F, 0x00,  # memory.size 0
                0xAD,  # i64.extend_i32_u
                0x20, 0x00,  # local.get 0
                0xAD,  # i64.extend_i32_u
                0x7C,  # i64.add
                0x42,  # i64.const <limit>
            ]
        ) + _sleb(limit) + bytes(
            [
                0x56,  # i64.gt_u: beyond the module's own maximum
                0x04, 0x40,  # if
                0x41, 0x7F, 0x0F,  # i32.const -1, return
                0x0B,  # end
            ]
        ) + raise_flag + bytes(
            [
                0x00,  # unreachable: the host's limit refused the grow
                0x0B,  # end
            ]
        )
        return FuncType(("i32",), ("i32",)), code
    # 64-bit memory: `size + delta` could overflow u64, so compare `delta > limit - size`
    # (memory.size never exceeds the limit).
    limit = min(limit, (1 << 64) - 1)
    signed = limit - (1 << 64) if limit >= 1 << 63 else limit
    code = bytes(
        [
            0x01, 0x01, 0x7E,  # locals: 1 x i64
            0x20, 0x00,  # local.get 0
            0x40, 0x00,  # memory.grow 0
            0x22, 0x01,  # local.tee 1
            0x42, 0x7F,  # i64.const -1
            0x52,  # i64.ne
            0x04, 0x40,  # if
            0x20, 0x01, 0x0F,  # local.get 1, return
            0x0B,  # end
            0x20, 0x00,  # local.get 0
            0x42,  # i64.const <limit>
        ]
    ) + _sleb(signed) + bytes(
        [
            0x3F, 0x00,  # memory.size 0
            0x7D,  # i64.sub
            0x56,  # i64.gt_u
            0x04, 0x40,  # if
            0x42, 0x7F, 0x0F,  # i64.const -1, return
            0x0B,  # end
        ]
    ) + raise_flag + bytes(
        [
            0x00,  # unreachable
            0x0B,  # end
        ]
    )
    return FuncType(("i64",), ("i64",)), code


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + _leb(len(payload)) + payload


def _instrument(b: bytes) -> Instrumented:
    layout, info = _parse(b)
    mem0 = info.memory0
    memory_imported = info.imported_memory is not None
    add_export = _memory_export_needed(info)
    memory_export = POE_MEMORY_EXPORT if mem0 is not None else None
    first = info.imported_func_count
    rewrites = _grow_sites(b, layout, first)
    global_exports = _global_exports(info)
    if not rewrites and not add_export and not global_exports:
        return Instrumented(b, None, memory_export, memory_imported)
    if rewrites and mem0 is None:
        raise _fail(f"function {first + min(rewrites)} uses memory.grow, but the module has no memory")
    guard = _Guard(layout, info) if rewrites else None
    exports: list[bytes] = []
    if add_export:
        exports.append(_leb(len(POE_MEMORY_EXPORT)) + POE_MEMORY_EXPORT.encode() + b"\x02\x00")
    if guard is not None:
        exports.append(_leb(len(POE_GROW_FLAG_EXPORT)) + POE_GROW_FLAG_EXPORT.encode() + b"\x03" + _leb(guard.flag_global))
    for name, _ in global_exports:
        exports.append(_leb(len(name)) + name.encode() + b"\x03" + _leb(int(name[len(POE_GLOBAL_EXPORT_PREFIX):])))
    out = _emit(b, layout, rewrites, guard, exports)
    return Instrumented(out, guard.index if guard else None, memory_export, memory_imported,
                        POE_GROW_FLAG_EXPORT if guard else None, global_exports)


def _memory_export_needed(info: Any) -> bool:
    """Whether memory 0 needs poe's export; a module using that name for something else is refused."""
    existing = info.export(POE_MEMORY_EXPORT)
    if existing is not None and (info.memory0 is None or existing.kind != "memory" or existing.index != 0):
        raise _fail(
            f"the module exports {POE_MEMORY_EXPORT!r} as {existing.kind} {existing.index}; "
            "that export name is reserved by poe"
        )
    return existing is None and info.memory0 is not None


def _global_exports(info: Any) -> tuple[tuple[str, str], ...]:
    """The export each mutable global gets; a module already using poe's names is refused."""
    if existing_flag := info.export(POE_GROW_FLAG_EXPORT):
        raise _fail(f"the module exports {POE_GROW_FLAG_EXPORT!r} ({existing_flag.kind}); that export name is reserved by poe")
    for e in info.exports:
        if e.name.startswith(POE_GLOBAL_EXPORT_PREFIX):
            raise _fail(f"the module exports {e.name!r} ({e.kind}); export names starting with {POE_GLOBAL_EXPORT_PREFIX!r} are reserved by poe")
    return tuple((f"{POE_GLOBAL_EXPORT_PREFIX}{g.index}", g.valtype) for g in info.globals if g.mutable)


def _grow_sites(b: bytes, layout: Any, first: int) -> dict[int, list[tuple[int, int, int]]]:
    """Body index -> the memory.grow instructions in it, as (start, stop, memory index)."""
    rewrites: dict[int, list[tuple[int, int, int]]] = {}
    for i, (entry, start, end) in enumerate(layout.bodies):
        if b.find(b"\x40", start, end) < 0:
            continue  # cannot contain memory.grow (opcode 0x40)
        grows = _scan_body(b, entry, start, end, first + i)
        for g_start, _, memidx in grows:
            if memidx != 0:
                raise _fail(
                    f"memory.grow on memory {memidx} in function {first + i} (offset {g_start}): "
                    "multiple memories are not supported",
                    g_start,
                )
        if grows:
            rewrites[i] = grows
    return rewrites


class _Guard:
    """The grow guard function poe appends, its type and the flag global it sets."""

    FLAG_ENTRY = b"\x7f\x01\x41\x00\x0b"  # (global (mut i32) (i32.const 0))

    def __init__(self, layout: Any, info: Any) -> None:
        self.index = info.func_count
        self.flag_global = info.imported_global_count + len(info.globals)
        gtype, self.code = _guard_body(info.memory0, self.flag_global)
        self.new_type: FuncType | None = None
        if gtype in layout.plain_func_types:
            self.type_index = layout.plain_func_types[gtype]
        else:
            self.new_type, self.type_index = gtype, layout.type_count
        self.call = b"\x10" + _leb(self.index)

    def type_bytes(self) -> bytes:
        t = self.new_type
        assert t is not None
        return (bytes([0x60, len(t.params)]) + bytes(0x7E if v == "i64" else 0x7F for v in t.params)
                + bytes([len(t.results)]) + bytes(0x7E if v == "i64" else 0x7F for v in t.results))


def _emit(b: bytes, layout: Any, rewrites: dict[int, list[tuple[int, int, int]]], guard: _Guard | None, exports: list[bytes]) -> bytes:
    """The module with its sections extended (types, functions, globals, exports, code) and any
    missing export or global section inserted where the section order puts it."""
    sections = layout.sections

    def after(sid: int) -> int:
        """Index of the last present section that must precede a new section `sid` (-1: none)."""
        pos = -1
        for idx, sec in enumerate(sections):
            if sec.id != 0 and _SECTION_RANK[sec.id] < _SECTION_RANK[sid]:
                pos = idx
        return pos

    new_sections: dict[int, list[bytes]] = {}  # position -> sections to insert after it
    if exports and not any(s.id == 7 for s in sections):
        new_sections.setdefault(after(7), []).append(_section(7, _leb(len(exports)) + b"".join(exports)))
    if guard is not None and not any(s.id == 6 for s in sections):
        # the global section ranks before exports: insert it first at a shared position
        new_sections.setdefault(after(6), []).insert(0, _section(6, b"\x01" + _Guard.FLAG_ENTRY))
    out: list[bytes] = [b[:8], *new_sections.get(-1, [])]
    for idx, s in enumerate(sections):
        rest = b[s.body : s.end] if s.id in (1, 3, 6, 7) else b""
        if s.id == 1 and guard is not None and guard.new_type is not None:
            out.append(_section(1, _leb(s.count + 1) + rest + guard.type_bytes()))
        elif s.id == 3 and guard is not None:
            out.append(_section(3, _leb(s.count + 1) + rest + _leb(guard.type_index)))
        elif s.id == 6 and guard is not None:
            out.append(_section(6, _leb(s.count + 1) + rest + _Guard.FLAG_ENTRY))
        elif s.id == 7 and exports:
            out.append(_section(7, _leb(s.count + len(exports)) + rest + b"".join(exports)))
        elif s.id == 10 and guard is not None:
            out.append(_code_section(b, layout, s, rewrites, guard))
        else:
            out.append(b[s.start : s.end])
        out.extend(new_sections.get(idx, []))
    return b"".join(out)


def _code_section(b: bytes, layout: Any, s: Any, rewrites: dict[int, list[tuple[int, int, int]]], guard: _Guard) -> bytes:
    """The code section with every memory.grow replaced by a call to the guard, and the guard appended."""
    parts = [_leb(s.count + 1)]
    prev = s.body
    for i, grows in sorted(rewrites.items()):
        entry, start, end = layout.bodies[i]
        parts.append(b[prev:entry])
        pieces = []
        last = start
        for g_start, g_stop, _ in grows:
            pieces.append(b[last:g_start])
            pieces.append(guard.call)
            last = g_stop
        pieces.append(b[last:end])
        body = b"".join(pieces)
        parts.append(_leb(len(body)))
        parts.append(body)
        prev = end
    parts.append(b[prev : s.end])
    parts.append(_leb(len(guard.code)))
    parts.append(guard.code)
    return _section(10, b"".join(parts))


def _state_hazards(b: bytes) -> list[str]:
    layout, info = _parse(b)
    found: list[str] = []
    first = info.imported_func_count
    for i, (entry, start, end) in enumerate(layout.bodies):
        hazards: list[tuple[int, str]] = []
        try:
            _walk(b, _skip_locals(b, start, end), end, _KINDS_STATE, None, hazards)
        except (_Eof, _Bad):
            _scan_body(b, entry, start, end, first + i)  # raises the precise error
            raise
        found.extend(f"{name} in function {first + i} (offset {off})" for off, name in hazards)
    for g in info.globals:
        if g.mutable and g.valtype not in ("i32", "i64", "f32", "f64"):
            found.append(f"mutable global {g.index} of type {g.valtype}")
    for imp in info.imports:
        if imp.kind == "global" and isinstance(imp.desc, GlobalType) and imp.desc.mutable:
            found.append(f"imported mutable global {imp.module}.{imp.name}")
    return found


def state_hazards(wasm: bytes) -> list[str]:
    """What a stateful snapshot (linear memory plus mutable numeric globals) would miss.

    Each entry names an instruction that changes a table or drops a segment, a mutable global
    that is not a number (v128, references), or an imported mutable global; an empty list
    means the module's whole mutable state is its memory and the globals :func:`instrument`
    exports. Raises ModuleError if the module is malformed.
    """
    return _guarded(_state_hazards, wasm)


def instrument(wasm: bytes) -> Instrumented:
    """Instrument a core module for poe (see the module docstring).

    Raises ModuleError if the module is malformed, exports the reserved name ``__poe_memory``
    for anything but memory 0, or uses ``memory.grow`` on a memory other than memory 0.
    """
    return _guarded(_instrument, wasm)
