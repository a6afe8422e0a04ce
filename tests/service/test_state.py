"""Where the service keeps its state file: beside a SQLite gallery; for a database URL, one file per
database in the user data folder (the same for every password, never a path made from the URL)."""

from __future__ import annotations

from pathlib import Path

from faceprint.service.state import state_path_for


def test_state_file_beside_a_sqlite_gallery(tmp_path: Path):
    assert state_path_for(tmp_path / "team.sqlite3") == tmp_path / "team.service.sqlite3"
    assert state_path_for(str(tmp_path / "people")) == tmp_path / "people.service.sqlite3"


def test_state_file_per_database_url(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    a = state_path_for("postgresql://ops:secret@db.example:5432/faces")
    assert a == state_path_for("postgresql://ops:rotated@db.example:5432/faces?sslmode=require")
    assert a != state_path_for("postgresql://ops:secret@db.example:5432/other")
    assert a.name.startswith("service-") and a.suffix == ".sqlite3"
    assert "secret" not in str(a) and "postgresql" not in str(a)
    assert a.parent.is_absolute()


def test_state_file_follows_faceprint_gallery(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("FACEPRINT_GALLERY", "postgresql://ops@db.example/faces")
    assert state_path_for(None) == state_path_for("postgresql://ops@db.example/faces")
    monkeypatch.setenv("FACEPRINT_GALLERY", str(tmp_path / "env.sqlite3"))
    assert state_path_for(None) == tmp_path / "env.service.sqlite3"
