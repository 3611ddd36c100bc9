"""What the console's browser tests stand on: the app on a real HTTP server (waitress, on a
free loopback port, in a thread of the test process so the test shares the engine's manual
clock), Debian's Chromium driven by Playwright, and the steps an operator takes in the page."""

from __future__ import annotations

import os
import re
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


TIMEOUT = 10_000
"""Milliseconds a page may take to show what the test waits for (the poll is every 2 s)."""


@contextmanager
def browser_page(browser: Any, timezone: str = "UTC") -> Iterator[Any]:
    """A page in a fresh browser context (no cookies), failing the test on any console error:
    a script error, or anything the Content-Security-Policy refused."""
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, locale="en-US", timezone_id=timezone
    )
    context.set_default_timeout(TIMEOUT)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    context.close()
    # A 4xx the test provoked is logged by Chromium as a failed resource; nothing else may be.
    unexpected = [e for e in errors if "the server responded with a status of 4" not in e]
    assert unexpected == []


def expect(target: Any) -> Any:
    """Playwright's retrying assertions (imported late: Playwright may be missing)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in(page: Any, url: str, token: str) -> None:
    """Open the console at ``url`` and log in with ``token`` on its login page."""
    page.goto(url)
    page.fill("#login-token", token)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("header.topbar")


def open_dialog(page: Any) -> Any:
    page.click("[data-action=new-plan]")
    return page.wait_for_selector("dialog.plan-dialog[open]")


def fill_basics(page: Any, name: str, app: str, env: str = "prod", group: str = "default") -> None:
    dialog = page.locator("dialog.plan-dialog")
    dialog.locator("input[name=planName]").fill(name)
    dialog.locator("input[name=appName]").fill(app)
    dialog.locator("input[name=environment]").fill(env)
    dialog.locator("input[name=groupName]").fill(group)


def fill_canary(page: Any, instances: str, step: int, interval: int) -> None:
    """Pick CANARY in the open dialog and give its instances, step and interval."""
    page.select_option("dialog select[name=grayStrategy]", "CANARY")
    page.fill("dialog textarea[name=canaryInstances]", instances)
    page.fill("dialog input[name=stepPercentage]", str(step))
    page.fill("dialog input[name=stepInterval]", str(interval))


def fill_key(page: Any, index: int, key: str, value: str) -> None:
    dialog = page.locator("dialog.plan-dialog")
    if dialog.locator(".key-row").count() <= index:
        dialog.locator("[data-action=add-key]").click()
    row = dialog.locator(".key-row").nth(index)
    row.locator("input[name=configKey]").fill(key)
    row.locator("input[name=configKey]").dispatch_event("change")
    row.locator("textarea[name=grayValue]").fill(value)


def save_plan(page: Any) -> str:
    page.click("dialog.plan-dialog [data-action=save]")
    page.wait_for_selector("dialog.plan-dialog", state="detached")
    page.wait_for_url(re.compile(r"#/plans/[^/]+$"))
    page.wait_for_selector("[data-testid=plan-name]")
    return str(page.url.rsplit("/", 1)[1])


def status_is(page: Any, status: str) -> None:
    page.wait_for_selector(f".detail-head .badge[data-status={status}]")


def click_action(page: Any, action: str, confirm: bool = False, reason: str = "") -> None:
    page.click(f".actions button[data-action={action}]:not([disabled])")
    if confirm:
        page.wait_for_selector("dialog.confirm[open]")
        if reason:
            page.fill("dialog.confirm textarea[name=reason]", reason)
        page.click("dialog.confirm [data-confirm=ok]")


def enabled_actions(page: Any) -> list[str]:
    found: list[str] = page.eval_on_selector_all(
        ".actions button:not([disabled])", "els => els.map(e => e.dataset.action)"
    )
    return sorted(found)
