"""The core imports and runs without the lab extra (pandas, matplotlib, ipywidgets, tqdm)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = ("pandas", "numpy", "matplotlib", "ipywidgets", "tqdm", "IPython")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the core must not need it")
            return None

    sys.meta_path.insert(0, Block())

    import asyncio
    from dataclasses import dataclass

    import khadem_lab
    from khadem_lab import EventLog, QueueJob, QueueManager, Simulation, demo
    import khadem_lab.lab  # the lab package itself imports nothing heavy

    @dataclass
    class Hello(QueueJob):
        n: int

        async def handle(self):
            await asyncio.sleep(1)

    with Simulation() as sim:
        qm = QueueManager(clock=sim.clock)
        log = EventLog(maxlen=100)
        qm.subscribe(log)

        async def go():
            for n in range(3):
                await qm.dispatch(Hello(n))
            return await qm.start_worker(run_in_background=True)

        worker = sim.run(go())
        sim.advance(seconds=10)
        sim.run(worker.stop())
    assert len(log.of_kind(khadem_lab.EventKind.COMPLETED)) == 3
    assert demo.run()
    try:
        khadem_lab.lab.frames
    except ImportError as error:
        assert "blocked" in str(error)
    else:
        raise AssertionError("frames imported with pandas blocked")
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not loaded, loaded
    print("ok")
    """
)


def test_core_runs_with_the_lab_extras_blocked() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
