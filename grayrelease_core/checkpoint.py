"""Checkpoints of the audit chain's head, kept outside the database.

The chain alone cannot show that its newest rows were deleted and the head moved back to the
last row kept, nor that every row was deleted and the head reset: the database then holds a
shorter (or empty) chain that is whole. A checkpoint is the head as it was at one moment (its
sequence number and hash), copied out of the database by the operator (``grayrelease audit
checkpoint``, the ``grayrelease.audit`` log). While the chain still holds a row with that
number and that hash, every row up to it is there and unchanged, because the hash covers
them all; when it does not, rows were removed or rewritten.

With ``audit.key`` a checkpoint is signed, so one read back from a place that others can
write (a shared log stream) is told apart from a forged one. A forged checkpoint can only
raise a false alarm, never hide a change: checkpoints only add ways for a check to fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from .errors import ValidationError
from .wire import parse_time

MAX_SEQ = 2**63 - 1
"""The largest sequence number a BIGINT column holds."""
SIGNED = b"grayrelease audit checkpoint\n"
"""Prefix of what a checkpoint's HMAC covers: a link of the chain can never pass for one."""


def _signature(seq: int, row_hash: str, at: datetime, key: bytes) -> str:
    body = json.dumps(
        {"seq": seq, "rowHash": row_hash, "at": _iso(at)}, sort_keys=True, separators=(",", ":")
    )
    return hmac.new(key, SIGNED + body.encode(), hashlib.sha256).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@attrs.frozen
class Checkpoint:
    """The chain's head at one moment, as the operator keeps it."""

    seq: int
    """The newest row's sequence number then (0: the chain was empty)."""
    row_hash: str
    """That row's hash (the genesis hash for an empty chain)."""
    at: datetime
    """When the checkpoint was taken."""
    signature: str | None = None
    """HMAC-SHA256 of the three fields above with ``audit.key``; ``None`` without a key."""

    @classmethod
    def take(cls, seq: int, row_hash: str, at: datetime, key: bytes | None) -> Checkpoint:
        """A checkpoint of the head ``(seq, row_hash)``, signed when there is a key."""
        signature = _signature(seq, row_hash, at, key) if key else None
        return cls(seq, row_hash, at, signature)

    def signed_by(self, key: bytes) -> bool:
        """Whether the signature was made with ``key`` over these very fields."""
        if self.signature is None:
            return False
        expected = _signature(self.seq, self.row_hash, self.at, key)
        return hmac.compare_digest(self.signature, expected)

    def to_wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "rowHash": self.row_hash,
            "at": _iso(self.at),
            "signature": self.signature,
        }

    @classmethod
    def from_wire(cls, data: Any, source: str = "checkpoint") -> Checkpoint:
        """Read one checkpoint; ``source`` (a file and line) names it in the error."""
        if not isinstance(data, Mapping):
            raise ValidationError(source, "a checkpoint is a JSON object")
        seq, row_hash, at, signature = (
            data.get("seq"),
            data.get("rowHash"),
            data.get("at"),
            data.get("signature"),
        )
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
            raise ValidationError(
                source, f"seq must be a whole number from 0 to {MAX_SEQ}", value=seq
            )
        if not isinstance(row_hash, str) or len(row_hash) != 64:
            raise ValidationError(source, "rowHash must be 64 hex digits", value=row_hash)
        if signature is not None and not isinstance(signature, str):
            raise ValidationError(source, "signature must be a string or null")
        when = parse_time(at, f"{source}: at")
        return cls(seq, row_hash, when, signature)

    def describe(self) -> str:
        return f"checkpoint seq {self.seq} taken {_iso(self.at)}"


def read_checkpoints(text: str, source: str) -> list[tuple[str, Checkpoint]]:
    """Every checkpoint in ``text``, one a line, each with where it was read (``file:line``).

    A line may carry text before the JSON object (a log line of the ``grayrelease.audit``
    logger, as log shipping keeps it); blank lines and lines starting with ``#`` are skipped.
    """
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{number}"
        start = stripped.find("{")
        try:
            data = json.loads(stripped[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            data = None
        found.append((where, Checkpoint.from_wire(data, where)))
    return found


@attrs.frozen
class CheckpointCheck:
    """One checkpoint held against the chain."""

    checkpoint: Checkpoint
    problem: str | None
    """``None`` (it holds), ``deleted`` (the chain no longer reaches it), ``altered`` (its
    row has another hash) or ``signature`` (not made with this installation's key)."""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_wire(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.to_wire(),
            "ok": self.ok,
            "problem": self.problem,
            "detail": self.detail,
        }


def check(
    checkpoint: Checkpoint, head_seq: int, hash_at_seq: str | None, key: bytes | None
) -> CheckpointCheck:
    """Hold ``checkpoint`` against a chain whose head is ``head_seq`` and whose row number
    ``checkpoint.seq`` has ``hash_at_seq`` (``None``: no such row)."""
    name = checkpoint.describe()
    if key is not None and not checkpoint.signed_by(key):
        return CheckpointCheck(
            checkpoint,
            "signature",
            f"{name}: the signature does not match this installation's audit key "
            "(the checkpoint was edited, forged, or made with another key)",
        )
    if head_seq < checkpoint.seq:
        gone = (
            str(checkpoint.seq)
            if head_seq + 1 == checkpoint.seq
            else f"{head_seq + 1}-{checkpoint.seq}"
        )
        return CheckpointCheck(
            checkpoint,
            "deleted",
            f"{name}: the chain now ends at seq {head_seq}; rows {gone} are gone",
        )
    if checkpoint.seq == 0:
        return CheckpointCheck(checkpoint, None)
    if hash_at_seq is None:
        return CheckpointCheck(
            checkpoint, "deleted", f"{name}: no row has seq {checkpoint.seq} any more"
        )
    if not hmac.compare_digest(hash_at_seq, checkpoint.row_hash):
        return CheckpointCheck(
            checkpoint,
            "altered",
            f"{name}: row {checkpoint.seq} no longer has the checkpoint's hash; "
            "the chain up to it was rewritten",
        )
    return CheckpointCheck(checkpoint, None)


def check_all(
    checkpoints: Iterable[Checkpoint],
    head_seq: int,
    hashes: Mapping[int, str],
    key: bytes | None,
) -> tuple[CheckpointCheck, ...]:
    return tuple(check(cp, head_seq, hashes.get(cp.seq), key) for cp in checkpoints)
