"""The `poe` command line: a click group with one module per command."""

from __future__ import annotations

import importlib
import os
import traceback

import click

from poe import __version__
from poe.errors import PoEError
from ._options import emit_json


# Commands load on first use, so `poe --version` or `poe inspect` do not import wasmtime or a
# signature backend they never touch.
_COMMANDS = {
    "run": ("run", "run"), "inspect": ("inspect", "inspect_cmd"), "seal": ("seal", "seal"), "gc": ("gc", "gc"),
    "prove": ("prove", "prove"), "verify-proof": ("prove", "verify_proof"), "keygen": ("keygen", "keygen"),
    "pubkey": ("pubkey", "pubkey"), "attest": ("attest", "attest"), "verify-attestation": ("verify_attestation", "verify_attestation"),
    "claim": ("claim", "claim"), "challenge": ("challenge", "challenge"), "respond": ("respond", "respond"),
    "audit": ("audit", "audit_cmd"), "check-fraud-proof": ("check_fraud_proof", "check_fraud_proof_cmd"),
    "settle": ("settle", "settle_cmd"), "demo": ("demo", "demo"), "request": ("request", "request"),
    "deal": ("deal", "deal"), "bill": ("bill", "bill"), "receipts": ("receipts", "receipts"), "invoice": ("invoice", "invoice"),
    "serve": ("serve", "serve"),
}


class _Group(click.Group):
    """Maps poe's error tree to exit codes (docs/spec.md, exit codes) and keeps tracebacks out of sight."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name]
        return getattr(importlib.import_module(f"poe.cli.{module}"), attr)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        _poe_warnings_as_notes()
        try:
            return super().invoke(ctx)
        except PoEError as exc:
            click.echo(f"poe: error [{exc.code}]: {exc.message}", err=True)
            if ctx.meta.get("poe.json"):
                emit_json({"error": exc.to_json()})
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("poe: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback for users
            if os.environ.get("POE_DEBUG"):
                traceback.print_exc()
            click.echo(f"poe: internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo("poe: this is a bug in poe; set POE_DEBUG=1 to see the traceback and please report it", err=True)
            ctx.exit(4)


def _poe_warnings_as_notes() -> None:
    """poe's own warnings (a signature scheme on the slow reference, say) reach a user of the
    command line as one line, not as Python's file-and-source-line form."""
    import warnings

    shown = warnings.showwarning
    if getattr(shown, "poe_notes", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if category.__module__.startswith("poe."):
            click.echo(f"poe: note: {str(message).removeprefix('poe: ')}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    show.poe_notes = True  # type: ignore[attr-defined]
    warnings.showwarning = show


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poe")
def main() -> None:
    """poe: proof-of-execution metering for WebAssembly.

    A provider runs customers' Wasm functions with `poe run`: every invocation becomes a
    segment whose record (fuel, memory, payload bytes, outcome and digests) is the same
    bytes on every machine with the same cost model. `poe inspect` reads a store.
    `poe seal` commits an epoch in a Merkle sum tree; `poe prove` and `poe verify-proof`
    produce and check inclusion and consistency proofs. `poe demo` shows an honest and a
    cheating provider side by side.

    Exit codes: 0 ok, 1 verification failed or claim rejected, 2 usage, 3 bad input or I/O,
    4 internal error, 5 no fraud proven (check-fraud-proof).
    """
