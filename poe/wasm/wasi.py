"""poe's own WASI preview1 host: deterministic, so a replay is exact without recording.

Everything a guest can observe comes from the invocation: argv, environment, stdin, the files
of a read-only preopened directory ``.``, a random stream keyed by the invocation seed, and
virtual clocks that advance with fuel. Every call is folded, with the fuel at which it
happened, into the running io digest, and charged fuel for the work the host does.

Calls poe does not implement answer a fixed errno (see ``FIXED_ERRNO``); importing a function
that WASI preview1 does not define is refused before anything runs.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, field
from typing import Callable

import blake3
import wasmtime

from poe.formats import hashing as h
from poe.formats.costmodel import CostModel
from poe.formats.invocation import Invocation
from poe.formats.moduleset import WASI_MODULE

__all__ = ["WASI_MODULE", "WASI_FUNCTIONS", "WasiHost", "HostStop"]

# errno values of WASI preview1
SUCCESS, E2BIG, EBADF, EEXIST, EFAULT, EINVAL = 0, 1, 8, 20, 21, 28
EISDIR, ENOENT, ENOSYS, ENOTDIR, EROFS, ESPIPE, ENOTCAPABLE, EILSEQ = 31, 44, 52, 54, 69, 70, 76, 25
EMFILE, ENAMETOOLONG = 33, 37
MAX_OPEN_FDS = 1024
MAX_PATH = 4096
MAX_IOVECS = 1024

FT_UNKNOWN, FT_CHAR, FT_DIR, FT_FILE = 0, 2, 3, 4
RIGHT_FD_READ, RIGHT_FD_SEEK, RIGHT_FD_WRITE, RIGHT_FD_TELL = 1 << 1, 1 << 2, 1 << 6, 1 << 5
RIGHTS_FILE = (1 << 30) - 1 & ~(RIGHT_FD_WRITE | (1 << 0) | (1 << 4) | (1 << 7) | (1 << 22) | (1 << 23))
RIGHTS_DIR = RIGHTS_FILE
RIGHTS_STDIN = RIGHT_FD_READ | (1 << 27)
RIGHTS_STDOUT = RIGHT_FD_WRITE | (1 << 27)
OFLAG_CREAT, OFLAG_DIRECTORY, OFLAG_EXCL, OFLAG_TRUNC = 1, 2, 4, 8

_I32, _I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

# name -> (params, results); "i"=i32, "I"=i64. The complete preview1 function set: the
# function id folded into the io digest is the position in this (alphabetical) table.
WASI_FUNCTIONS: dict[str, tuple[str, str]] = {
    "args_get": ("ii", "i"),
    "args_sizes_get": ("ii", "i"),
    "clock_res_get": ("ii", "i"),
    "clock_time_get": ("iIi", "i"),
    "environ_get": ("ii", "i"),
    "environ_sizes_get": ("ii", "i"),
    "fd_advise": ("iIIi", "i"),
    "fd_allocate": ("iII", "i"),
    "fd_close": ("i", "i"),
    "fd_datasync": ("i", "i"),
    "fd_fdstat_get": ("ii", "i"),
    "fd_fdstat_set_flags": ("ii", "i"),
    "fd_fdstat_set_rights": ("iII", "i"),
    "fd_filestat_get": ("ii", "i"),
    "fd_filestat_set_size": ("iI", "i"),
    "fd_filestat_set_times": ("iIIi", "i"),
    "fd_pread": ("iiiIi", "i"),
    "fd_prestat_dir_name": ("iii", "i"),
    "fd_prestat_get": ("ii", "i"),
    "fd_pwrite": ("iiiIi", "i"),
    "fd_read": ("iiii", "i"),
    "fd_readdir": ("iiiIi", "i"),
    "fd_renumber": ("ii", "i"),
    "fd_seek": ("iIii", "i"),
    "fd_sync": ("i", "i"),
    "fd_tell": ("ii", "i"),
    "fd_write": ("iiii", "i"),
    "path_create_directory": ("iii", "i"),
    "path_filestat_get": ("iiiii", "i"),
    "path_filestat_set_times": ("iiiiIIi", "i"),
    "path_link": ("iiiiiii", "i"),
    "path_open": ("iiiiiIIii", "i"),
    "path_readlink": ("iiiiii", "i"),
    "path_remove_directory": ("iii", "i"),
    "path_rename": ("iiiiii", "i"),
    "path_symlink": ("iiiii", "i"),
    "path_unlink_file": ("iii", "i"),
    "poll_oneoff": ("iiii", "i"),
    "proc_exit": ("i", ""),
    "proc_raise": ("i", "i"),
    "random_get": ("ii", "i"),
    "sched_yield": ("", "i"),
    "sock_accept": ("iii", "i"),
    "sock_recv": ("iiiiii", "i"),
    "sock_send": ("iiiii", "i"),
    "sock_shutdown": ("ii", "i"),
}
_FUNC_ID = {name: i for i, name in enumerate(WASI_FUNCTIONS)}

# Calls poe answers with a fixed errno: the directory is read-only, there are no sockets,
# signals or renumbering. The table is part of the host ABI.
FIXED_ERRNO: dict[str, int] = {
    "fd_allocate": EROFS,
    "fd_fdstat_set_flags": ENOSYS,
    "fd_fdstat_set_rights": ENOSYS,
    "fd_filestat_set_size": EROFS,
    "fd_filestat_set_times": EROFS,
    "fd_pwrite": EBADF,
    "fd_renumber": ENOSYS,
    "path_create_directory": EROFS,
    "path_filestat_set_times": EROFS,
    "path_link": EROFS,
    "path_readlink": EINVAL,
    "path_remove_directory": EROFS,
    "path_rename": EROFS,
    "path_symlink": EROFS,
    "path_unlink_file": EROFS,
    "proc_raise": ENOSYS,
    "sock_accept": ENOSYS,
    "sock_recv": ENOSYS,
    "sock_send": ENOSYS,
    "sock_shutdown": ENOSYS,
}

_VALTYPE_NAME = {"i": "i32", "I": "i64"}


def wasi_signature(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    params, results = WASI_FUNCTIONS[name]
    return tuple(_VALTYPE_NAME[c] for c in params), tuple(_VALTYPE_NAME[c] for c in results)


class HostStop(Exception):
    """Raised inside a host call to end the invocation with a recorded outcome."""

    def __init__(self, kind: str, code: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind  # "exit", "out-of-fuel", "output-limit"
        self.code = code


class _Errno(Exception):
    """Ends a host call early with an errno (EFAULT for a pointer outside memory, ...)."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


