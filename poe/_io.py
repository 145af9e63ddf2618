"""Files that appear whole or not at all.

Every document poe writes (attestations, claims, openings, verdicts, payouts, proofs, keys) goes
through `write_new`: the bytes go to a temporary file in the target's directory, are fsynced,
and are then linked to the target name, which fails if the name exists. A crash at any point
leaves either no file or the whole file, never an empty or half one, and never a clobbered one.
"""

from __future__ import annotations

import errno
import os
import tempfile

from poe.errors import InputError

__all__ = ["write_new"]


def write_new(path: str, data: bytes, what: str, *, mode: int = 0o644) -> None:
    """Create `path` holding exactly `data`; refuse (InputError) if it exists or cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".poe-", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # atomic, and refuses an existing name (rename would replace it)
        _fsync_dir(directory)
    except FileExistsError:
        raise InputError(f"{path} already exists; not overwriting the {what}") from None
    except OSError as exc:
        reason = {errno.ENOENT: "its directory does not exist", errno.ENOSPC: "the disk is full",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}.get(exc.errno, exc.strerror)
        raise InputError(f"cannot write the {what} to {path}: {reason}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
