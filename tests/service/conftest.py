"""Fixtures for the service tests: the real app (TestClient) on a fresh gallery, models loaded once per
session, a key of every role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def analyzer():
    from faceprint.analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="session")
def knn_dir(faces_dir: Path) -> Path:
    return faces_dir / "face_recognition" / "examples" / "knn_examples"


@dataclass
class Service:
    client: object
    app: object
    engine: object
    keys: dict[str, str]  # role -> token
    folder: Path

    def h(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def make_service(folder: Path, analyzer, **options) -> tuple:
    from faceprint.service.app import create_app
    from faceprint.service.config import ServiceConfig
    from faceprint.service.engine import Engine

    config = ServiceConfig(gallery=str(folder / "g.sqlite3"), **options)
    engine = Engine(config, analyzer)
    keys = {
        role: engine.state.create_key(role, f"test {role}")[1] for role in ("admin", "enrol", "recognize")
    }
    return create_app(config, engine), engine, keys


@pytest.fixture()
def make_app(analyzer):
    """``make_app(folder, **ServiceConfig options)`` -> (app, engine, keys by role)."""
    return lambda folder, **options: make_service(folder, analyzer, **options)


@pytest.fixture()
def service(tmp_path: Path, analyzer):
    from fastapi.testclient import TestClient

    app, engine, keys = make_service(tmp_path, analyzer)
    with TestClient(app) as client:
        yield Service(client, app, engine, keys, tmp_path)