@dataclass
class _Fd:
    kind: int  # FT_FILE, FT_DIR, FT_CHAR (stdio)
    path: str = ""  # for files and directories, relative to "."
    data: bytes = b""
    pos: int = 0
    stream: str = ""  # "stdin", "stdout", "stderr"


@dataclass
class _Context:
    """The state of one invocation as the host sees it."""

    inv: Invocation
    fuel_budget: int
    output_limit: int
    argv: list[bytes]
    env: list[bytes]
    files: dict[str, bytes]
    dirs: dict[str, list[tuple[str, int]]]
    fds: dict[int, _Fd]
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    io: blake3.blake3 = field(default_factory=lambda: h.derive(h.CTX_IO_LOG))
    calls: int = 0
    random_pos: int = 0
    slept_ns: int = 0
    fuel_used: int = 0  # fuel consumed when the current host call began
    log: list[tuple] | None = None
    clock_base: int = 0  # stateful mode: virtual ns the lineage ran before this segment
    random_key: bytes = b""  # keys the random stream: the invocation seed, or (stateful) seed and pre-state


def _directory_tree(files: dict[str, bytes]) -> dict[str, list[tuple[str, int]]]:
    """Every directory implied by the file names, with its sorted (name, filetype) entries."""
    dirs: dict[str, dict[str, int]] = {"": {}}
    for path in files:
        parts = path.split("/")
        for depth in range(len(parts)):
            parent = "/".join(parts[:depth])
            dirs.setdefault(parent, {})
            is_last = depth == len(parts) - 1
            dirs[parent][parts[depth]] = FT_FILE if is_last else FT_DIR
    return {d: sorted(entries.items()) for d, entries in dirs.items()}


