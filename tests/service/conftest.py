"""Fixtures for the service tests: the real app (TestClient) on a fresh gallery, models loaded once per
session, a key of every role."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`faceprint serve` in a child process; ``url`` once /api/v1/health answers."""

    def __init__(self, gallery: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from faceprint.cli import main; main()",
                "serve",
                "--gallery",
                str(gallery),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("serve did not start in 120 s")

    def wait_ready(self, key: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                httpx.get(self.url + "/api/v1/ready", headers={"X-API-Key": key}, timeout=5).status_code
                == 200
            ):
                return
            time.sleep(0.2)
        raise RuntimeError("models did not load")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read() if self.proc.stdout else ""


@pytest.fixture()
def server_factory():
    started: list[Server] = []

    def start(gallery: Path, *extra: str) -> Server:
        server = Server(gallery, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
