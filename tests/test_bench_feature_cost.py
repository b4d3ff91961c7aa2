"""bench/feature_cost.py measures what each part of the queue costs by taking it out of a copy of
the package with exact text replacements. These tests keep its steps in step with the code: each
step still finds the text it takes out, and each stripped copy still serves every customer of a
small M/M/c run (its wall time is what the benchmark reports; here only that it runs)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import feature_cost  # noqa: E402


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    """The benchmark's stripped copies of the package, built once for these tests."""
    return feature_cost.build_copies(tmp_path_factory.mktemp("feature_cost"))


def test_every_step_applies_to_the_code_as_it_is(copies: list[tuple[str, Path]]) -> None:
    assert [step for step, _ in copies] == [step for step, _ in feature_cost.STEPS]
    shipped = (copies[0][1] / "khadem_lab" / "manager.py").read_text()
    stripped = (copies[-1][1] / "khadem_lab" / "manager.py").read_text()
    assert "return ManagerCall(pushed" in shipped and "return ManagerCall(pushed" not in stripped


def test_a_step_that_no_longer_matches_stops_the_benchmark_and_names_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [*feature_cost.STEPS, ("gone", [("worker.py", "text that is not in worker.py\n", "")])]
    monkeypatch.setattr(feature_cost, "STEPS", steps)
    with pytest.raises(SystemExit, match=re.escape("step 'gone': khadem_lab/worker.py no longer holds")):
        feature_cost.build_copies(tmp_path)


@pytest.mark.parametrize("k", range(len(feature_cost.STEPS)))
def test_each_stripped_copy_serves_every_customer(copies: list[tuple[str, Path]], k: int) -> None:
    step, root = copies[k]
    cmd = [sys.executable, str(BENCH / "mmc.py"), "--quiet", "--n", "300", "--seed", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(root)}, check=False)
    # mmc.py exits non-zero unless all 300 customers are served
    assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    record = json.loads(done.stdout.splitlines()[-1])
    assert Path(record["package"]) == root / "khadem_lab", f"{step} measured the installed package"