class WasiHost:
    """Defines the preview1 functions on a linker; `begin()` arms it for one invocation."""

    def __init__(self, cost_model: CostModel) -> None:
        self.cm = cost_model
        self.ctx: _Context | None = None
        self._inode: dict[str, int] = {}
        self._tree_cache: tuple | None = None

    # -- per invocation ----------------------------------------------------------------

    def begin(self, inv: Invocation, *, trace: bool = False, clock_base: int = 0, random_key: bytes | None = None) -> _Context:
        files, dirs, self._inode = self._tree(inv.files)
        self.ctx = _Context(
            inv=inv,
            fuel_budget=self.cm.limits.fuel,
            output_limit=self.cm.limits.output_bytes,
            argv=list(inv.argv),
            env=list(inv.env),
            files=files,
            dirs=dirs,
            fds={
                0: _Fd(FT_CHAR, stream="stdin", data=inv.stdin.data),
                1: _Fd(FT_CHAR, stream="stdout"),
                2: _Fd(FT_CHAR, stream="stderr"),
                3: _Fd(FT_DIR, path=""),
            },
            log=[] if trace else None,
            clock_base=clock_base,
            random_key=inv.seed if random_key is None else random_key,
        )
        return self.ctx

    def _tree(self, entries: tuple) -> tuple[dict[str, bytes], dict, dict[str, int]]:
        """Files, directories and inode numbers of the preopen; reused while the files repeat."""
        if self._tree_cache is not None and self._tree_cache[0] == entries:
            return self._tree_cache[1]
        files = {name: p.data for name, p in entries}
        dirs = _directory_tree(files)
        # Inode numbers: 1 for ".", then directories and files in sorted order.
        names = sorted(set(dirs) | set(files), key=str.encode)
        tree = (files, dirs, {name: i + 1 for i, name in enumerate(names)})
        self._tree_cache = (entries, tree)
        return tree

    # -- linker ------------------------------------------------------------------------

    def define(self, linker: wasmtime.Linker) -> None:
        for name, (params, results) in WASI_FUNCTIONS.items():
            ty = wasmtime.FuncType(
                [_I32 if c == "i" else _I64 for c in params],
                [_I32 if c == "i" else _I64 for c in results],
            )
            impl = getattr(self, "_" + name, None)
            if impl is None:
                impl = self._fixed(name, FIXED_ERRNO[name])
            linker.define_func(WASI_MODULE, name, ty, self._wrap(name, impl), access_caller=True)

    def _wrap(self, name: str, impl: Callable[..., int]) -> Callable[..., int | None]:
        fid = _FUNC_ID[name]
        kinds = WASI_FUNCTIONS[name][0]
        # wasmtime-py hands i32 arguments over as signed ints; WASI means them unsigned.
        unsigned = tuple(0xFFFFFFFF if c == "i" else -1 for c in kinds)
        header = struct.Struct("<QH" + "q" * len(kinds))
        call_fuel = self.cm.host_call_fuel
        per_fuel = self.cm.host_bytes_per_fuel
        get_fuel = wasmtime.Store.get_fuel
        set_fuel = wasmtime.Store.set_fuel
        memory_export = "__poe_memory"

        def host_call(caller: wasmtime.Caller, *raw: int) -> int | None:
            ctx = self.ctx
            assert ctx is not None, "host call outside an invocation"
            args = tuple(a & m for a, m in zip(raw, unsigned))
            remaining = get_fuel(caller)
            used = ctx.fuel_budget - remaining
            ctx.calls += 1
            ctx.fuel_used = used
            # Guest memory the call may touch, in bytes, before its charge could not be paid:
            # host work is bounded by fuel before it is done, not only billed after.
            allowance = max(remaining - call_fuel, 0) * per_fuel
            mem = caller.get(memory_export)
            view = _Memory(mem, caller, allowance) if mem is not None else _NO_MEMORY
            moved: list[bytes] = []
            stop: HostStop | None = None
            try:
                errno = impl(ctx, view, moved, *args)
            except _Errno as exc:
                errno = exc.errno
            except HostStop as exc:
                stop, errno = exc, None
            cost = call_fuel + (view.traffic + per_fuel - 1) // per_fuel
            if remaining < cost and (stop is None or stop.kind != "out-of-fuel"):
                stop = HostStop("out-of-fuel")
            if stop is not None:
                ctx.io.update(header.pack(used, fid, *args) + struct.pack("<hI", -1, stop.code))
                if ctx.log is not None:
                    ctx.log.append((used, name, args, stop.kind, stop.code))
                set_fuel(caller, 0 if stop.kind == "out-of-fuel" else remaining - cost)
                raise stop
            nbytes = sum(len(m) for m in moved)
            ctx.io.update(header.pack(used, fid, *args) + struct.pack("<hI", errno if errno is not None else -2, nbytes))
            for m in moved:
                ctx.io.update(m)
            if ctx.log is not None:
                ctx.log.append((used, name, args, errno, nbytes))
            set_fuel(caller, remaining - cost)
            return errno

        host_call.__name__ = name
        return host_call

    @staticmethod
    def _fixed(name: str, errno: int) -> Callable[..., int]:
        def fixed(ctx: _Context, mem: _Memory | None, moved: list[bytes], *args: int) -> int:
            return errno

        return fixed

    # -- helpers -----------------------------------------------------------------------

    def _now(self, ctx: _Context, caller_used: int, clock_id: int) -> int | None:
        ticks = ctx.clock_base + caller_used * self.cm.clock_ns_per_fuel + ctx.slept_ns
        if clock_id == 0:  # realtime
            return self.cm.clock_realtime_base_ns + ticks
        if clock_id in (1, 2, 3):  # monotonic, process and thread cputime
            return ticks
        return None

    def _resolve(self, ctx: _Context, dirfd: int, mem: _Memory, ptr: int, length: int) -> tuple[str | None, int]:
        d = ctx.fds.get(dirfd)
        if d is None:
            return None, EBADF
        if d.kind != FT_DIR:
            return None, ENOTDIR
        if length > MAX_PATH:
            return None, ENAMETOOLONG
        raw = mem.read(ptr, length)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None, EILSEQ
        if text.startswith("/"):
            return None, ENOTCAPABLE
        parts = [p for p in d.path.split("/") if p]
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    return None, ENOTCAPABLE
                parts.pop()
            else:
                parts.append(part)
        return "/".join(parts), SUCCESS

    def _filestat(self, ctx: _Context, path: str, kind: int) -> bytes:
        size = len(ctx.files[path]) if kind == FT_FILE else 0
        return struct.pack("<QQB7xQQQQQ", 0, self._inode.get(path, 0), kind, 1, size, 0, 0, 0)

    # -- arguments and environment -------------------------------------------------------

    @staticmethod
    def _sizes(items: list[bytes], mem: _Memory, count_ptr: int, size_ptr: int) -> int:
        mem.write_u32(count_ptr, len(items))
        mem.write_u32(size_ptr, sum(len(a) + 1 for a in items))
        return SUCCESS

    @staticmethod
    def _strings(items: list[bytes], mem: _Memory, moved: list[bytes], ptrs: int, buf: int) -> int:
        blob = b"".join(a + b"\x00" for a in items)
        offsets, at = [], buf
        for a in items:
            offsets.append(at)
            at += len(a) + 1
        mem.write(ptrs, struct.pack(f"<{len(items)}I", *offsets))
        mem.write(buf, blob)
        moved.append(blob)
        return SUCCESS

    def _args_sizes_get(self, ctx, mem, moved, count_ptr, size_ptr):
        return self._sizes(ctx.argv, mem, count_ptr, size_ptr)

    def _args_get(self, ctx, mem, moved, ptrs, buf):
        return self._strings(ctx.argv, mem, moved, ptrs, buf)

    def _environ_sizes_get(self, ctx, mem, moved, count_ptr, size_ptr):
        return self._sizes(ctx.env, mem, count_ptr, size_ptr)

    def _environ_get(self, ctx, mem, moved, ptrs, buf):
        return self._strings(ctx.env, mem, moved, ptrs, buf)

    # -- clocks, randomness, scheduling ---------------------------------------------------

    def _clock_res_get(self, ctx, mem, moved, clock_id, res_ptr):
        if clock_id not in (0, 1, 2, 3):
            return EINVAL
        mem.write_u64(res_ptr, self.cm.clock_ns_per_fuel)
        return SUCCESS

    def _clock_time_get(self, ctx, mem, moved, clock_id, precision, time_ptr):
        now = self._now(ctx, ctx.fuel_used, clock_id)
        if now is None:
            return EINVAL
        mem.write_u64(time_ptr, now)
        return SUCCESS

    def _random_get(self, ctx, mem, moved, buf, length):
        mem.check(buf, length)  # before the work: faults and unaffordable lengths stop here
        data = h.derive(h.CTX_RANDOM, ctx.random_key).digest(length=length, seek=ctx.random_pos)
        ctx.random_pos += length
        mem.write(buf, data)
        moved.append(data)
        return SUCCESS

    def _sched_yield(self, ctx, mem, moved):
        return SUCCESS

    def _proc_exit(self, ctx, mem, moved, code):
        raise HostStop("exit", code & 0xFFFFFFFF)

    def _poll_oneoff(self, ctx, mem, moved, in_ptr, out_ptr, nsubs, nevents_ptr):
        if nsubs == 0:
            return EINVAL
        subs = mem.read(in_ptr, 48 * nsubs)
        now_used = ctx.fuel_used
        events = []
        earliest: tuple[int, int] | None = None  # (wait ns, userdata)
        for i in range(nsubs):
            userdata, tag = struct.unpack_from("<QB", subs, 48 * i)
            if tag == 0:  # clock
                clock_id, timeout, _precision, flags = struct.unpack_from("<I4xQQH", subs, 48 * i + 16)
                now = self._now(ctx, now_used, clock_id)
                if now is None:
                    events.append(struct.pack("<QHB5xQH6x", userdata, EINVAL, 0, 0, 0))
                    continue
                wait = max(0, timeout - now) if flags & 1 else timeout
                if earliest is None or wait < earliest[0]:
                    earliest = (wait, userdata)
            elif tag in (1, 2):  # fd_read, fd_write: stdio and files are always ready
                (fd,) = struct.unpack_from("<I", subs, 48 * i + 16)
                f = ctx.fds.get(fd)
                if f is None:
                    events.append(struct.pack("<QHB5xQH6x", userdata, EBADF, tag, 0, 0))
                else:
                    avail = max(0, len(f.data) - f.pos) if tag == 1 else 0
                    events.append(struct.pack("<QHB5xQH6x", userdata, SUCCESS, tag, avail, 0))
            else:
                return EINVAL
        if not events and earliest is not None:
            # Nothing else is ready: the guest sleeps, and the virtual clock jumps forward.
            ctx.slept_ns += earliest[0]
            events.append(struct.pack("<QHB5xQH6x", earliest[1], SUCCESS, 0, 0, 0))
        out = b"".join(events)
        mem.write(out_ptr, out)
        mem.write_u32(nevents_ptr, len(events))
        moved.append(out)
        return SUCCESS

    # -- file descriptors ---------------------------------------------------------------

    def _fd_write(self, ctx, mem, moved, fd, iovs, iovs_len, nwritten_ptr):
        f = ctx.fds.get(fd)
        if f is None or f.stream not in ("stdout", "stderr"):
            return EBADF
        room = ctx.output_limit - len(ctx.stdout) - len(ctx.stderr)
        total = mem.iov_total(iovs, iovs_len)
        data = mem.gather(iovs, iovs_len, min(total, room))
        sink = ctx.stdout if f.stream == "stdout" else ctx.stderr
        if total > room:
            sink += data
            raise HostStop("output-limit")
        sink += data
        moved.append(data)
        mem.write_u32(nwritten_ptr, len(data))
        return SUCCESS

    def _read_into(self, mem: _Memory, f: _Fd, iovs: int, iovs_len: int, pos: int) -> bytes:
        want = mem.iov_total(iovs, iovs_len)
        data = f.data[pos : pos + want]
        mem.scatter(iovs, iovs_len, data)
        return data

    def _fd_read(self, ctx, mem, moved, fd, iovs, iovs_len, nread_ptr):
        f = ctx.fds.get(fd)
        if f is None or f.stream in ("stdout", "stderr"):
            return EBADF
        if f.kind == FT_DIR:
            return EISDIR
        data = self._read_into(mem, f, iovs, iovs_len, f.pos)
        f.pos += len(data)
        moved.append(data)
        mem.write_u32(nread_ptr, len(data))
        return SUCCESS

    def _fd_pread(self, ctx, mem, moved, fd, iovs, iovs_len, offset, nread_ptr):
        f = ctx.fds.get(fd)
        if f is None or f.stream in ("stdout", "stderr"):
            return EBADF
        if f.kind == FT_DIR:
            return EISDIR
        if f.kind != FT_FILE:
            return ESPIPE
        if offset < 0:
            return EINVAL
        data = self._read_into(mem, f, iovs, iovs_len, offset)
        moved.append(data)
        mem.write_u32(nread_ptr, len(data))
        return SUCCESS

    def _fd_seek(self, ctx, mem, moved, fd, offset, whence, newoffset_ptr):
        f = ctx.fds.get(fd)
        if f is None:
            return EBADF
        if f.kind != FT_FILE:
            return ESPIPE if f.kind == FT_CHAR else EISDIR
        base = {0: 0, 1: f.pos, 2: len(f.data)}.get(whence)
        if base is None or base + offset < 0:
            return EINVAL
        f.pos = base + offset
        mem.write_u64(newoffset_ptr, f.pos)
        return SUCCESS

    def _fd_tell(self, ctx, mem, moved, fd, offset_ptr):
        f = ctx.fds.get(fd)
        if f is None:
            return EBADF
        if f.kind != FT_FILE:
            return ESPIPE
        mem.write_u64(offset_ptr, f.pos)
        return SUCCESS

    def _fd_close(self, ctx, mem, moved, fd):
        if fd == 3:  # the preopen stays: libc caches it
            return ENOTCAPABLE
        return SUCCESS if ctx.fds.pop(fd, None) is not None else EBADF

    def _fd_advise(self, ctx, mem, moved, fd, offset, length, advice):
        return SUCCESS if fd in ctx.fds else EBADF

    def _fd_sync(self, ctx, mem, moved, fd):
        return SUCCESS if fd in ctx.fds else EBADF

    _fd_datasync = _fd_sync

    def _fd_fdstat_get(self, ctx, mem, moved, fd, ptr):
        f = ctx.fds.get(fd)
        if f is None:
            return EBADF
        if f.stream == "stdin":
            kind, rights, inherit = FT_UNKNOWN, RIGHTS_STDIN, 0
        elif f.stream:
            kind, rights, inherit = FT_UNKNOWN, RIGHTS_STDOUT, 0
        elif f.kind == FT_DIR:
            kind, rights, inherit = FT_DIR, RIGHTS_DIR, RIGHTS_FILE
        else:
            kind, rights, inherit = FT_FILE, RIGHTS_FILE, 0
        mem.write(ptr, struct.pack("<BxH4xQQ", kind, 0, rights, inherit))
        return SUCCESS

    def _fd_filestat_get(self, ctx, mem, moved, fd, ptr):
        f = ctx.fds.get(fd)
        if f is None:
            return EBADF
        if f.stream:
            stat = struct.pack("<QQB7xQQQQQ", 0, 0, FT_UNKNOWN, 1, 0, 0, 0, 0)
        else:
            stat = self._filestat(ctx, f.path, f.kind)
        mem.write(ptr, stat)
        return SUCCESS

    def _fd_prestat_get(self, ctx, mem, moved, fd, ptr):
        if fd != 3 or 3 not in ctx.fds:
            return EBADF
        mem.write(ptr, struct.pack("<B3xI", 0, 1))
        return SUCCESS

    def _fd_prestat_dir_name(self, ctx, mem, moved, fd, ptr, length):
        if fd != 3:
            return EBADF
        if length < 1:
            return EINVAL
        mem.write(ptr, b".")
        return SUCCESS

    def _fd_readdir(self, ctx, mem, moved, fd, buf, buf_len, cookie, bufused_ptr):
        f = ctx.fds.get(fd)
        if f is None:
            return EBADF
        if f.kind != FT_DIR:
            return ENOTDIR
        mem.in_bounds(buf, buf_len)
        entries = [(".", FT_DIR), ("..", FT_DIR)] + ctx.dirs.get(f.path, [])
        out = bytearray()
        for i in range(cookie & 0xFFFFFFFFFFFFFFFF, len(entries)):
            name, kind = entries[i]
            full = f"{f.path}/{name}".lstrip("/") if name not in (".", "..") else f.path
            raw = name.encode()
            out += struct.pack("<QQIB3x", i + 1, self._inode.get(full, 0), len(raw), kind) + raw
            if len(out) >= buf_len:
                break
        out = bytes(out[:buf_len])
        mem.write(buf, out)
        mem.write_u32(bufused_ptr, len(out))
        moved.append(out)
        return SUCCESS

    # -- paths ---------------------------------------------------------------------------

    def _path_open(self, ctx, mem, moved, dirfd, dirflags, path_ptr, path_len, oflags, rights, inherit, fdflags, fd_ptr):
        path, err = self._resolve(ctx, dirfd, mem, path_ptr, path_len)
        if path is None:
            return err
        exists_file = path in ctx.files
        exists_dir = path in ctx.dirs
        if oflags & OFLAG_EXCL and oflags & OFLAG_CREAT and (exists_file or exists_dir):
            return EEXIST
        if not exists_file and not exists_dir:
            return EROFS if oflags & OFLAG_CREAT else ENOENT
        if oflags & (OFLAG_TRUNC | OFLAG_CREAT) or rights & RIGHT_FD_WRITE or fdflags & 1:
            return EISDIR if exists_dir else EROFS
        if oflags & OFLAG_DIRECTORY and not exists_dir:
            return ENOTDIR
        if len(ctx.fds) >= MAX_OPEN_FDS:
            return EMFILE
        new_fd = 4
        while new_fd in ctx.fds:  # the lowest free descriptor, as POSIX does
            new_fd += 1
        if exists_dir:
            ctx.fds[new_fd] = _Fd(FT_DIR, path=path)
        else:
            ctx.fds[new_fd] = _Fd(FT_FILE, path=path, data=ctx.files[path])
        mem.write_u32(fd_ptr, new_fd)
        return SUCCESS

    def _path_filestat_get(self, ctx, mem, moved, dirfd, flags, path_ptr, path_len, ptr):
        path, err = self._resolve(ctx, dirfd, mem, path_ptr, path_len)
        if path is None:
            return err
        if path in ctx.files:
            stat = self._filestat(ctx, path, FT_FILE)
        elif path in ctx.dirs:
            stat = self._filestat(ctx, path, FT_DIR)
        else:
            return ENOENT
        mem.write(ptr, stat)
        return SUCCESS


