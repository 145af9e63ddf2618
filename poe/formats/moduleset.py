"""The module set (spec §5): a main module and the modules linked to it by import name."""

from __future__ import annotations

import struct
from typing import Mapping

from poe.formats import hashing as h
from poe.errors import ModuleError

__all__ = ["Service", "WASI_MODULE"]

# The import module name of WASI preview1: no linked module may take it.
WASI_MODULE = "wasi_snapshot_preview1"


class Service:
    """A main module and the modules whose exports satisfy its imports, by import name."""

    def __init__(self, main: bytes, links: Mapping[str, bytes] | None = None, *, name: str = "main") -> None:
        self.main = bytes(main)
        self.links = {k: bytes(v) for k, v in sorted((links or {}).items())}
        self.name = name
        for link in self.links:
            if not link or link == WASI_MODULE:
                raise ModuleError(f"cannot link a module under the name {link!r}")

    @property
    def digest(self) -> bytes:
        """Module-set digest: the main module's and every linked module's BLAKE3, by name."""
        parts = [h.blob_digest(self.main)]
        for name, wasm in self.links.items():
            raw = name.encode()
            parts.append(struct.pack("<H", len(raw)) + raw + h.blob_digest(wasm))
        return h.digest(h.CTX_MODULE_SET, b"".join(parts))

    def module_digests(self) -> dict[str, str]:
        out = {"": h.blob_digest(self.main).hex()}
        out.update({name: h.blob_digest(w).hex() for name, w in self.links.items()})
        return out
