"""Gray hits buffered in memory and written to the store in batches.

The read path records a hit with a dict lookup and no lock. Each instance's record is
cumulative and remembers how much of it was already written, so a failed write is simply
retried by the next flush and an instance, once recorded, is never lost.
"""

from __future__ import annotations

import threading
from datetime import datetime

from .models import InstanceHits


class HitRecord:
    """One instance's gray hits for one plan, since this process started serving the plan."""

    __slots__ = ("count", "first_seen", "instance_ip", "last_seen", "written")

    def __init__(self, instance_ip: str, now: datetime) -> None:
        self.instance_ip = instance_ip
        self.first_seen = now
        self.last_seen = now
        self.count = 1
        self.written = 0


Tracker = dict[str, HitRecord]
"""``instance_id -> record`` for one plan."""


class HitBuffer:
    """Per-plan trackers of the instances that got a gray value."""

    def __init__(self) -> None:
        self._trackers: dict[str, Tracker] = {}
        self.flush_lock = threading.Lock()
        """Held while pending hits are written, so two flushes never write one delta twice."""

    def tracker(self, plan_id: str) -> Tracker:
        """The (shared, mutable) tracker the read path records into for ``plan_id``."""
        return self._trackers.setdefault(plan_id, {})

    def pending(self, plan_id: str | None = None) -> list[InstanceHits]:
        """Hits not yet written, for one plan or all; call under ``flush_lock``."""
        plans = [plan_id] if plan_id is not None else list(self._trackers)
        out: list[InstanceHits] = []
        for pid in plans:
            for instance_id, record in list(self._trackers.get(pid, {}).items()):
                delta = record.count - record.written
                if delta > 0:
                    out.append(
                        InstanceHits(
                            plan_id=pid,
                            instance_id=instance_id,
                            instance_ip=record.instance_ip,
                            first_seen=record.first_seen,
                            last_seen=record.last_seen,
                            hits=delta,
                        )
                    )
        return out

    def mark_written(self, hits: list[InstanceHits]) -> None:
        """Remember that ``hits`` reached the store; call under ``flush_lock``.

        Records written in full are dropped, so memory holds only the instances seen since
        the last flush (the store has the rest). A hit that races the drop loses its count,
        never its instance: the instance's row is already stored.
        """
        for hit in hits:
            tracker = self._trackers.get(hit.plan_id, {})
            record = tracker.get(hit.instance_id)
            if record is not None:
                record.written += hit.hits
                if record.written >= record.count:
                    tracker.pop(hit.instance_id, None)

    def forget(self, keep: set[str]) -> None:
        """Drop the trackers of plans not in ``keep`` whose hits were all written."""
        for plan_id in list(self._trackers):
            records = list(self._trackers[plan_id].values())
            if plan_id not in keep and all(r.count == r.written for r in records):
                del self._trackers[plan_id]

    def instance_ids(self, plan_id: str) -> set[str]:
        """Instances recorded in memory for ``plan_id`` (written or not)."""
        return set(self._trackers.get(plan_id, {}))
