"""The course around the notebooks (issue 9): every notebook reachable from the index and the README,
links that stay inside the repository, stored outputs free of machine paths, memory addresses and
wall-clock dates, and a Redis notebook that stops with one clear message when no server answers."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
README = ROOT / "README.md"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
BINDER_LINK = "https://mybinder.org/v2/gh/OWNER/REPO/HEAD?urlpath=lab/tree/notebooks/00_index.ipynb"
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def markdown_of(path: Path) -> str:
    notebook = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")


def output_texts(cell: dict[str, Any]) -> list[str]:
    """Every text a stored output of ``cell`` shows: streams, text and JSON data, errors."""
    texts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append("".join(output["text"]))
        for kind, value in output.get("data", {}).items():
            if kind.startswith("text/") or kind.endswith("json"):
                texts.append(value if isinstance(value, str) else json.dumps(value))
        if output.get("output_type") == "error":
            texts.append(output["evalue"] + "\n".join(output.get("traceback", [])))
    return texts


def test_every_notebook_is_linked_from_the_index_and_listed_in_the_readme() -> None:
    index = markdown_of(ROOT / "notebooks" / "00_index.ipynb")
    readme = README.read_text()
    for path in NOTEBOOKS[1:]:
        assert f"]({path.name})" in index, f"00_index.ipynb does not link {path.name}"
        assert f"| `{path.stem}` |" in readme, f"the README's course table does not list {path.stem}"


def test_the_readme_links_only_inside_the_repository_besides_the_binder_badge() -> None:
    text = README.read_text()
    for target in MARKDOWN_LINK.findall(text):
        if target in (BINDER_BADGE, BINDER_LINK):
            continue
        assert "://" not in target and not target.startswith(("/", "mailto:")), f"README links out: {target}"
        assert (ROOT / target.split("#")[0]).exists(), f"README links to a missing file: {target}"
    bare = set(re.findall(r"https?://[^\s)\]`'\"]+", text))
    assert bare == {BINDER_BADGE, BINDER_LINK}, bare  # the standard Binder badge, OWNER/REPO to fill


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_links_point_to_files_of_the_repository(path: Path) -> None:
    for target in MARKDOWN_LINK.findall(markdown_of(path)):
        assert "://" not in target, f"{path.name} links out of the repository: {target}"
        assert (path.parent / target.split("#")[0]).exists(), f"{path.name} links to a missing file: {target}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_show_no_machine_path_memory_address_or_wall_clock_date(path: Path) -> None:
    notebook = json.loads(path.read_text())
    for number, cell in enumerate(notebook["cells"]):
        for text in output_texts(cell):
            where = f"{path.name}, cell {number}"
            assert not re.search(r"(/work/|/tmp/|/home/|/root/|/usr/|site-packages|[A-Z]:\\)", text), where
            assert not re.search(r"\b0x[0-9a-fA-F]{6,}", text), where  # an object's repr with its address
            # Simulations start on 2024-01-01 (DEFAULT_START) and no notebook simulates past 2024:
            # a later date in an output came from the wall clock.
            years = {int(year) for year in re.findall(r"\b(20\d\d)-\d\d-\d\d", text)}
            assert all(year <= 2024 for year in years), (where, years)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_cell_whose_output_is_ignored_is_followed_by_one_that_is_checked(path: Path) -> None:
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for cell, after in itertools.pairwise(cells):
        if "NBVAL_IGNORE_OUTPUT" in "".join(cell["source"]):
            source = "".join(after["source"])
            assert "NBVAL_IGNORE_OUTPUT" not in source
            checked = "assert" in source or output_texts(after)
            assert checked, f"{path.name}: no cell checks the state after {''.join(cell['source'])[:80]!r}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


def run_redis_notebook(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int, Any]:
    """Run notebooks/15_redis.ipynb against ``url`` until it fails: the notebook, and the number and
    output of its one error."""
    monkeypatch.setenv("REDIS_URL", url)
    notebook = nbformat.read(ROOT / "notebooks" / "15_redis.ipynb", as_version=4)
    client = NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError):
        client.execute()
    outputs = [(n, o) for n, c in enumerate(notebook.cells) for o in c.get("outputs", [])]
    errors = [(n, o) for n, o in outputs if o["output_type"] == "error"]
    assert len(errors) == 1
    return notebook, *errors[0]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own, on a free port, nothing kept on disk: its URL."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    port = closed_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # until it listens (a real process starting)
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError(f"redis-server did not listen on port {port} within 10 s")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.realtime
def test_the_redis_notebook_refuses_to_run_beside_another_run_on_the_same_server(
    private_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    # Given another run of the notebook holding the server (its guard key)
    with redis.Redis.from_url(private_redis, decode_responses=True) as client:
        client.set("khadem-course-15:running", "elsewhere:123")
        client.set("khadem:{course-15}:seq", "41")  # that run's queue
        # When the notebook runs against it
        notebook, number, error = run_redis_notebook(private_redis, tmp_path, monkeypatch)
        # Then it stops before it cleans anything, saying why and what to do
        assert "clean(QUEUE, LIVE_QUEUE" in notebook.cells[number].source
        assert "Another run of this notebook (elsewhere:123)" in error["evalue"]
        assert "wait until it ends" in error["evalue"]
        assert client.get("khadem:{course-15}:seq") == "41"


@pytest.mark.realtime
def test_the_redis_notebook_stops_at_its_connection_cell_with_how_to_start_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no Redis server at the notebook's REDIS_URL
    url = f"redis://127.0.0.1:{closed_port()}/0"
    # When it runs from the top
    notebook, number, error = run_redis_notebook(url, tmp_path, monkeypatch)
    # Then it stops at the cell that connects, with one error that names the URL and says what to do
    assert "REDIS_URL = os.environ.get" in notebook.cells[number].source
    assert error["ename"] == "RedisNotRunning"
    assert url in error["evalue"]
    assert "redis-server --port 6379 --save '' --appendonly no --daemonize yes" in error["evalue"]
    assert "set REDIS_URL" in error["evalue"]
