"""Write the lock files: one per install flavour (the core, each extra of pyproject.toml), with hashes.

Run by `make lock` after a change to pyproject.toml's dependencies; `make lock-upgrade` also moves every
package to the newest version pyproject allows. The locks are resolved for the machines faceprint is tested
on (CPython 3.11, x86-64 Linux); torch is the CPU build (2.13.0+cpu), found in a local wheel folder or
PyTorch's CPU wheel index (PIP_FIND_LINKS / UV_FIND_LINKS).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(argv: list[str]) -> int:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    find_links = os.environ.get("UV_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS") or "/opt/wheels"
    uv = [sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", "--generate-hashes", "--quiet"]
    uv += ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
    uv += [arg for link in find_links.split() for arg in ("--find-links", link)]
    uv += argv  # e.g. --upgrade
    for flavour in ["core", *extras]:
        out = HERE / f"{flavour}.txt"
        extra = [] if flavour == "core" else ["--extra", flavour]
        # Keep unchanged pins: uv reads the previous lock as preferences unless --upgrade is given.
        subprocess.run([*uv, *extra, "-o", str(out.relative_to(ROOT))], cwd=ROOT, check=True)
        print(f"{out.relative_to(ROOT)}: {sum(line[:1].isalnum() for line in out.read_text().splitlines())} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
