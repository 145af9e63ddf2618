"""poe's WASI host, call by call: the sandbox holds, the answers are fixed, the stream is seeded."""

from __future__ import annotations

import struct

import pytest
import wasmtime

from poe import CostModel, Invocation, Limits
from poe.wasm.executor import _engine
from poe.wasm.wasi import (
    EBADF,
    EFAULT,
    ENOENT,
    ENOSYS,
    ENOTCAPABLE,
    EROFS,
    ESPIPE,
    RIGHT_FD_WRITE,
    SUCCESS,
    WASI_FUNCTIONS,
    HostStop,
    WasiHost,
)

CM = CostModel.current(Limits(fuel=10_000_000, memory_pages=16))
SCRATCH = 1024  # where tests put their strings and out-parameters


class Guest:
    """A module that re-exports every preview1 function, so tests can call the host directly."""

    def __init__(self, inv: Invocation) -> None:
        engine = _engine(CM)
        self.host = WasiHost(CM)
        linker = wasmtime.Linker(engine)
        self.host.define(linker)
        imports, funcs = [], ['(memory (export "__poe_memory") 1)']
        for name, (params, results) in WASI_FUNCTIONS.items():
            p = " ".join("i32" if c == "i" else "i64" for c in params)
            r = " ".join("i32" for _ in results)
            sig = f"(param {p})" if p else ""
            res = f"(result {r})" if r else ""
            imports.append(f'(import "wasi_snapshot_preview1" "{name}" (func ${name} {sig} {res}))')
            gets = " ".join(f"local.get {i}" for i in range(len(params)))
            funcs.append(f'(func (export "{name}") {sig} {res} {gets} call ${name})')
        parts = ["(module", *imports, *funcs, ")"]
        self.store = wasmtime.Store(engine)
        self.store.set_fuel(CM.limits.fuel)
        self.instance = linker.instantiate(self.store, wasmtime.Module(engine, "\n".join(parts)))
        self.memory = self.instance.exports(self.store)["__poe_memory"]
        self.ctx = self.host.begin(inv)

    def call(self, name: str, *args: int) -> int:
        return self.instance.exports(self.store)[name](self.store, *args)

    def put(self, data: bytes, at: int = SCRATCH) -> tuple[int, int]:
        self.memory.write(self.store, data, at)
        return at, len(data)

    def get(self, at: int, n: int) -> bytes:
        return bytes(self.memory.read(self.store, at, at + n))

    def u32(self, at: int) -> int:
        return struct.unpack("<I", self.get(at, 4))[0]

    def u64(self, at: int) -> int:
        return struct.unpack("<Q", self.get(at, 8))[0]

    def open(self, path: str, *, oflags: int = 0, rights: int = 0b10, dirfd: int = 3) -> tuple[int, int]:
        p, n = self.put(path.encode())
        errno = self.call("path_open", dirfd, 0, p, n, oflags, rights, 0, 0, 64)
        return errno, self.u32(64)

    def read(self, fd: int, n: int) -> bytes:
        self.put(struct.pack("<II", 4096, n), 32)
        assert self.call("fd_read", fd, 32, 1, 40) == SUCCESS
        return self.get(4096, self.u32(40))


@pytest.fixture
def guest() -> Guest:
    inv = Invocation.build(
        argv=["prog", "x y"], env={"A": "1"}, stdin=b"from stdin",
        files={"data.txt": b"0123456789", "sub/inner.txt": b"inner"}, seed=b"\x07" * 32,
    )
    return Guest(inv)


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "sub/../../x", "sub/../../../etc/passwd"])
def test_paths_escaping_the_preopen_are_not_capable(guest, path):
    assert guest.open(path)[0] == ENOTCAPABLE


def test_dot_dot_inside_the_preopen_is_allowed(guest):
    errno, fd = guest.open("sub/../data.txt")
    assert errno == SUCCESS and guest.read(fd, 100) == b"0123456789"


@pytest.mark.parametrize(("oflags", "rights", "path"), [(0, RIGHT_FD_WRITE, "data.txt"), (1, 0b10, "new.txt"), (8, 0b10, "data.txt")])
def test_writing_creating_or_truncating_files_is_read_only(guest, oflags, rights, path):
    assert guest.open(path, oflags=oflags, rights=rights)[0] == EROFS
    assert guest.ctx.files["data.txt"] == b"0123456789"


def test_missing_file_is_enoent(guest):
    assert guest.open("nope.txt")[0] == ENOENT


def test_files_read_seek_tell_and_stat(guest):
    errno, fd = guest.open("sub/inner.txt")
    assert errno == SUCCESS
    assert guest.read(fd, 2) == b"in"
    assert guest.call("fd_seek", fd, -1, 2, 200) == SUCCESS and guest.u64(200) == 4
    assert guest.read(fd, 10) == b"r"
    assert guest.call("fd_filestat_get", fd, 300) == SUCCESS
    assert struct.unpack_from("<Q", guest.get(300, 64), 32)[0] == 5  # size
    assert guest.call("fd_close", fd) == SUCCESS
    assert guest.call("fd_close", fd) == EBADF


def test_stdio_is_not_seekable_and_stdin_comes_from_the_payload(guest):
    assert guest.call("fd_seek", 0, 0, 0, 200) == ESPIPE
    assert guest.read(0, 4) == b"from" and guest.read(0, 100) == b" stdin" and guest.read(0, 10) == b""


def test_readdir_lists_the_invocations_files_in_order(guest):
    errno, fd = guest.open(".", oflags=2)
    assert errno == SUCCESS
    assert guest.call("fd_readdir", fd, 2048, 1024, 0, 100) == SUCCESS
    raw, names, at = guest.get(2048, guest.u32(100)), [], 0
    while at + 24 <= len(raw):
        namlen = struct.unpack_from("<I", raw, at + 16)[0]
        names.append(raw[at + 24 : at + 24 + namlen].decode())
        at += 24 + namlen
    assert names == [".", "..", "data.txt", "sub"]


