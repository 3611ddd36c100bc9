"""The audit trail's hash chain: every row is linked to the one before it.

Each row of ``gray_release_log`` gets a sequence number and a hash of its own content and of
the previous row's hash, so that changing a row, deleting one or slipping one in without the
store breaks the chain at that row. The store keeps the chain's head (the last sequence number
and hash) beside the rows: deleting the newest rows is caught too, unless the head was moved
back with them; that, and deleting every row, only a checkpoint kept outside the database
shows (``grayrelease_core.checkpoint``).

Anyone who can write the database can also recompute a whole chain. With ``audit.key`` set
(a secret kept outside the database) the links are HMACs that only a holder of the key can
forge.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from .checkpoint import CheckpointCheck
from .errors import ValidationError
from .models import LogRecord
from .rules import positive_int, rules_object

GENESIS = "0" * 64
"""The "previous hash" of the first row."""
MIN_KEY = 16


def content(row: LogRecord, seq: int) -> bytes:
    """The row as the chain sees it: every stored field, in a canonical JSON form."""
    return json.dumps(
        {
            "seq": seq,
            "planId": row.plan_id,
            "appName": row.app_name,
            "environment": row.environment,
            "action": row.action,
            "actor": row.actor,
            "at": row.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "statusBefore": row.status_before.value if row.status_before else None,
            "statusAfter": row.status_after.value if row.status_after else None,
            "before": _plain(row.before),
            "after": _plain(row.after),
            "message": row.message,
            "details": _plain(row.details),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    ).encode()


def _plain(value: Any) -> Any:
    """JSON values as the database hands them back: any mapping a dict, any sequence a list."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def link(previous: str, row: LogRecord, seq: int, key: bytes | None) -> str:
    """The hash of row number ``seq``, chained to ``previous``."""
    message = previous.encode() + b"\n" + content(row, seq)
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


AUDIT_SETTINGS = ("key", "checkpoint_every")


def audit_key(section: Mapping[str, Any]) -> bytes | None:
    """The ``audit`` settings section's ``key`` (``None``: plain SHA-256 links)."""
    data = rules_object(section, allowed=AUDIT_SETTINGS, required=(), field="settings.audit")
    key = data.get("key")
    if key is None:
        return None
    if not isinstance(key, str) or len(key) < MIN_KEY:
        raise ValidationError(
            "settings.audit.key", f"must be a secret of at least {MIN_KEY} characters"
        )
    return key.encode()


def checkpoint_every(section: Mapping[str, Any]) -> int | None:
    """The ``audit`` settings section's ``checkpoint_every``: log a checkpoint of the chain
    to ``grayrelease.audit`` each time its length passes a multiple of it (``None``: never)."""
    data = rules_object(section, allowed=AUDIT_SETTINGS, required=(), field="settings.audit")
    every = data.get("checkpoint_every")
    if every is None:
        return None
    return positive_int(every, "settings.audit.checkpoint_every")


@attrs.frozen
class Break:
    """Where the chain stops holding."""

    problem: str
    """``altered``, ``deleted`` or ``inserted``."""
    log_id: int | None
    """The row where it shows (``None`` when the newest rows were deleted)."""
    seq: int | None
    """The sequence number expected there."""
    detail: str


@attrs.frozen
class AuditReport:
    """What ``verify`` found: ``ok``, or the first break (and how each checkpoint held)."""

    rows: int
    """Rows checked."""
    checked_at: datetime
    first_break: Break | None = None
    checkpoints: tuple[CheckpointCheck, ...] = ()
    """The checkpoints given to the check (``grayrelease_core.checkpoint``), in their order."""

    @property
    def ok(self) -> bool:
        return self.first_break is None and all(found.ok for found in self.checkpoints)

    def to_wire(self) -> dict[str, Any]:
        found = self.first_break
        wire: dict[str, Any] = {
            "ok": self.ok,
            "rows": self.rows,
            "checkedAt": self.checked_at.isoformat(),
            "firstBreak": None
            if found is None
            else {
                "problem": found.problem,
                "logId": found.log_id,
                "seq": found.seq,
                "detail": found.detail,
            },
        }
        if self.checkpoints:
            wire["checkpoints"] = [held.to_wire() for held in self.checkpoints]
        return wire


@attrs.frozen
class ChainedRow:
    """A stored audit row with its place in the chain, as ``verify`` reads it."""

    log_id: int
    seq: int | None
    hash: str | None
    row: LogRecord


def verify(
    rows: Iterable[ChainedRow],
    head: tuple[int, str],
    *,
    key: bytes | None,
    now: datetime,
) -> AuditReport:
    """Walk the chain in insertion order; the first row where it breaks, if any.

    ``head`` is the store's ``(last sequence number, last hash)``. A row changed in place
    shows at that row (or, when its hash was recomputed without the key, at the next one); a
    deleted row shows as a gap at the row after it (or at the head when it was the newest);
    a row added outside the store has no place in the chain, or one that is taken.
    """
    previous, expected, count = GENESIS, 1, 0
    for stored in rows:
        count += 1
        if stored.seq is None or stored.hash is None:
            return AuditReport(
                count,
                now,
                Break("inserted", stored.log_id, expected, "the row has no place in the chain"),
            )
        if stored.seq > expected:
            missing = (
                str(expected) if stored.seq == expected + 1 else f"{expected}-{stored.seq - 1}"
            )
            return AuditReport(
                count, now, Break("deleted", stored.log_id, expected, f"rows {missing} are gone")
            )
        if stored.seq < expected:
            return AuditReport(
                count,
                now,
                Break(
                    "inserted",
                    stored.log_id,
                    expected,
                    f"sequence number {stored.seq} is there twice",
                ),
            )
        if link(previous, stored.row, stored.seq, key) != stored.hash:
            return AuditReport(
                count,
                now,
                Break(
                    "altered",
                    stored.log_id,
                    expected,
                    "the row (or the one before it) no longer matches its hash",
                ),
            )
        previous, expected = stored.hash, expected + 1
    last = expected - 1
    head_seq, head_hash = head
    if head_seq > last:
        return AuditReport(
            count,
            now,
            Break("deleted", None, last + 1, f"the newest rows {last + 1}-{head_seq} are gone"),
        )
    if head_seq < last:
        return AuditReport(
            count,
            now,
            Break("inserted", None, head_seq + 1, "rows after the chain's head were added"),
        )
    if head_hash != previous:
        return AuditReport(
            count, now, Break("altered", None, last, "the newest row no longer matches the head")
        )
    return AuditReport(count, now)
