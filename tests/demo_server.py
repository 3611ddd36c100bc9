"""``grayrelease serve --load-examples`` in a process of its own, as ``make run`` starts it,
with what its banner tells a newcomer: the address, the admin token and the console's page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import attrs


@attrs.frozen
class DemoServer:
    process: subprocess.Popen[str]
    banner: list[str]
    """The first three lines it printed: the address, the token, the console."""
    base: str
    token: str

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


@contextmanager
def demo_server(database_url: str, *options: str) -> Iterator[DemoServer]:
    """Start the demo server on a free port; killed at the end unless the test stopped it.
    ``options`` go before ``serve`` (``--backend memory``, ``--settings FILE``)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GRAYRELEASE_ADMIN_TOKEN", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grayrelease_adapters.flask.cli",
            "--database-url",
            database_url,
            *options,
            "serve",
            "--port",
            "0",
            "--load-examples",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        address = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner[0])
        assert address is not None, banner
        token = banner[1].rsplit(" ", 1)[-1].strip()
        yield DemoServer(process, banner, address.group(1), token)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
