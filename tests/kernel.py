"""A real IPython kernel for tests of what a learner sees in a notebook (jupyter_client, no mocks).

::

    with Kernel() as kernel:
        kernel.run("from khadem_lab import Simulation; sim = Simulation()")
        reply = kernel.run("sim.now()")
        assert "2024-01-01 09:00" in reply.text

``start`` sends a cell without waiting, ``wait_for`` waits until its output shows a marker (so a
test knows the cell is blocking inside ``sim.advance``), ``interrupt`` is the kernel's Ctrl-C, and
``result`` collects the cell's outputs until the kernel is idle again.
"""

from __future__ import annotations

import os
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager


@dataclass
class CellResult:
    """What one executed cell produced."""

    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)  # text/plain of execute_result / display_data
    mimetypes: list[list[str]] = field(default_factory=list)  # the formats of each of those
    error: tuple[str, str] | None = None  # (ename, evalue)
    traceback: str = ""

    @property
    def text(self) -> str:
        """Everything the cell showed, as one string."""
        return "\n".join([self.stdout, self.stderr, *self.results, self.traceback])


class Kernel:
    """A fresh ipykernel in its own process, running this interpreter and this checkout."""

    def __init__(self, *, startup_timeout: float = 60) -> None:
        self._manager = KernelManager(kernel_name="python3")
        self._startup_timeout = startup_timeout
        self._pending: dict[str, CellResult] = {}
        self._idle: set[str] = set()

    def __enter__(self) -> Kernel:
        env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
        self._manager.kernel_cmd = [  # type: ignore[attr-defined]
            sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"
        ]
        self._manager.start_kernel(env=env, cwd=os.getcwd())
        self._client = self._manager.client()
        self._client.start_channels()
        self._client.wait_for_ready(timeout=self._startup_timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.stop_channels()
        self._manager.shutdown_kernel(now=True)

    # -- running cells ------------------------------------------------------------------------
    def start(self, code: str) -> str:
        """Send ``code`` as a cell; return its message id at once."""
        msg_id: str = self._client.execute(code, store_history=True, allow_stdin=False)
        self._pending[msg_id] = CellResult()
        return msg_id

    def result(self, msg_id: str, timeout: float = 60) -> CellResult:
        """Wait until the cell has finished (the kernel went idle for it); return its outputs."""
        deadline = time.monotonic() + timeout
        while msg_id not in self._idle:
            self._pump(deadline, msg_id)
        self._idle.discard(msg_id)
        return self._pending.pop(msg_id)

    def run(self, code: str, timeout: float = 60) -> CellResult:
        """Run ``code`` as a cell and return its outputs."""
        return self.result(self.start(code), timeout)

    def wait_for(self, msg_id: str, marker: str, timeout: float = 60) -> None:
        """Wait until the running cell ``msg_id`` has printed ``marker``."""
        deadline = time.monotonic() + timeout
        while marker not in self._pending[msg_id].text:
            if msg_id in self._idle:
                so_far = self._pending[msg_id].text
                raise AssertionError(f"cell finished without printing {marker!r}:\n{so_far}")
            self._pump(deadline, msg_id)

    def interrupt(self) -> None:
        """Ctrl-C: the kernel's interrupt (SIGINT to the kernel process)."""
        self._manager.interrupt_kernel()

    # -- plumbing -------------------------------------------------------------------------------
    def _pump(self, deadline: float, waiting_for: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"the kernel did not finish the cell in time; so far:\n{self._pending[waiting_for].text}"
            )
        try:
            msg: dict[str, Any] = self._client.get_iopub_msg(timeout=min(left, 1.0))
        except queue.Empty:
            return
        parent = msg.get("parent_header", {}).get("msg_id")
        cell = self._pending.get(parent)
        if cell is None:
            return
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            if content["name"] == "stdout":
                cell.stdout += content["text"]
            else:
                cell.stderr += content["text"]
        elif kind in ("execute_result", "display_data"):
            cell.results.append(content["data"].get("text/plain", ""))
            cell.mimetypes.append(sorted(content["data"]))
        elif kind == "error":
            cell.error = (content["ename"], content["evalue"])
            cell.traceback = _strip_ansi("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            self._idle.add(parent)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
