"""The `poe` command line: a click group with one module per command."""

from __future__ import annotations

import os
import traceback

import click

from poe import __version__
from poe.errors import PoEError
from ._options import emit_json


class _Group(click.Group):
    """Maps poe's error tree to exit codes (DESIGN §7) and keeps tracebacks out of sight."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
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

    Exit codes: 0 ok, 1 verification failed, 2 usage, 3 bad input or I/O, 4 internal error.
    """


from . import demo as _demo  # noqa: E402
from . import inspect as _inspect  # noqa: E402
from . import attest as _attest  # noqa: E402
from . import audit as _audit  # noqa: E402
from . import challenge as _challenge  # noqa: E402
from . import check_fraud_proof as _check_fraud_proof  # noqa: E402
from . import claim as _claim  # noqa: E402
from . import gc as _gc  # noqa: E402
from . import keygen as _keygen  # noqa: E402
from . import prove as _prove  # noqa: E402
from . import pubkey as _pubkey  # noqa: E402
from . import respond as _respond  # noqa: E402
from . import run as _run  # noqa: E402
from . import seal as _seal  # noqa: E402
from . import settle as _settle  # noqa: E402
from . import verify_attestation as _verify_attestation  # noqa: E402

main.add_command(_run.run)
main.add_command(_inspect.inspect_cmd)
main.add_command(_seal.seal)
main.add_command(_gc.gc)
main.add_command(_prove.prove)
main.add_command(_prove.verify_proof)
main.add_command(_keygen.keygen)
main.add_command(_pubkey.pubkey)
main.add_command(_attest.attest)
main.add_command(_verify_attestation.verify_attestation)
main.add_command(_claim.claim)
main.add_command(_challenge.challenge)
main.add_command(_respond.respond)
main.add_command(_audit.audit_cmd)
main.add_command(_check_fraud_proof.check_fraud_proof_cmd)
main.add_command(_settle.settle_cmd)
main.add_command(_demo.demo)
