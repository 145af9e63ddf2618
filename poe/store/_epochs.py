"""Epochs and proofs: sealing leaf ranges of the log, tree heads, inclusion and consistency proofs.

The tree covers the whole log; an epoch is the leaf range [first, end). An epoch is open while
it receives segments, closed once its end is fixed (in the transaction that also opens the next,
so a writer's batch lands wholly on one side), and sealed once its tree head is stored.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from poe.errors import InputError, StoreError, VerificationError
from poe.formats.record import Record
from poe.merkle.build import ANONYMOUS, BillEntry, CompactRange, Tree, bill_tree, leaves_of_records, perfect_root, tree_of_records
from poe.merkle.hasher import Root, Sums
from poe.merkle.verify import ConsistencyProof, InclusionProof

from ._connection import Connection, as_bytes, check_number


@dataclass(frozen=True)
class Epoch:
    epoch: int
    first_index: int
    end_index: int | None
    status: str
    root: Root | None
    frontier: CompactRange | None


@dataclass(frozen=True)
class SealResult:
    epoch: int
    first_index: int
    end_index: int
    root: Root
    previous_root: Root | None
    already: bool

    @property
    def totals(self) -> Sums:
        """The epoch's own totals: this head's sums minus the previous head's."""
        return self.root.sums - self.previous_root.sums if self.previous_root else self.root.sums

    def to_json(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "leaf_range": [self.first_index, self.end_index],
            "segments": self.end_index - self.first_index,
            "root": self.root.to_json(),
            "previous_root": self.previous_root.to_json() if self.previous_root else None,
            "epoch_totals": self.totals.to_json(),
            "already_sealed": self.already,
        }


@dataclass
class Totals:
    segments: int = 0
    fuel: int = 0
    mem: int = 0
    io: int = 0

    def add(self, r: Record) -> None:
        self.segments += 1
        self.fuel += r.fuel
        self.mem += r.mem
        self.io += r.io

    def to_json(self) -> dict[str, int]:
        return {"segments": self.segments, "fuel": self.fuel, "mem": self.mem, "io": self.io}


