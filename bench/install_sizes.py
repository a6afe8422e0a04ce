"""Installed size of each install flavour of faceprint: the core, each extra, everything for development.

Each flavour goes into a throwaway venv from its lock file (requirements/FLAVOUR.txt, hashes checked),
then faceprint itself without dependencies; the table gives the venv's site-packages size and the
largest packages in it. The anchor is the dev flavour, what `make setup` installs.

    python bench/install_sizes.py [--flavours core eval train dev]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _measure(flavour: str, work: Path) -> tuple[int, float, list[tuple[str, int]]]:
    venv = work / flavour
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    lock = ROOT / "requirements" / f"{flavour}.txt"
    subprocess.run([*pip, "--require-hashes", "-r", str(lock)], check=True)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True)
    seconds = time.perf_counter() - start
    site = next((venv / "lib").glob("python*/site-packages"))
    parts = sorted(((p.name, _size(p)) for p in site.iterdir() if p.is_dir()), key=lambda x: -x[1])
    return _size(site), seconds, parts[:5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    flavours = sorted(p.stem for p in (ROOT / "requirements").glob("*.txt"))
    parser.add_argument("--flavours", nargs="+", default=flavours)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="faceprint-sizes-"))
    rows = []
    try:
        for flavour in args.flavours:
            size, seconds, top = _measure(flavour, work)
            rows.append((flavour, size, seconds, top))
            shutil.rmtree(work / flavour)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'flavour':<10} {'installed MB':>12} {'install s':>10}  largest packages (MB)")
    for flavour, size, seconds, top in rows:
        largest = ", ".join(f"{name} {s / 1e6:.0f}" for name, s in top)
        print(f"{flavour:<10} {size / 1e6:>12.0f} {seconds:>10.0f}  {largest}")


if __name__ == "__main__":
    main()
