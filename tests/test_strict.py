"""FACEPRINT_STRICT=1 (CI) makes a missing data folder or oracle fail; without it, it skips with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
# The conftest loads this plugin from its own folder, so the copy needs it beside it.
GUARD = Path(__file__).with_name("user_cache_guard.py")

MISSING = """
import pytest

oracle = pytest.importorskip("no_such_oracle_module", reason="the oracle is not installed")

def test_needs_oracle():
    pass
"""

DATA = """
import pytest

def test_needs_data(lfw_dir):
    pass

@pytest.mark.skipif(True, reason="the platform lacks what this measures")
def test_platform():
    pass

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(user_cache_guard=GUARD.read_text())
    pytester.makepyfile(test_missing_oracle=MISSING, test_missing_data=DATA)
    monkeypatch.setenv("FACEPRINT_DATA", str(pytester.path / "no-data-here"))
    return pytester


def test_without_strict_missing_things_skip_with_a_reason(suite: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv("FACEPRINT_STRICT", raising=False)
    result = suite.runpytest_subprocess("-rs", "-p", "no:randomly")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*the oracle is not installed*", "*test data not found at*no-data-here*"])


def test_strict_turns_missing_things_into_failures(suite: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("FACEPRINT_STRICT", "1")
    result = suite.runpytest_subprocess("-p", "no:randomly", "--continue-on-collection-errors")
    # both as errors: the oracle at collection, the data folder in the fixture (the test's set-up)
    result.assert_outcomes(passed=1, skipped=1, errors=2)
    result.stdout.fnmatch_lines(["*FACEPRINT_STRICT is set, so this skip fails*the oracle is not installed*"])
    result.stdout.fnmatch_lines(["*FACEPRINT_STRICT is set, so this skip fails*test data not found*"])
