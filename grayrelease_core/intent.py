"""What a publishing action records before it touches the backend, and who holds it.

An action that writes to the config backend (a completion, a rollback after completion) first
*claims* its plan: it stores an :class:`Intent` on the plan row under a fence (the plan's
``epoch``, raised by every claim), naming what it will publish and what each key held. Only
then does it write to the backend; then it commits the new state and clears the intent.

A process killed half-way leaves the intent behind. :func:`holder_alive` tells recovery
whether the holder may still be working, so that recovery never races a live actor.
"""

from __future__ import annotations

import enum
import os
import secrets
import socket
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .errors import Conflict
from .models import ConfigRef, PlanStatus


class Direction(enum.StrEnum):
    """Which way an open intent is finished."""

    FORWARD = "FORWARD"
    """Publish ``values`` and commit the new state (the action as asked)."""
    BACK = "BACK"
    """Restore ``before`` and keep the old state (the actor saw a failure)."""


@attrs.frozen
class Intent:
    """An action under way on one plan: recorded before its first backend write."""

    epoch: int
    """The fence: the plan's claim counter when this intent was written. A commit or a
    release matches it, so a writer whose claim was taken over cannot finish."""
    action: str
    """The engine's action (``complete``, ``rollback``)."""
    event: str
    """The audit action its commit writes (``COMPLETED``, ``ROLLED_BACK``, ...)."""
    actor: str
    """Who asked for the action; recovery commits in their name."""
    owner: str
    """The process holding the claim (:func:`owner_id`)."""
    claimed_at: datetime
    lease_until: datetime
    """After this, a holder on another host counts as gone (same-host holders are checked
    by process id). The holder renews it while it writes."""
    status_before: PlanStatus
    status_after: PlanStatus
    values: Mapping[str, str | None]
    """What each key is set to (``None`` removes it)."""
    before: Mapping[str, str | None]
    """What each key held, read after the claim: what an undo restores."""
    direction: Direction = Direction.FORWARD
    message: str = ""

    def refs(self, app: str, env: str, group: str) -> dict[ConfigRef, str | None]:
        """``values`` keyed by full config references."""
        return {ConfigRef(app, env, group, key): value for key, value in self.values.items()}

    def restores(self, app: str, env: str, group: str) -> dict[ConfigRef, str | None]:
        """``before`` keyed by full config references."""
        return {ConfigRef(app, env, group, key): value for key, value in self.before.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "action": self.action,
            "event": self.event,
            "actor": self.actor,
            "owner": self.owner,
            "claimedAt": self.claimed_at.isoformat(),
            "leaseUntil": self.lease_until.isoformat(),
            "statusBefore": self.status_before.value,
            "statusAfter": self.status_after.value,
            "values": dict(self.values),
            "before": dict(self.before),
            "direction": self.direction.value,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Intent:
        return cls(
            epoch=int(raw["epoch"]),
            action=str(raw["action"]),
            event=str(raw["event"]),
            actor=str(raw["actor"]),
            owner=str(raw["owner"]),
            claimed_at=datetime.fromisoformat(raw["claimedAt"]),
            lease_until=datetime.fromisoformat(raw["leaseUntil"]),
            status_before=PlanStatus(raw["statusBefore"]),
            status_after=PlanStatus(raw["statusAfter"]),
            values=dict(raw["values"]),
            before=dict(raw["before"]),
            direction=Direction(raw.get("direction", Direction.FORWARD.value)),
            message=str(raw.get("message", "")),
        )

    def to_wire(self) -> dict[str, Any]:
        """What the API shows of it (``pendingAction``): no values, which may be secrets."""
        return {
            "action": self.action,
            "actor": self.actor,
            "since": self.claimed_at.isoformat().replace("+00:00", "Z"),
            "direction": self.direction.value,
            "configKeys": sorted(self.values),
        }


# --- who holds a claim ----------------------------------------------------------------------

_in_flight: set[tuple[str, int]] = set()
"""``(plan id, epoch)`` of the claims this process's threads are carrying out now."""


def begin(plan_id: str, epoch: int) -> None:
    _in_flight.add((plan_id, epoch))


def end(plan_id: str, epoch: int) -> None:
    _in_flight.discard((plan_id, epoch))


def owner_id() -> str:
    """This process, as ``machine:pid:start:nonce``.

    ``machine`` is the host name, the kernel's boot id and the pid namespace: two
    containers may share a host name and both run as pid 1, but not a pid namespace. The
    start time tells a reused pid apart; the nonce, drawn when the process starts (again in
    a forked child), tells this process from any other that shows the same pid.
    """
    pid = os.getpid()
    return f"{_machine()}:{pid}:{_start_time(pid)}:{_nonce[0]}"


def _machine() -> str:
    """Where pids mean the same thing: host name, boot id, pid namespace (Linux)."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            if path.endswith("boot_id"):
                with open(path, encoding="ascii") as boot:
                    parts.append(boot.read().strip()[:8])
            else:  # "pid:[4026531836]"
                parts.append(os.readlink(path).strip("pid:[]"))
        except OSError:
            parts.append("")
    return "/".join(parts)


def _new_nonce() -> None:
    _nonce[0] = secrets.token_hex(4)


_nonce = [""]
_new_nonce()
os.register_at_fork(after_in_child=_new_nonce)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or ``""`` elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name may hold spaces and parentheses: split after its last ')'.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def holder_alive(intent: Intent, plan_id: str, now: datetime) -> bool:
    """Whether the intent's holder may still be carrying it out.

    This process: only if one of its threads has it in flight. Another process where pids
    mean what they mean here (same host, boot and pid namespace): if a process with that
    pid and start time still runs. Anywhere else, or an owner this cannot read: until the
    lease runs out (the holder renews it while it writes).
    """
    parts = intent.owner.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != _machine() or not parts[1].isdigit() or not parts[2]:
        return now < intent.lease_until
    _, pid_text, start, nonce = parts
    pid = int(pid_text)
    if pid == os.getpid():  # with another nonce: an earlier process that had our pid
        return nonce == _nonce[0] and (plan_id, intent.epoch) in _in_flight
    return _start_time(pid) == start


def busy_error(
    plan_id: str, held: Intent, version: int, expected_version: int | None = None
) -> Conflict:
    """The refusal of an action on a plan that another action has claimed."""
    details: dict[str, Any] = {
        "planId": plan_id,
        "pendingAction": held.to_wire(),
        "version": version,
    }
    if expected_version is not None:
        details["expectedVersion"] = expected_version
    return Conflict(
        f"plan {plan_id} changed meanwhile: {held.actor}'s {held.action} is under way "
        f"(since {held.claimed_at.isoformat()}); reload it and try again when it is done",
        details=details,
    )
