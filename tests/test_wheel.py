"""The package as a user gets it: ``python -m build`` makes a wheel and an sdist, and the wheel,
installed with its ``flask`` extra into a fresh virtual environment, serves the demo, its
console, its migrations and the Apollo endpoint (nothing left behind by the explicit package
list in setup.cfg)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_built_wheel_installs_into_a_fresh_venv_and_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = dist.glob("grayrelease-*.whl")
    [sdist] = dist.glob("grayrelease-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for wanted in (
        "console/static/app.js",
        "migrations/versions/0001_initial_plan_store_tables.py",
    ):
        assert any(name.endswith(wanted) for name in names), wanted

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{wheel}[flask]"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    process = subprocess.Popen(
        [
            str(env_dir / "bin" / "grayrelease"),
            "--database-url",
            f"sqlite:///{tmp_path / 'gray.db'}",
            "serve",
            "--port",
            "0",
            "--admin-token",
            "wheel-admin-token-0123456789",
            "--load-examples",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,  # not the checkout: the installed package alone
        env={**environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert found is not None, first + process.stdout.read()
        base = found.group(1)
        url = f"{base}/api/gray-release/apollo/prod/configs/demo-app/default/database?ip=10.0.0.1"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert "database.url" in json.loads(answer.read())["configurations"]
        with urllib.request.urlopen(f"{base}/gray-release/", timeout=10) as answer:
            assert b"<html" in answer.read().lower()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    # The installed package, not the checkout, served it.
    where = subprocess.run(
        [str(python), "-c", "import grayrelease_core; print(grayrelease_core.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environ,
    ).stdout
    assert str(env_dir) in where
