"""Shared fixtures: the read-only data set beside the checkout, skipped with a reason when absent.

``FACEPRINT_STRICT=1`` (set by CI) turns every skip into a failure that gives the skip's reason: a missing
data folder, test oracle (TensorFlow, dlib, faceie), browser or database must not quietly shrink the
suite. Skips a ``skipif`` marker asks for (the platform lacks what the test measures) stay skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))


STRICT = os.environ.get("FACEPRINT_STRICT", "") not in ("", "0")


def _strict_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"FACEPRINT_STRICT is set, so this skip fails: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    wanted = any(True for _ in item.iter_markers("skipif"))
    if STRICT and report.skipped and not hasattr(report, "wasxfail") and not wanted:
        _strict_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:  # a module-level importorskip
        _strict_failure(report)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data not found at {path} (set FACEPRINT_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces: labelled stills, a multi-face photo, aligned crops, a crowd video."""
    return _need(DATA / "faces")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """../shared/data/lfw/lfw-deepfunneled: LFW identity folders of 250x250 JPEGs."""
    return _need(DATA / "lfw" / "lfw-deepfunneled")


@pytest.fixture(scope="session")
def lfw_protocol() -> Path:
    """../shared/data/lfw/protocol: pairs.txt and the other official protocol files."""
    return _need(DATA / "lfw" / "protocol")


@pytest.fixture(scope="session")
def astronaut():
    """An RGB photo with one face that ships with scikit-image: usable on any machine."""
    from skimage import data

    return data.astronaut()
