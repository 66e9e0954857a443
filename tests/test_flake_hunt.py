"""The flake hunt's own parts: the repeat plugin makes N ids of each test, and a failure is
counted against the test it repeats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.flake_hunt import FAILED
from tests.support.repeat import run_of


def test_run_of_strips_only_the_repeat_suffix():
    assert run_of("t.py::test_x[r3]") == "t.py::test_x"
    assert run_of("t.py::test_x[a-b-r12]") == "t.py::test_x[a-b]"
    assert run_of("t.py::test_x[rate]") == "t.py::test_x[rate]"
    assert run_of("t.py::test_x") == "t.py::test_x"


def test_repeat_runs_each_test_n_times_and_failures_are_named(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('x', [1, 2])\n"
        "def test_p(x, _repeat_run):\n    assert not (x == 2 and _repeat_run == 1)\n"
        "def test_plain():\n    pass\n")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.support.repeat",
                        "--repeat", "3", "-rf", str(tmp_path / "test_sample.py")], capture_output=True, text=True,
                       cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(root)}, timeout=120)
    assert "1 failed, 8 passed" in r.stdout, r.stdout
    assert [run_of(m.split("::", 1)[1]) for m in FAILED.findall(r.stdout)] == ["test_p[2]"]
