"""Install the server's own copy of pglast, for the Python that PL/Python runs.

PL/Python runs the distribution's ``python3``, not this virtualenv, and cannot see
it; the server needs pglast in a directory the server's OS user can read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from heal import PGLAST_VERSION

SYSTEM_PATH = Path("/usr/local/lib/pgheal/python")
SERVER_PYTHON = Path("/usr/bin/python3")


def default_path() -> Path:
    """Where the server's pglast goes: a system directory as root, else beside the venv."""
    if os.environ.get("PGHEAL_SERVER_PYTHON_PATH"):
        return Path(os.environ["PGHEAL_SERVER_PYTHON_PATH"])
    if os.geteuid() == 0:
        return SYSTEM_PATH
    return Path(sys.prefix) / "pgheal-server"


def server_python_version() -> str:
    """``3.11`` for the interpreter PL/Python uses (Debian's ``/usr/bin/python3``)."""
    python = SERVER_PYTHON if SERVER_PYTHON.exists() else Path(sys.executable)
    out = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def installed_version(target: Path) -> str | None:
    for dist in target.glob("pglast-*.dist-info"):
        return dist.name.removeprefix("pglast-").removesuffix(".dist-info")
    return None


def install(target: Path | None = None, python_version: str | None = None) -> tuple[Path, bool]:
    """Install pglast into `target`; return it and whether anything was installed."""
    target = target or default_path()
    if installed_version(target) == PGLAST_VERSION:
        return target, False
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:",
            "--python-version", python_version or server_python_version(),
            "--target", str(target), f"pglast=={PGLAST_VERSION}",
        ],
        check=True,
    )  # fmt: skip
    for root, dirs, files in os.walk(target):
        for name in dirs + files:
            path = Path(root, name)
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    target.chmod(0o755)
    return target, True
