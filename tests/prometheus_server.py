"""A real Prometheus server scraping an exporter the test runs, as module-scoped fixtures.

Import the fixtures into a test module (``from .prometheus_server import exporter, prometheus``).
``exporter`` serves ``/metrics`` from series the test declares (counters growing at rates it
chooses, gauges at values it chooses); ``prometheus`` is the Debian package's binary on a
free loopback port, scraping the exporter every second.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from .loopback import free_port

START_DEADLINE = 30.0
"""Seconds the server has to become ready and to have scraped data."""


class Request(NamedTuple):
    """A request the exporter's canned routes received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode(), strict_parsing=True))


def _labels(labels: Mapping[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{name}="{escape(value)}"' for name, value in sorted(labels.items()))


class Exporter:
    """A ``/metrics`` endpoint in the Prometheus text format, on 127.0.0.1, in a thread.

    A counter's value is its rate times the seconds since it was declared, computed at each
    scrape, so ``rate()`` over it is the declared rate.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], tuple[float, float]] = {}
        self._gauges: dict[tuple[str, str], float] = {}
        self._routes: dict[str, tuple[int, str, bytes]] = {}
        self.requests: list[Request] = []
        """Every request to a canned route, in order."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, "text/plain; version=0.0.4", exporter.render().encode())
                else:
                    self._canned()

            def do_POST(self) -> None:
                self._canned(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _canned(self, body: bytes = b"") -> None:
                path = urllib.parse.urlsplit(self.path).path
                exporter.requests.append(Request(self.command, path, dict(self.headers), body))
                self._send(*exporter._routes.get(path, (404, "text/plain", b"not found")))

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``host:port``, as a scrape target."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def counter(self, name: str, labels: Mapping[str, str], per_second: float) -> None:
        """Declare (or restart) a counter growing by ``per_second`` each second."""
        with self._lock:
            self._counters[(name, _labels(labels))] = (time.time(), per_second)

    def gauge(self, name: str, labels: Mapping[str, str], value: float) -> None:
        with self._lock:
            self._gauges[(name, _labels(labels))] = value

    def route(self, path: str, status: int, content_type: str, body: bytes) -> None:
        """Answer any other ``path`` with a canned response (a fake server's wrong answers)."""
        self._routes[path] = (status, content_type, body)

    def render(self) -> str:
        now = time.time()
        lines: list[str] = []
        with self._lock:
            for name in sorted({name for name, _ in self._counters}):
                lines.append(f"# TYPE {name} counter")
                for (series, labels), (since, rate) in sorted(self._counters.items()):
                    if series == name:
                        lines.append(f"{name}{{{labels}}} {rate * (now - since):.6f}")
            for name in sorted({name for name, _ in self._gauges}):
                lines.append(f"# TYPE {name} gauge")
                for (series, labels), value in sorted(self._gauges.items()):
                    if series == name:
                        lines.append(f"{name}{{{labels}}} {value!r}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class PrometheusServer:
    """A running Prometheus: its URL and a small client for waiting on data."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def wait_for(self, promql: str, series: int = 1, deadline: float = START_DEADLINE) -> None:
        """Until the instant query ``promql`` answers at least ``series`` series."""
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            self._check_alive()
            answer = self.get("/api/v1/query", query=promql)
            if len(answer["data"]["result"]) >= series:
                return
            time.sleep(0.2)
        raise AssertionError(f"prometheus had no data for {promql!r} within {deadline} s")

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            output = self.log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{output}")


@contextlib.contextmanager
def running_prometheus(target: str, directory: Path) -> Iterator[PrometheusServer]:
    """Prometheus scraping ``target`` (``host:port``) every second, its data in ``directory``."""
    binary = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if binary is None:
        pytest.skip("prometheus is not installed: apt-get install prometheus")
    config = directory / "prometheus.yml"
    # JSON is YAML; honor_labels keeps the exporter's own instance="pod-1" labels.
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "exporter",
                        "honor_labels": True,
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
    try:
        until = time.monotonic() + START_DEADLINE
        while not server.ready():
            server._check_alive()
            if time.monotonic() > until:
                raise AssertionError(f"prometheus was not ready within {START_DEADLINE} s")
            time.sleep(0.1)
        server.wait_for('up{job="exporter"} == 1')
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    """The exporter Prometheus scrapes; a test module declares its series on it."""
    served = Exporter()
    yield served
    served.close()


@pytest.fixture(scope="module")
def prometheus(
    exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping ``exporter`` every second; stopped after the module."""
    with running_prometheus(exporter.address, tmp_path_factory.mktemp("prometheus")) as server:
        yield server
