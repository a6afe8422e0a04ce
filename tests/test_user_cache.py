"""Tests never write into the user's own cache folder (where evaluation caches of their photos would
live): the session's check (``user_cache_guard``) catches a test that does, and the evaluation cache of
a test session is a temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

GUARD = Path(__file__).with_name("user_cache_guard.py")

WRITES = """
from pathlib import Path
from platformdirs import user_cache_dir

def test_writes():
    folder = Path(user_cache_dir("faceprint")) / "{sub}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "embeddings.sqlite").write_bytes(b"x")
"""


@pytest.mark.parametrize("shared", [False, True])
def test_a_session_that_writes_into_the_user_cache_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: bool
) -> None:
    home = tmp_path / "xdg-cache"  # stands in for the real user cache, which this test must not touch
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    if shared:  # weights shared on purpose under the user cache do not count; anything else does
        monkeypatch.setenv("FACEPRINT_CACHE_DIR", str(home / "faceprint" / "models"))
    else:
        monkeypatch.delenv("FACEPRINT_CACHE_DIR", raising=False)
    pytester.makeconftest(GUARD.read_text())
    pytester.makepyfile(test_bad=WRITES.format(sub="evaluation"))
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED: the tests wrote into the real user cache folder {home}*"])
    if shared:
        pytester.makepyfile(test_bad=WRITES.format(sub="models"))
        assert pytester.runpytest_subprocess("-p", "no:randomly").ret == pytest.ExitCode.OK


def test_the_evaluation_cache_of_a_test_session_is_temporary() -> None:
    from platformdirs import user_cache_dir

    from faceprint.evaluation.cache import EmbeddingCache
    from faceprint.models import cache_dir

    cache = EmbeddingCache()
    try:
        assert Path(user_cache_dir("faceprint")) not in cache.path.parents
        assert cache_dir() not in cache.path.parents
    finally:
        cache.close()
