"""A process that acts on a plan and is killed (SIGKILL) at a named control-path point.

Run as ``python -m tests.crash_child '<json>'`` by tests/test_crash_safety.py, with
``{"settings": ..., "plugins": [module, ...], "action": "complete"|"rollback",
"planId": ..., "point": ...}``. It exits 0 only if the point was never reached.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys

from grayrelease_core import GrayRelease, faults


def main(raw: str) -> int:
    job = json.loads(raw)
    plugins: list[object] = [importlib.import_module(name) for name in job["plugins"]]
    point = job["point"]

    def die(reached: str) -> None:
        if reached == point:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no handler, no cleanup

    with GrayRelease.from_settings(job["settings"], plugins=plugins, load_entrypoints=False) as gr:
        faults.arm(die)
        getattr(gr, job["action"])(job["planId"], actor="alice")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
