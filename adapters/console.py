"""The ``grayrelease`` console script, which needs the ``flask`` extra."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command, or say how to install what it needs."""
    try:
        from grayrelease_adapters.flask.cli import main as run
    except ImportError as exc:
        hint = "pip install 'grayrelease[flask]'"
        sys.exit(f"grayrelease: the command needs the flask extra: {hint} ({exc})")
    run()
