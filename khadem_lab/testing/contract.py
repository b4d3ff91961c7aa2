"""The driver contract as a pytest base class (Huey's ``StorageTests``): subclass it, say how to
make your driver, and pytest runs every check of the contract on it.

.. code-block:: python

    # tests/test_my_driver.py
    from khadem_lab.testing.contract import DriverContract

    class TestMyDriver(DriverContract):
        def make_driver(self, config, clock, registry, tmp_path):
            return MyDriver(config, clock=clock, registry=registry)

This module imports pytest (``pip install pytest``); :func:`khadem_lab.testing.run_contract` runs
the same checks without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..clock import Clock
from ..config import DriverConfig
from ..drivers.base import BaseQueueDriver
from ..registry import JobRegistry
from .checks import CHECKS, Check
from .harness import DriverCase, MakeQueue, QueueMaker, SkipCheck


class DriverContract:
    """Base class of a pytest test class that runs the driver contract: one test per check
    (``test_<check name>``, and one per case of a check with params).

    Override :meth:`make_driver` (and set :attr:`runs_inline` for a driver that runs jobs inside
    dispatch), or override the ``contract_case`` fixture to give a :class:`DriverCase` (a project
    with several drivers parametrizes it)."""

    #: True for a driver that runs jobs inside dispatch (no queue for workers to take from).
    runs_inline: ClassVar[bool] = False

    def make_driver(
        self, config: DriverConfig, clock: Clock, registry: JobRegistry, tmp_path: Path
    ) -> BaseQueueDriver:
        """A new, empty driver with ``config``, on ``clock``, with the job ``registry``;
        ``tmp_path`` is a fresh empty directory it may keep files in."""
        raise NotImplementedError(
            f"{type(self).__name__} must define make_driver(config, clock, registry, tmp_path)"
        )

    @pytest.fixture
    def contract_case(self) -> DriverCase:
        """The driver under test: by default :meth:`make_driver`, named after the class."""
        return DriverCase(type(self).__name__, self.make_driver, runs_inline=self.runs_inline)

    @pytest.fixture
    def make_queue(self, contract_case: DriverCase, tmp_path: Path) -> Iterator[MakeQueue]:
        """``make_queue(**DriverConfig fields)``: a fresh driver of the case on its own simulation."""
        with QueueMaker(contract_case, tmp_path) as maker:
            yield maker


def _run(check: Check, make_queue: MakeQueue, kwargs: Mapping[str, Any]) -> None:
    try:
        check.function(make_queue, **kwargs)
    except SkipCheck as exc:
        pytest.skip(str(exc))


def _test_of(check: Check) -> Callable[..., None]:
    """A pytest test method that runs ``check`` (parametrized by its params' ids, if it has any)."""
    test: Callable[..., None]
    if check.params:

        def test(self: DriverContract, make_queue: MakeQueue, contract_params: Mapping[str, Any]) -> None:
            _run(check, make_queue, contract_params)

        cases = [pytest.param(kwargs, id=case_id) for case_id, kwargs in check.params.items()]
        test = pytest.mark.parametrize("contract_params", cases)(test)
    else:

        def test(self: DriverContract, make_queue: MakeQueue) -> None:
            _run(check, make_queue, {})

    test.__name__ = test.__qualname__ = f"test_{check.name}"
    test.__doc__ = check.function.__doc__
    return test


for _check in CHECKS:
    setattr(DriverContract, f"test_{_check.name}", _test_of(_check))
del _check
