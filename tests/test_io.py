"""Output files appear whole or not at all, and never replace an existing file."""

from __future__ import annotations

import errno
import os

import pytest

from poe import _io
from poe.errors import InputError


def _leftovers(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".poe-")]


def test_written_file_holds_exactly_the_bytes(tmp_path):
    _io.write_new(str(tmp_path / "a.json"), b"{}\n" * 1000, "document")
    assert (tmp_path / "a.json").read_bytes() == b"{}\n" * 1000 and _leftovers(tmp_path) == []


def test_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "a.json").write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        _io.write_new(str(tmp_path / "a.json"), b"new", "document")
    assert (tmp_path / "a.json").read_bytes() == b"precious" and _leftovers(tmp_path) == []


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "disk is full"), (errno.EIO, "cannot write the document")])
def test_a_write_that_fails_midway_leaves_no_file(tmp_path, monkeypatch, code, words):
    real = os.write
    calls = []

    def failing(fd, data):
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(code, os.strerror(code))
        return real(fd, bytes(data)[:10])  # a short first write, then the failure

    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(InputError, match=words):
        _io.write_new(str(tmp_path / "a.json"), b"x" * 100, "document")
    assert not (tmp_path / "a.json").exists() and _leftovers(tmp_path) == []


def test_a_crash_before_the_link_leaves_no_file(tmp_path, monkeypatch):
    def crash(*_):
        raise KeyboardInterrupt  # like a kill between fsync and link: the name never appears

    monkeypatch.setattr(os, "link", crash)
    with pytest.raises(KeyboardInterrupt):
        _io.write_new(str(tmp_path / "a.json"), b"x", "document")
    assert not (tmp_path / "a.json").exists() and _leftovers(tmp_path) == []


def test_a_missing_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="directory does not exist"):
        _io.write_new(str(tmp_path / "no" / "a.json"), b"x", "document")


def test_a_read_only_file_system_is_an_input_error(tmp_path, monkeypatch):
    def refuse(*_a, **_k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    with pytest.raises(InputError, match="read-only"):
        _io.write_new(str(tmp_path / "a.json"), b"x", "document")


def test_file_mode_is_applied(tmp_path):
    _io.write_new(str(tmp_path / "k"), b"secret", "key", mode=0o600)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