def test_args_and_environment_come_from_the_invocation(guest):
    assert guest.call("args_sizes_get", 100, 104) == SUCCESS
    assert (guest.u32(100), guest.u32(104)) == (2, len(b"prog\0x y\0"))
    assert guest.call("args_get", 200, 300) == SUCCESS
    assert guest.get(guest.u32(204), 4) == b"x y\0"
    assert guest.call("environ_get", 200, 300) == SUCCESS
    assert guest.get(300, 4) == b"A=1\0"


def test_random_stream_is_seeded_and_continuous(guest):
    assert guest.call("random_get", 100, 16) == SUCCESS and guest.call("random_get", 116, 16) == SUCCESS
    two_calls = guest.get(100, 32)
    other = Guest(guest.ctx.inv)
    assert other.call("random_get", 100, 32) == SUCCESS
    assert other.get(100, 32) == two_calls
    reseeded = Guest(guest.ctx.inv.with_seed(b"\x08" * 32))
    reseeded.call("random_get", 100, 32)
    assert reseeded.get(100, 32) != two_calls


def test_pointers_outside_memory_fault(guest):
    assert guest.call("random_get", 65536 - 8, 16) == EFAULT
    assert guest.call("args_sizes_get", 65535, 0) == EFAULT


def test_writes_to_stdin_or_unknown_fds_are_ebadf(guest):
    guest.put(struct.pack("<II", SCRATCH, 1), 32)
    assert guest.call("fd_write", 0, 32, 1, 40) == EBADF
    assert guest.call("fd_write", 99, 32, 1, 40) == EBADF
    assert guest.call("fd_write", 1, 32, 1, 40) == SUCCESS and guest.ctx.stdout == bytearray(guest.get(SCRATCH, 1))


@pytest.mark.parametrize(("name", "errno"), [("sock_send", ENOSYS), ("path_unlink_file", EROFS), ("proc_raise", ENOSYS)])
def test_unimplemented_calls_answer_a_fixed_errno(guest, name, errno):
    nparams = len(WASI_FUNCTIONS[name][0])
    assert guest.call(name, *([0] * nparams)) == errno


def test_sleeping_advances_the_virtual_clock_only(guest):
    assert guest.call("clock_time_get", 1, 0, 100) == SUCCESS
    before = guest.u64(100)
    sub = struct.pack("<QB7xI4xQQH6x", 5, 0, 1, 3_000_000_000, 0, 0)  # relative sleep of 3 s on the monotonic clock
    guest.put(sub, 200)
    assert guest.call("poll_oneoff", 200, 300, 1, 400) == SUCCESS and guest.u32(400) == 1
    assert guest.call("clock_time_get", 1, 0, 100) == SUCCESS
    assert guest.u64(100) - before >= 3_000_000_000


def test_every_host_call_is_charged_and_folded_into_the_io_digest(guest):
    fuel = guest.store.get_fuel()
    digest = guest.ctx.io.copy().digest()
    guest.call("sched_yield")
    assert fuel - guest.store.get_fuel() >= CM.host_call_fuel
    assert guest.ctx.io.digest() != digest and guest.ctx.calls == 1


def test_proc_exit_stops_the_invocation_with_its_code(guest):
    with pytest.raises(HostStop) as e:
        guest.call("proc_exit", 300)
    assert (e.value.kind, e.value.code) == ("exit", 300)


# -- hardening: what a hostile guest tries ---------------------------------------------------


def test_i32_arguments_above_2_gib_are_unsigned_not_negative(guest):
    # wasmtime-py passes them as negative ints; the host must see 0xFFFFFF00, i.e. a fault
    assert guest.call("args_get", -256, -128) == EFAULT
    assert guest.call("random_get", -16, 8) == EFAULT
    assert guest.call("fd_readdir", 3, 2048, -1, 0, 100) == EFAULT  # buf_len 4 GiB - 1: outside memory


def test_host_work_is_bounded_by_the_fuel_left_before_it_is_done(guest):
    guest.store.set_fuel(500)  # enough for the call, far too little for 1 MiB of work
    with pytest.raises(HostStop) as e:
        guest.call("poll_oneoff", 0, 0, 1300, 100)  # would read 62 KB of subscriptions
    assert e.value.kind == "out-of-fuel" and guest.store.get_fuel() == 0


def test_overlong_paths_are_refused_before_being_read(guest):
    assert guest.call("path_open", 3, 0, 0, 5000, 0, 0b10, 0, 0, 64) == 37  # ENAMETOOLONG


def test_open_file_descriptors_are_capped(guest):
    from poe.wasm.wasi import EMFILE, MAX_OPEN_FDS

    errnos = [guest.open("data.txt")[0] for _ in range(MAX_OPEN_FDS)]
    assert errnos.count(SUCCESS) == MAX_OPEN_FDS - 4 and errnos[-1] == EMFILE


def test_calls_that_end_the_segment_are_charged_too(guest):
    fuel = guest.store.get_fuel()
    with pytest.raises(HostStop):
        guest.call("proc_exit", 0)
    assert fuel - guest.store.get_fuel() >= CM.host_call_fuel


def test_readdir_cookie_beyond_the_end_lists_nothing(guest):
    errno, fd = guest.open(".", oflags=2)
    assert guest.call("fd_readdir", fd, 2048, 1024, -1, 100) == SUCCESS and guest.u32(100) == 0


def test_too_many_iovecs_is_einval(guest):
    assert guest.call("fd_write", 1, 0, 5000, 40) == 28  # EINVAL
