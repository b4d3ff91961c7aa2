"""The lab layer: tables, scenarios, plots and widgets over the core (never the reverse).

Needs the ``lab`` extra (pandas, matplotlib, ipywidgets, tqdm). Nothing heavy is imported until a
submodule is used: ``from khadem_lab.lab import frames`` or ``khadem_lab.lab.frames``.

- :mod:`~khadem_lab.lab.frames`: the event history as pandas DataFrames.
- :mod:`~khadem_lab.lab.scenarios`: seeded workloads and failure injection, run headless.
- :mod:`~khadem_lab.lab.plots`: matplotlib figures of those frames.
- :mod:`~khadem_lab.lab.widgets`: ipywidgets panels for a notebook.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["frames", "plots", "scenarios", "widgets"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the submodules load on first use
    from . import frames, scenarios


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
