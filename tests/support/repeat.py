"""``-p tests.support.repeat --repeat N``: run every collected test N times (for flake hunts,
tests/support/flake_hunt.py). Each run is its own test id (``[r3]``), so pytest-xdist spreads the
copies over its workers like any other tests."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--repeat", type=int, default=1, help="run each test this many times")


@pytest.fixture
def _repeat_run(request: pytest.FixtureRequest) -> int:
    return request.param


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    n = metafunc.config.getoption("repeat")
    if n > 1:
        metafunc.fixturenames.append("_repeat_run")
        metafunc.parametrize("_repeat_run", range(n), indirect=True, ids=[f"r{i}" for i in range(n)])


def run_of(nodeid: str) -> Any:
    """The test id without its repeat suffix: test_x[a-r3] -> test_x[a], test_x[r3] -> test_x."""
    base, _, params = nodeid.partition("[")
    if not params:
        return nodeid
    parts = params.rstrip("]").split("-")
    rest = [p for p in parts if not (p.startswith("r") and p[1:].isdigit())]
    return base + (f"[{'-'.join(rest)}]" if rest else "")
