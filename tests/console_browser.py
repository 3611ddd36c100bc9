"""What the console's browser tests stand on: the app on a real HTTP server (waitress, on a
free loopback port, in a thread of the test process so the test shares the engine's manual
clock), and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import waitress
from flask import Flask
from waitress import wasyncore

CHROMIUM = Path(os.environ.get("GRAYRELEASE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Without the network switches Chromium keeps calling home, and here there is no home."""


def missing(reason: str) -> None:
    """Skip outside CI; under CI (``CI=true``) a missing browser is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """Serve ``app`` with waitress on ``127.0.0.1``; yields its base URL."""
    server: Any = waitress.create_server(app, host="127.0.0.1", port=0, threads=6)
    thread = threading.Thread(target=server.run, name="console-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Closing every channel from waitress's own loop ends the loop (it runs while its map
        # has channels); closing sockets from this thread would race its select().
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()


@contextmanager
def chromium() -> Iterator[Any]:
    """One headless Chromium (Debian's) for a module of tests."""
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
