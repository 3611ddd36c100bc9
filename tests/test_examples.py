"""`make run`'s demo runs and shows what each client got at each step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).parent.parent / "docs" / "examples" / "demo.py"


def test_demo_walks_a_plan_through_its_whole_life(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    done = subprocess.run(
        [sys.executable, str(DEMO), url], capture_output=True, text=True, timeout=120, check=True
    )
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    active = lines["ACTIVE"]
    assert "=*true" in active
    assert "= false" in active
    assert lines["RESUMED"].count("*true") == active.count("*true")
    assert "gets 'false'" in done.stdout  # a newcomer inside the 40% while paused
    assert lines["COMPLETED"].count("= true") == 8
    assert lines["ROLLBACK"].count("= false") == 8
    assert lines["audit:"].endswith("COMPLETED(bob) -> ROLLED_BACK(bob)")
    assert f"{active.count('*true')} instances got the gray value" in done.stdout


def python_blocks(markdown: Path) -> list[str]:
    """The fenced ```python blocks of a Markdown file."""
    blocks: list[str] = []
    current: list[str] = []
    inside = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.strip() == "```python":
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def test_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = Path(__file__).parent.parent / "README.md"
    blocks = python_blocks(readme)
    assert blocks, "the README lost its example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(readme), "exec"), {"__name__": "readme_example"})
    value, gray, plan_id = capsys.readouterr().out.split()
    assert (value, gray) in {("true", "True"), ("false", "False")}
    assert len(plan_id) == 32
    assert (tmp_path / "gray.db").exists()
