"""The flags that describe one invocation, shared by `poe run` (which executes it) and
`poe request` (which signs a customer's request for it), so both mean the same thing by them."""

from __future__ import annotations

import os
from typing import Any, Callable

import click

from poe.errors import ArgumentError
from ._options import read_file, read_link_options


def invocation_options(f: Callable) -> Callable:
    opts = [
        click.option("--invoke", "export", default=None, help="Export to call (default: _start, the WASI command entry point)."),
        click.option("--arg", "args", multiple=True, help="Argument: a wasm value if the export takes parameters (i32/i64/f32/f64), else an argv entry. Repeatable."),
        click.option("--env", "env", multiple=True, help="Environment entry KEY=VALUE for the guest. Repeatable."),
        click.option("--stdin", "stdin_path", default=None, help="File whose bytes are the guest's stdin ('-' reads poe's own stdin)."),
        click.option("--file", "files", multiple=True, help="NAME=PATH (or just PATH): a file the guest can read in its directory '.'. Repeatable."),
        click.option("--link", "links", multiple=True, help="NAME=OTHER.wasm: satisfy imports from module NAME with OTHER's exports. Repeatable."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _pairs(values: tuple[str, ...], what: str, *, name_optional: bool = False) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, rest = v.partition("=")
        if sep and name:
            out.append((name, rest))
        elif not sep and name_optional:
            out.append((os.path.basename(v), v))
        else:
            raise ArgumentError(f"{what} {v!r} must look like NAME=VALUE" + (" (the name before '=' is empty)" if sep else ""))
    return out


def read_service(module: str, links: tuple[str, ...]) -> Any:
    from poe.formats.moduleset import Service

    return Service(read_file(module, "module"), read_link_options(links), name=os.path.basename(module))


def invocation_from_flags(executor: Any, module: str, export: str | None, args: tuple[str, ...], env: tuple[str, ...],
                          stdin_path: str | None, files: tuple[str, ...], seed: bytes, *, stateful: bool = False) -> Any:
    from poe.formats.invocation import Payload
    from poe.provider.run import invocation_for

    file_map: dict[str, Payload] = {}
    for name, path in _pairs(files, "--file", name_optional=True):
        if name in file_map:
            raise ArgumentError(f"--file {name!r} given twice")
        file_map[name] = Payload(read_file(path, "input file"))
    return invocation_for(executor, export, args, argv0=os.path.basename(module), env=[f"{k}={v}" for k, v in _pairs(env, "--env")],
                          stdin=Payload(read_file(stdin_path, "stdin file") if stdin_path else b""), files=file_map,
                          seed=seed, stateful=stateful)
