"""Usage errors: the usage line and exit status 2, never a traceback — through the entry
point's code path in a fresh interpreter, so an undeclared import on the error path fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _faceprint(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from faceprint.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["detect", "--bogus", "x"], "No such option"),
        (["no-such-command"], "No such command"),
        (["compare", "only-one.jpg"], "Missing argument"),
        (["identify", "x.jpg", "--top-k", "many"], "--top-k"),
    ],
)
def test_usage_error_prints_usage_and_exits_2(args: list[str], says: str) -> None:
    proc = _faceprint(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Usage: faceprint" in proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_help_exits_0() -> None:
    proc = _faceprint("--help")
    assert proc.returncode == 0
    assert "detect" in proc.stdout and "Traceback" not in proc.stderr
