"""Many Apollo clients at once, as an asyncio crowd: held notification polls and config reads
over plain HTTP/1.1 connections (what the held-poll test and ``make bench-polls`` use)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Sequence

import attrs

NAMESPACE = "database"
APP = "demo-app"


@attrs.frozen
class Answer:
    status: int
    body: bytes
    at: float
    """``time.monotonic()`` when the answer arrived."""


def poll_target(root: str, known: int, app_id: str = APP, namespace: str = NAMESPACE) -> str:
    """The path and query of a notification poll of one namespace whose id is ``known``."""
    notifications = json.dumps([{"namespaceName": namespace, "notificationId": known}])
    query = urllib.parse.urlencode(
        {"appId": app_id, "cluster": "default", "notifications": notifications}
    )
    return f"{root}/notifications/v2?{query}"


async def request(port: int, target: str, *, timeout: float = 120.0) -> Answer:
    """One GET on a connection of its own, read to the end (``Connection: close``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return Answer(status, body, time.monotonic())


async def open_polls(
    port: int, target: str, count: int, batch: int = 500
) -> list[asyncio.Task[Answer]]:
    """``count`` held polls, opened ``batch`` at a time so the listen backlog keeps up; each
    task ends with its answer."""
    tasks: list[asyncio.Task[Answer]] = []
    for start in range(0, count, batch):
        tasks.extend(
            asyncio.create_task(request(port, target)) for _ in range(min(batch, count - start))
        )
        await asyncio.sleep(0.05)
    return tasks


@attrs.frozen
class Load:
    requests: int
    seconds: float
    latencies: Sequence[float]
    """Seconds each request took, sorted."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(share * len(self.latencies)))]


async def read_load(port: int, target: str, *, connections: int, seconds: float) -> Load:
    """``connections`` keep-alive clients reading ``target`` one request after another."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        try:
            while time.monotonic() < deadline:
                sent = time.monotonic()
                writer.write(message)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise AssertionError(head.decode("latin-1"))
                latencies.append(time.monotonic() - sent)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return Load(len(latencies), time.monotonic() - started, sorted(latencies))
