"""The README's quick start is code a newcomer runs first: it must run and print what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quick_start_runs_and_shows_the_timeline() -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["09:00:00 dispatched 1 0", "09:00:00 dispatched 2 0"]
    assert "09:00:01 completed 1 1" in lines and "09:05:01 completed 2 1" in lines
    assert "'jobs_completed': 2" in lines[-1]


def test_readme_names_the_two_setup_commands_that_exist() -> None:
    text = README.read_text()
    makefile = (README.parent / "Makefile").read_text()
    setup = text[text.index("## Set-up on a fresh machine") : text.index("## Quick start")]
    assert "make lab     # the main job: JupyterLab on the course" in setup
    for command in ("make lab", "make test", "make demo"):  # the main job, the tests, the demo
        assert command in setup
        assert f"\n{command.split()[1]}:" in makefile
    assert "make test" in (README.parent / ".ci" / "run").read_text()
