"""Create the project's virtual environment on first run and re-run inside it.

Standard library only: this runs under whatever ``python3`` the user typed, before any
dependency is installed. The venv is rebuilt when ``pyproject.toml`` or
``constraints.txt`` change (a hash of both is kept in the venv).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("MEMORY_PROXY_VENV") or ROOT / ".venv")
STAMP = VENV / ".installed"
# The project installed as a plain path entry (a .pth line), not through setuptools' editable
# import hook, which every interpreter start (each command, each process) paid ~20 ms to load.
EDITABLE = ("--config-settings", "editable_mode=compat", "-e")


def _wanted_stamp() -> str:
    import hashlib  # here: only the interpreter the user typed checks the venv; the venv's own never does

    digest = hashlib.sha256(" ".join(EDITABLE).encode())
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Make sure the venv exists with every pinned dependency; return its python."""
    wanted = _wanted_stamp()
    if STAMP.is_file() and STAMP.read_text() == wanted and venv_python().exists():
        return venv_python()
    if sys.version_info < (3, 11):  # noqa: UP036 (this runs under whatever python3 the user typed)
        sys.exit(f"LiteLLM Memory Proxy needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not venv_python().exists():
        import venv  # only on first run: importing it costs every command ~40 ms

        print(f"[setup] creating virtual environment in {VENV}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("[setup] installing dependencies (first run takes a few minutes)", file=sys.stderr, flush=True)
    cmd = [
        str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q",
        "-c", str(ROOT / "constraints.txt"), *EDITABLE, f"{ROOT}[test]",
    ]
    import subprocess  # only to install: importing it costs every command ~10 ms

    result = subprocess.run(cmd)
    if result.returncode != 0:
        sys.exit(f"[setup] dependency installation failed (exit {result.returncode}): {' '.join(cmd)}")
    STAMP.write_text(wanted)
    return venv_python()


def in_project_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def compile_package() -> None:
    """Write the bytecode of the project's own modules where it is missing or older than the source.

    pip compiles every package it installs, but this one is installed as a path entry, so its
    modules are compiled by whichever import may write the result. With
    ``PYTHONDONTWRITEBYTECODE`` set (as on some shared machines) none may, and every command
    compiled them again from source: about 40 ms of each ``status``. The check is one
    directory listing and a stat per module; unwritable checkouts are left as they are."""
    from importlib.util import cache_from_source

    package = ROOT / "memory_proxy"
    try:
        folders = [package, *(Path(e.path) for e in os.scandir(package) if e.is_dir() and e.name.isidentifier())]
        if all(_compiled(folder, cache_from_source) for folder in folders):
            return
    except OSError:
        return
    import compileall

    compileall.compile_dir(package, maxlevels=1, quiet=2)  # the package and its subpackages


def _compiled(folder: Path, cache_from_source) -> bool:
    for entry in os.scandir(folder):
        if entry.name.endswith(".py"):
            try:
                if os.stat(cache_from_source(entry.path)).st_mtime < entry.stat().st_mtime:
                    return False
            except OSError:
                return False
    return True


def reexec_in_venv() -> None:
    """Re-run the current command with the venv's interpreter unless already inside it
    (where the project's bytecode is brought up to date first)."""
    if in_project_venv():
        compile_package()
        return
    python = ensure_venv()
    os.execv(str(python), [str(python), *sys.argv])