class Epochs(Connection):
    def epochs(self) -> list[dict[str, object]]:
        rows = self._read(
            "SELECT e.epoch, e.first_index, e.status, COUNT(s.idx), e.root FROM epochs e "
            "LEFT JOIN segments s ON s.epoch = e.epoch GROUP BY e.epoch ORDER BY e.epoch"
        )
        out = []
        for e, f, st, n, root in rows:
            entry: dict[str, object] = {"epoch": e, "first_index": f, "status": st, "segments": n}
            if root is not None:
                entry["root"] = Root.decode(as_bytes(root)).to_json()
            out.append(entry)
        return out

    def epoch_info(self, epoch: int) -> Epoch:
        check_number(epoch, "epoch", self.path)
        row = self._read(
            "SELECT epoch, first_index, end_index, status, root, frontier FROM epochs WHERE epoch = ?", (epoch,)
        ).fetchone()
        if row is None:
            (last,) = self._read("SELECT MAX(epoch) FROM epochs").fetchone()
            raise InputError(f"store has no epoch {epoch}" + (f" (its epochs are 0..{last})" if last is not None else ""))
        e, first, end, status, root, frontier = row
        return Epoch(
            e, first, end, status,
            Root.decode(as_bytes(root)) if root is not None else None,
            CompactRange.decode(as_bytes(frontier)) if frontier is not None else None,
        )

    def latest_sealed_epoch(self) -> int:
        (epoch,) = self._read("SELECT MAX(epoch) FROM epochs WHERE status = 'sealed'").fetchone()
        if epoch is None:
            raise StoreError(f"store {self.path} has no sealed epoch yet; run `poe seal` first")
        return int(epoch)

    def seal(self, epoch: int | None = None) -> SealResult:
        """Close `epoch` (default: the open one), commit its segments and record the tree head.

        Sealing extends the previous epoch's compact range by this epoch's leaves only. Sealing a
        sealed epoch recomputes it: the same root is reported as such, a different one refuses.
        With no segments since the last seal, the default seals nothing new and reports the
        head instead: an empty epoch would be billable (a subscription), and two sealers racing
        must not make one. Naming an open epoch that has no segments is refused.

        A writer's own queued segments are flushed first, so they land in the epoch it seals.
        """
        self.flush()
        target = self._close(self.current_epoch(), head_if_empty=True) if epoch is None else self._close_named(epoch)
        info = self.epoch_info(target)
        previous = self._sealed_before(target)
        frontier = CompactRange.decode(previous.frontier.encode()) if previous and previous.frontier else CompactRange()
        if info.end_index is None:
            raise StoreError(f"epoch {target} is {info.status} but has no end; the store is damaged")
        if frontier.size != info.first_index:
            raise StoreError(f"epoch {target} starts at {info.first_index} but the log before it has {frontier.size} segments")
        frontier.extend_records(self._record_bytes(info.first_index, info.end_index), perfect_root)
        root = frontier.root
        result = SealResult(target, info.first_index, info.end_index, root, previous.root if previous else None, already=True)
        if info.status != "sealed":
            with self._transaction():
                sealed_now = self._db.execute(
                    "UPDATE epochs SET status = 'sealed', root = ?, frontier = ?, sealed_at = ? WHERE epoch = ? AND status = 'closed'",
                    (root.encode(), frontier.encode(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), target),
                ).rowcount
            if sealed_now:
                return dataclasses.replace(result, already=False)
            info = self.epoch_info(target)  # another sealer stored its head in the meantime
        if info.root != root:
            raise VerificationError(
                f"epoch {target} was sealed with another root: the store's segments changed after sealing",
                expected=info.root.to_json() if info.root else None, observed=root.to_json(),
            )
        return result

    def _close_named(self, epoch: int) -> int:
        if self.epoch_info(epoch).status == "open":
            return self._close(epoch)
        return epoch

    def _sealed_before(self, target: int) -> Epoch | None:
        # The tree extends the previous head, so that one is sealed first.
        if target == 0:
            return None
        previous = self.epoch_info(target - 1)
        if previous.status != "sealed":
            self.seal(target - 1)
            previous = self.epoch_info(target - 1)
        return previous

    def _close(self, epoch: int, *, head_if_empty: bool = False) -> int:
        """Close open epoch `epoch` and open the next; return the epoch to seal.

        The emptiness check and the close are one transaction (BEGIN IMMEDIATE), so no batch and
        no other sealer can come between them. An open epoch without segments after an earlier
        one is not closed: with `head_if_empty` the earlier one (the head) is returned, else
        this refuses.
        """
        with self._transaction():
            row = self._db.execute("SELECT status, first_index FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
            if row is None:
                raise InputError(f"store has no epoch {epoch}")
            if row[0] != "open":
                return epoch
            (end,) = self._db.execute(
                "SELECT COALESCE(MAX(idx) + 1, ?) FROM segments WHERE epoch = ?", (row[1], epoch)
            ).fetchone()
            if end == row[1] and epoch > 0:
                if head_if_empty:
                    return epoch - 1
                raise StoreError(f"epoch {epoch} has no segments yet: nothing to seal (epoch {epoch - 1} is the latest)")
            self._db.execute("UPDATE epochs SET status = 'closed', end_index = ? WHERE epoch = ?", (end, epoch))
            self._db.execute("INSERT INTO epochs(epoch, first_index, status) VALUES (?, ?, 'open')", (epoch + 1, end))
        return epoch

    def _record_bytes(self, first: int, end: int) -> bytes:
        """The records of segments first..end-1, concatenated; every one must be there."""
        parts = []
        for idx, raw in self._read("SELECT idx, record FROM segments WHERE idx >= ? AND idx < ? ORDER BY idx", (first, end)):
            if idx != first + len(parts):
                raise StoreError(f"the log is missing segment {first + len(parts)}")
            parts.append(as_bytes(raw))
        if len(parts) != end - first:
            raise StoreError(f"the log should hold segments {first}..{end - 1}, found {len(parts)}")
        return b"".join(parts)

    def tree(self, size: int) -> Tree:
        """The full tree over the first `size` segments of the log (for proofs)."""
        check_number(size, "segment", self.path)
        return tree_of_records(self._record_bytes(0, size))

    def sealed_epoch_for(self, index: int) -> Epoch:
        check_number(index, "segment", self.path)
        row = self._read(
            "SELECT epoch FROM epochs WHERE status = 'sealed' AND end_index > ? ORDER BY epoch LIMIT 1", (index,)
        ).fetchone()
        if row is None:
            raise StoreError(f"segment {index} is in no sealed epoch yet; run `poe seal` first")
        return self.epoch_info(row[0])

    def inclusion_proof(self, index: int, epoch: int | None = None) -> tuple[bytes, InclusionProof, Root]:
        """Record bytes, inclusion proof and the root it verifies against (a sealed epoch's head)."""
        info = self.sealed_epoch_for(index) if epoch is None else self.epoch_info(epoch)
        ((raw, proof),) = self.inclusion_proofs([index], info.epoch)
        assert info.root is not None  # inclusion_proofs refuses an unsealed epoch
        return raw, proof, info.root

    def inclusion_proofs(self, indices: list[int], epoch: int) -> list[tuple[bytes, InclusionProof]]:
        """Proofs for many segments against one sealed epoch's head, building the tree once."""
        info = self.epoch_info(epoch)
        if info.root is None:
            raise StoreError(f"epoch {info.epoch} is not sealed; run `poe seal` first")
        for i in indices:
            check_number(i, "segment", self.path)
        late = [i for i in indices if i >= info.root.size]
        if late:
            raise StoreError(f"segment {late[0]} comes after epoch {info.epoch}, which ends at {info.root.size}")
        tree = self.tree(info.root.size)
        out = []
        for index in indices:
            raw = as_bytes(self._read("SELECT record FROM segments WHERE idx = ?", (index,)).fetchone()[0])
            out.append((raw, InclusionProof(index, tree.size, tuple(tree.inclusion_path(index)))))
        return out

    def bill(self, epoch: int) -> tuple[list[BillEntry], Tree]:
        """Sealed epoch `epoch`'s bill tree (spec §14.2): one leaf per segment, sorted by
        (customer, sequence), computed from the log and the request table whenever asked."""
        info = self.epoch_info(epoch)
        if info.root is None or info.end_index is None:
            raise StoreError(f"epoch {info.epoch} is not sealed; run `poe seal` first")
        first, end = info.first_index, info.end_index
        nodes = leaves_of_records(self._record_bytes(first, end))
        asked = {}
        if self._has_table("requests"):
            for customer, sequence, idx in self._read("SELECT customer, sequence, idx FROM requests WHERE idx >= ? AND idx < ?", (first, end)):
                asked[int(idx)] = (as_bytes(customer), int.from_bytes(as_bytes(sequence), "big"))
        entries = [BillEntry(*asked.get(first + i, (ANONYMOUS, first + i)), first + i, n) for i, n in enumerate(nodes)]
        return bill_tree(entries)

    def _has_table(self, name: str) -> bool:
        return self._read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def consistency_proof(self, old_epoch: int, new_epoch: int) -> tuple[Root, Root, ConsistencyProof]:
        old, new = self.epoch_info(old_epoch), self.epoch_info(new_epoch)
        if old.root is None or new.root is None:
            raise StoreError("both epochs must be sealed; run `poe seal` first")
        if old.root.size > new.root.size:
            raise StoreError(f"epoch {old_epoch} is not older than epoch {new_epoch}")
        if old.root.size == 0 or old.root.size == new.root.size:
            path: tuple = ()
        else:
            path = tuple(self.tree(new.root.size).consistency_path(old.root.size))
        return old.root, new.root, ConsistencyProof(old.root.size, new.root.size, path)

    def summary(self, epoch: int | None = None) -> tuple[Totals, dict[str, int]]:
        if epoch is not None:
            self.epoch_info(epoch)  # an epoch that does not exist is no epoch with zero totals
        totals, outcomes = Totals(), {}
        for r in self.records(epoch):
            totals.add(r)
            key = r.describe_outcome()
            outcomes[key] = outcomes.get(key, 0) + 1
        return totals, outcomes