class _Memory:
    """Bounds-checked, metered access to the calling instance's memory for one host call."""

    __slots__ = ("base", "size", "allowance", "traffic")

    def __init__(self, mem: wasmtime.Memory | None, caller: wasmtime.Caller | None, allowance: int) -> None:
        self.allowance = allowance
        self.traffic = 0  # bytes read from or written to guest memory: charged as host work
        self.base, self.size = 0, 0
        if mem is not None and caller is not None:  # without a memory every pointer faults
            self.size = mem.data_len(caller)
            if self.size:
                self.base = ctypes.addressof(mem.data_ptr(caller).contents)

    def in_bounds(self, ptr: int, n: int) -> None:
        """A buffer the guest declares must lie inside its memory, even where the host uses less."""
        if ptr < 0 or n < 0 or ptr + n > self.size:
            raise _Errno(EFAULT)

    def check(self, ptr: int, n: int) -> None:
        self.in_bounds(ptr, n)
        if self.traffic + n > self.allowance:
            raise HostStop("out-of-fuel")

    def read(self, ptr: int, n: int) -> bytes:
        self.check(ptr, n)
        self.traffic += n
        return ctypes.string_at(self.base + ptr, n)

    def write(self, ptr: int, data: bytes) -> None:
        self.check(ptr, len(data))
        self.traffic += len(data)
        ctypes.memmove(self.base + ptr, data, len(data))

    def write_u32(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<I", value))

    def write_u64(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def iovecs(self, iovs: int, n: int) -> list[tuple[int, int]]:
        if n > MAX_IOVECS:
            raise _Errno(EINVAL)
        return list(struct.iter_unpack("<II", self.read(iovs, 8 * n)))

    def iov_total(self, iovs: int, n: int) -> int:
        return sum(length for _, length in self.iovecs(iovs, n))

    def gather(self, iovs: int, n: int, limit: int) -> bytes:
        """At most `limit` bytes from the buffers, in order."""
        parts, left = [], limit
        for ptr, length in self.iovecs(iovs, n):
            if left <= 0:
                break
            parts.append(self.read(ptr, min(length, left)))
            left -= len(parts[-1])
        return b"".join(parts)

    def scatter(self, iovs: int, n: int, data: bytes) -> None:
        at = 0
        for ptr, length in self.iovecs(iovs, n):
            if at >= len(data):
                break
            chunk = data[at : at + length]
            self.write(ptr, chunk)
            at += len(chunk)


_NO_MEMORY = _Memory(None, None, 0)
