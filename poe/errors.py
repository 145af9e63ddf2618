"""The one exception tree of poe.

Every error poe raises on purpose derives from :class:`PoEError` and carries a stable
``code`` (a short dotted string that scripts may match on; it never changes meaning) and
the CLI exit status it maps to (docs/spec.md §12.4: 1 verification failed, 3 bad input or I/O,
4 internal). Verification failures are :class:`VerificationError` subclasses that carry the
expected and the observed value, so a caller can show both without parsing messages.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PoEError",
    "InputError",
    "ModuleError",
    "UnknownImportError",
    "ExportNotFoundError",
    "StatefulModuleError",
    "ArgumentError",
    "EncodingError",
    "LimitError",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
    "StateUnavailableError",
    "CostModelMismatchError",
    "VerificationError",
    "NotProvenError",
    "RecordMismatchError",
    "StateMismatchError",
    "StateChainError",
    "SumOverflowError",
    "ProofError",
    "RootMismatchError",
    "InclusionProofError",
    "ConsistencyProofError",
    "RangeProofError",
    "BillOrderError",
    "SignatureError",
    "BatchVerificationError",
    "KeyFormatError",
    "KeyFileError",
    "PassphraseError",
    "BackendError",
    "ChainError",
    "InternalError",
]


class PoEError(Exception):
    """Root of every error poe raises on purpose."""

    code: str = "poe.error"
    exit_code: int = 4

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for key, value in self.details.items():
            out[key] = value.hex() if isinstance(value, (bytes, bytearray)) else value
        return out


class InputError(PoEError):
    """Something the user gave poe (a file, a flag value, an encoding) is unusable."""

    code = "input.invalid"
    exit_code = 3


class ModuleError(InputError):
    """Not a WebAssembly module, a truncated one, or one the engine refuses."""

    code = "module.invalid"


class UnknownImportError(ModuleError):
    """The module imports something neither poe's host nor a linked module provides."""

    code = "module.unknown-import"


class ExportNotFoundError(ModuleError):
    """The export to invoke does not exist or is not a function."""

    code = "module.missing-export"


class StatefulModuleError(ModuleError):
    """A module whose mutable state a snapshot cannot capture (tables, dropped segments, links)."""

    code = "module.not-stateful"


class ArgumentError(InputError):
    """Invocation arguments that do not fit the export's signature."""

    code = "invocation.bad-argument"


class EncodingError(InputError):
    """Bytes that do not decode as the canonical encoding they claim to be."""

    code = "encoding.malformed"


class LimitError(InputError):
    """A limit or cost-model setting that is out of range or would allow overflow."""

    code = "limits.invalid"


class StoreError(PoEError):
    """The trace store cannot be opened, read or written."""

    code = "store.io"
    exit_code = 3


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock."""

    code = "store.locked"


class StoreVersionError(StoreError):
    """The store was written by a newer (or unknown) poe format version."""

    code = "store.version"


class StateUnavailableError(StoreError):
    """A state the store should hold is missing (a chunk, a delta, a collected snapshot)."""

    code = "state.unavailable"


class CostModelMismatchError(PoEError):
    """The cost model in force differs from the one a store, record or claim was made under.

    Fuel counts differ across wasmtime releases and configurations, so a verifier that cannot
    reproduce the claimed cost model must refuse instead of comparing incomparable numbers.
    """

    code = "cost-model.mismatch"
    exit_code = 3

    def __init__(self, message: str, *, expected: str, observed: str) -> None:
        super().__init__(message, expected=expected, observed=observed)
        self.expected = expected
        self.observed = observed


class VerificationError(PoEError):
    """A check of provider-supplied data failed. Carries expected vs observed values."""

    code = "verify.failed"
    exit_code = 1

    def __init__(self, message: str, *, expected: Any = None, observed: Any = None, **details: Any) -> None:
        super().__init__(message, expected=expected, observed=observed, **details)
        self.expected = expected
        self.observed = observed


class NotProvenError(VerificationError):
    """A well-formed fraud proof that proves nothing: the record re-executes as committed, or the
    states chain. Its own exit status (5), so a script can tell "no fraud here" from "the proof
    itself does not verify" (1)."""

    code = "fraud.not-proven"
    exit_code = 5


class RecordMismatchError(VerificationError):
    """A re-executed segment's record differs from the committed one."""

    code = "verify.record-mismatch"


class StateMismatchError(VerificationError):
    """A snapshot that does not hash to the state root it claims (memory image, globals, clock)."""

    code = "state.mismatch"


class StateChainError(VerificationError):
    """Adjacent stateful segments that do not chain: a segment's pre-state is not its
    predecessor's post-state (a forged pre-state or a skipped step)."""

    code = "state.chain-broken"


class SumOverflowError(InputError):
    """Adding metered quantities would reach 2^128: the data cannot be committed (never wraps)."""

    code = "merkle.sum-overflow"


class ProofError(VerificationError):
    """A Merkle proof that is malformed or does not verify."""

    code = "merkle.proof-invalid"


class RootMismatchError(ProofError):
    """A proof verifies to a root other than the claimed one (hash or sums)."""

    code = "merkle.root-mismatch"

    def __init__(self, message: str, *, expected: object, calculated: object, **details: object) -> None:
        super().__init__(message, expected=expected, observed=calculated, **details)
        self.calculated = calculated


class InclusionProofError(ProofError):
    """An inclusion proof with the wrong index, size or path length for its tree."""

    code = "merkle.inclusion-invalid"


class ConsistencyProofError(ProofError):
    """A consistency proof that cannot show the new tree extends the old one."""

    code = "merkle.consistency-invalid"


class RangeProofError(ProofError):
    """A range proof whose range, leaves or path do not fit its tree."""

    code = "merkle.range-invalid"


class BillOrderError(ProofError):
    """A bill tree (spec §14.2) whose keys are out of (customer, sequence) order where a proof
    climbs: a request billed twice, or an order forged to hide one."""

    code = "merkle.bill-order"


class SignatureError(VerificationError):
    """A signature that does not verify under its key and message, or bytes that are no signature.

    ``expected`` is the identity that should have signed; ``observed`` is the identity the signature
    recovers to where the scheme allows recovery (secp256k1), else None.
    """

    code = "attest.bad-signature"


class BatchVerificationError(SignatureError):
    """Some signatures of a batch do not verify; ``bad_indices`` names them (0-based, ascending)."""

    code = "attest.batch-failed"

    def __init__(self, message: str, *, bad_indices: list[int], **details: Any) -> None:
        bad = sorted(bad_indices)
        super().__init__(message, bad_indices=bad, **details)
        self.bad_indices = bad


class KeyFormatError(InputError):
    """A secret or public key that is not a valid key of its scheme (length, encoding, range,
    subgroup, or the identity point)."""

    code = "attest.bad-key"


class KeyFileError(InputError):
    """A key file that cannot be used: missing, malformed, readable by others, or in the way."""

    code = "attest.key-file"


class PassphraseError(KeyFileError):
    """The passphrase does not open the key file (its authentication tag does not match)."""

    code = "attest.bad-passphrase"


class BackendError(InputError):
    """The signature backend asked for (``POE_CRYPTO_BACKEND``) is unknown or cannot be loaded."""

    code = "crypto.backend"


class ChainError(VerificationError):
    """Attested epochs that do not form one history: a gap, a replay, a fork or equivocation."""

    code = "attest.chain-broken"


class InternalError(PoEError):
    """A bug in poe, not in the input. Please report it."""

    code = "internal"
    exit_code = 4
