"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from poe.errors import InputError

if TYPE_CHECKING:
    from poe.formats.costmodel import Limits

def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    # Errors are reported by the group, which must know whether to add JSON on stdout.
    ctx.meta["poe.json"] = value
    return value


json_option = click.option(
    "--json", "as_json", is_flag=True, callback=_remember_json,
    help="Print machine-readable JSON on stdout (messages stay on stderr).",
)


def limit_options(f: Callable) -> Callable:
    """Per-segment limits; they are part of the cost model, so a store keeps the ones it was made with."""
    from poe.formats.costmodel import Limits  # only commands that take limits pay for the import

    defaults = Limits()
    opts = [
        click.option("--fuel", type=click.IntRange(min=1), default=None,
                     help=f"Fuel limit per segment (default {defaults.fuel:,}); running out is the outcome out-of-fuel."),
        click.option("--max-memory-pages", type=click.IntRange(1, 65536), default=None,
                     help=f"Linear-memory limit per memory in 64 KiB pages (default {defaults.memory_pages}); exceeding it is the outcome memory-limit."),
        click.option("--max-output", type=click.IntRange(min=1), default=None,
                     help=f"Limit on captured stdout+stderr bytes per segment (default {defaults.output_bytes:,}); exceeding it is the outcome output-limit."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def limits_from(fuel: int | None, max_memory_pages: int | None, max_output: int | None) -> Limits | None:
    """The limits the user asked for, or None when no limit flag was given."""
    if fuel is None and max_memory_pages is None and max_output is None:
        return None
    from poe.formats.costmodel import Limits

    d = Limits()
    return Limits(
        fuel=fuel if fuel is not None else d.fuel,
        memory_pages=max_memory_pages if max_memory_pages is not None else d.memory_pages,
        output_bytes=max_output if max_output is not None else d.output_bytes,
    )


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def info(message: str = "") -> None:
    click.echo(message, err=True)


def read_file(path: str, what: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None


def human(n: int) -> str:
    """1234567 -> '1.23M' for summaries; exact figures are in --json."""
    for unit, size in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def passphrase_option(f: Callable) -> Callable:
    return click.option(
        "--passphrase-file", type=click.Path(dir_okay=False), default=None,
        help="File whose first line is the key's passphrase (else $POE_PASSPHRASE, else a prompt on a terminal).",
    )(f)


def read_passphrase(path: str | None, *, confirm: bool = False, required: bool = True) -> bytes | None:
    """The passphrase from a file, $POE_PASSPHRASE, or an interactive prompt, in that order."""
    import os
    import sys

    if path is not None:
        text = read_file(path, "passphrase file").decode("utf-8", "surrogateescape").splitlines()
        if not text or not text[0]:
            raise InputError(f"passphrase file {path} is empty")
        return text[0].encode("utf-8", "surrogateescape")
    if os.environb.get(b"POE_PASSPHRASE"):
        return os.environb[b"POE_PASSPHRASE"]
    if sys.stdin.isatty():
        return click.prompt("passphrase", hide_input=True, confirmation_prompt=confirm, err=True).encode()
    if required:
        raise InputError("a passphrase is needed: use --passphrase-file or set POE_PASSPHRASE")
    return None


def load_json(path: str, what: str):
    """A JSON document from a file ('-' for stdin), or a clear EncodingError."""
    import json

    from poe.errors import EncodingError

    try:
        return json.loads(read_file(path, what))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EncodingError(f"{path} is not valid JSON ({exc})") from None


def write_output(path: str | None, text: str, what: str) -> None:
    """Write to a new file, whole or not at all (never over an existing one), or to stdout without a path."""
    if path is None:
        click.echo(text, nl=False)
        return
    from poe._io import write_new

    write_new(path, text.encode(), what)
    info(f"poe: wrote {what} to {path}")


def read_link_options(links: tuple[str, ...]) -> dict[str, bytes]:
    """--link NAME=OTHER.wasm, as every command that takes it reads it."""
    out: dict[str, bytes] = {}
    for spec in links:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            from poe.errors import ArgumentError

            raise ArgumentError(f"--link {spec!r} must look like NAME=OTHER.wasm")
        if name in out:
            from poe.errors import ArgumentError

            raise ArgumentError(f"--link {name!r} given twice")
        out[name] = read_file(path, f"linked module {name!r}")
    return out


def read_deal(path: str):
    """A deal file, JSON or (by its .toml name) TOML."""
    import os

    from poe.protocol.deal import Deal

    return Deal.load_text(read_file(path, "deal"), os.path.basename(path))


def fail_verification(message: str, as_json: bool) -> None:
    """Exit 1 for a check that failed after its result was printed: with --json, the document
    already on stdout says what failed, so the message goes to stderr and no second document
    follows; otherwise the usual error line."""
    from poe.errors import VerificationError

    if as_json:
        info(f"poe: {message}")
        raise click.exceptions.Exit(1)
    raise VerificationError(message)
