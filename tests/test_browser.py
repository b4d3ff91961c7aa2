"""End to end in a real browser: JupyterLab on a copy of the notebooks, driven by headless Chromium
through Playwright (issue 9).

The test opens the dashboard notebook (07_monitoring.ipynb), runs its cells with the menu (Run > Run
All Cells), presses the rendered dashboard's buttons and checks what the page shows: the ClockPanel's
virtual time moves by exactly the step, and the statistics table and the plots are redrawn.

The copy of the notebook is cut after the dashboard cell: the cells after it press the same buttons
from the kernel and then close the simulation (a closed simulation cannot advance, so a button pressed
after them only shows an error). The repository's notebooks are never touched.

Needs the `chromium` executable (Debian's package) and the `playwright` Python package (no browser
download: Playwright drives the system's Chromium). Missing either, the test skips on a laptop and
fails in CI (the environment variable CI is set). A screenshot of the page is saved to
$KHADEM_ARTIFACTS (or the test's tmp_path) and its path printed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "07_monitoring.ipynb"
TIMEOUT_MS = 60_000  # any one wait in the page
SERVER_START_S = 60.0
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# JupyterLab user settings for the test's server: no news / update toast over the page; the
# notebook's kernel started without the "Select Kernel" dialog (it came up on some runs and blocked
# the page); every cell kept in the page (no virtual scrolling), so the dashboard's output can be
# found and read.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
}
VIRTUAL_TIME = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")


def _missing(message: str) -> None:
    """A missing browser skips on a laptop and fails in CI (the project's rule for services)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        _missing("chromium is not installed (apt-get install chromium)")
    assert path is not None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright Python package is not installed (pip install playwright)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dashboard_copy(notebooks: Path) -> None:
    """Cut the copy of the dashboard notebook after the cell that shows the dashboard."""
    path = notebooks / NOTEBOOK
    nb = json.loads(path.read_text(encoding="utf-8"))
    shown = next(
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and "widgets.QueueDashboard(" in "".join(cell["source"])
    )
    nb["cells"] = nb["cells"][: shown + 1]
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


class Lab:
    """A JupyterLab server on a temporary copy of notebooks/."""

    def __init__(self, base: Path) -> None:
        self.notebooks = base / "notebooks"
        shutil.copytree(ROOT / "notebooks", self.notebooks)
        _dashboard_copy(self.notebooks)
        settings = base / "settings"
        for name, values in LAB_SETTINGS.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(values), encoding="utf-8")
        (base / "workspaces").mkdir()
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.disable_check_xsrf=True",
            f"--ServerApp.root_dir={self.notebooks}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={base / 'workspaces'}",
        ]  # fmt: skip
        if os.geteuid() == 0:
            command.append("--allow-root")
        self.log = (base / "jupyter.log").open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=base)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_S} s; see {self.log.name}")

    def page_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the server shuts its kernels down
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def chromium() -> str:
    """The system's Chromium (checked with Playwright before any server starts)."""
    return _chromium()


@pytest.fixture
def lab(chromium: str, tmp_path: Path) -> Iterator[Lab]:
    server = Lab(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _virtual_time(text: str) -> datetime:
    found = VIRTUAL_TIME.search(text)
    assert found, f"no virtual time in the clock label: {text!r}"
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")


def _wait_idle(page: Any) -> None:
    """Wait until the kernel is idle: the status bar says so, and so does the notebook's toolbar."""
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\|\s*Idle$")).first.wait_for(
        state="attached", timeout=TIMEOUT_MS
    )
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
        state="attached", timeout=TIMEOUT_MS
    )


def test_dashboard_buttons_in_a_real_browser(chromium: str, lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    artefacts = Path(os.environ.get("KHADEM_ARTIFACTS") or tmp_path)
    artefacts.mkdir(parents=True, exist_ok=True)
    screenshot = artefacts / "browser_dashboard.png"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(lab.page_url(NOTEBOOK))
            # The notebook is open and its kernel started.
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
            _wait_idle(page)

            # Run > Run All Cells.
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

            # The dashboard's output (the last cell's): the clock label, the buttons, stats, plots.
            clock = page.locator(".widget-html-content", has_text="(virtual;")
            clock.wait_for()
            clock.scroll_into_view_if_needed()
            step = page.locator("button.widget-button", has_text=re.compile(r"^\+1 min$"))
            requeue_all = page.locator("button.widget-button", has_text=re.compile(r"^requeue all$"))
            stats = page.locator(".widget-html-content", has_text="get_stats()")
            images = page.locator("img.widget-image")
            expect(images).to_have_count(2)
            for i in range(2):
                expect(images.nth(i)).to_have_attribute("src", re.compile(r"^blob:"))
            _wait_idle(page)
            # Every code cell ran (a number in its prompt, no [*]).
            prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
            expect(prompts.filter(has_text="*")).to_have_count(0)
            expect(prompts.filter(has_text=re.compile(r"\[\s*\]"))).to_have_count(0)

            # Requeue the dead letters (the payment provider is back), so the next minute has work.
            status = page.locator(".widget-html-content", has_text="requeued")
            requeue_all.click()
            expect(status).to_contain_text("job(s) requeued")
            _wait_idle(page)

            before_time = clock.inner_text()
            before_stats = stats.inner_html()
            before_src = [images.nth(i).get_attribute("src") for i in range(2)]

            step.click()
            expect(clock).not_to_have_text(before_time)
            page.wait_for_function(
                "before => [...document.querySelectorAll('img.widget-image')]"
                ".some((img, i) => img.getAttribute('src') !== before[i])",
                arg=before_src,
            )
            expect(page.locator(".widget-html-content", has_text="advanced 1 min")).to_have_count(1)
            _wait_idle(page)

            after_time = clock.inner_text()
            moved = _virtual_time(after_time) - _virtual_time(before_time)
            assert moved.total_seconds() == 60, (before_time, after_time)
            assert stats.inner_html() != before_stats, "the statistics table was not redrawn"
            after_src = [images.nth(i).get_attribute("src") for i in range(2)]
            assert after_src[0] != before_src[0], "the timeline plot was not redrawn"
            assert after_src[1] != before_src[1], "the depth plot was not redrawn"
            # No error reported in a panel's status line.
            expect(page.locator(".widget-html-content", has_text="failed:")).to_have_count(0)

            clock.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
            print(f"screenshot: {screenshot}")
        except Exception:
            failed = artefacts / "browser_dashboard_failed.png"
            page.screenshot(path=str(failed), full_page=True)
            print(f"screenshot of the failure: {failed}; server log: {lab.log.name}")
            raise
        finally:
            browser.close()
