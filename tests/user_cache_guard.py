"""A pytest plugin (registered by conftest.py): the session fails when it wrote into faceprint's real
user cache folder. Tests keep their caches in temporary folders (the evaluation cache) or in
``$FACEPRINT_CACHE_DIR`` (converted model weights, shareable between runs); the user's own cache, which
may hold embeddings of their photos, is never touched. A folder ``$FACEPRINT_CACHE_DIR`` names inside the
user cache is left out of the check: it was chosen on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from platformdirs import user_cache_dir


def _snapshot(root: Path, skip: Path | None) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``, files with their size and modification time."""
    found: dict[str, tuple[int, int]] = {}
    if not root.exists():
        return found
    for path in [root, *root.rglob("*")]:
        if skip is not None and (path == skip or skip in path.parents):
            continue
        try:
            stat = path.lstat()
        except OSError:  # removed meanwhile: it counts as a change below
            continue
        # A folder counts by being there: its time changes with the skipped folder's creation.
        found[str(path)] = (0, 0) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return found


class UserCacheGuard:
    def __init__(self) -> None:
        self.root = Path(user_cache_dir("faceprint")).resolve()
        shared = os.environ.get("FACEPRINT_CACHE_DIR")
        self.skip = Path(shared).resolve() if shared else None
        self.before = _snapshot(self.root, self.skip)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        after = _snapshot(self.root, self.skip)
        changed = sorted({p for p in self.before.keys() | after.keys() if self.before.get(p) != after.get(p)})
        if not changed:
            return
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        message = f"FAILED: the tests wrote into the real user cache folder {self.root}: {shown}"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(UserCacheGuard(), "faceprint-user-cache-guard")
