"""Where the server binaries are: PostgreSQL 15 (Debian) and PostgreSQL 16 (the pgserver wheel).

Part of tests/harness/servers.py (its CLI and importable names); standard library only."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import threading

from .common import (
    HarnessError, PG15_BIN_DIR, RUN_AS_USER, _is_root, _log, _rmtree, _run_user_can, ensure_run_user)


def pg15_bin_dir():
    return PG15_BIN_DIR


def _pgserver_pkg_dir():
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        raise HarnessError("python package pgserver (PostgreSQL 16 binaries) is not installed: "
                           "run scripts/bootstrap.sh and use .venv/bin/python")
    return os.path.dirname(spec.origin)


_pg16_lock = threading.Lock()


def pg16_bin_dir():
    """bin/ of the PostgreSQL 16 the pgserver wheel ships.

    When root, the binaries must be executable by ``dbopstest``; if the venv
    sits where that user cannot reach (e.g. under /root), they are copied once
    to /tmp/dbops-harness-pg16-<uid>/ (with pgserver.libs, psql's rpath
    needs it).
    """
    pkg = _pgserver_pkg_dir()
    bin_dir = os.path.join(pkg, "pginstall", "bin")
    if not os.path.isfile(os.path.join(bin_dir, "postgres")):
        raise HarnessError(f"no postgres binary in {bin_dir}")
    if not _is_root() or _run_user_can(["-x", os.path.join(bin_dir, "postgres")]):
        return bin_dir
    ensure_run_user()
    if _run_user_can(["-x", os.path.join(bin_dir, "postgres")]):
        return bin_dir
    with _pg16_lock:
        dest = f"/tmp/dbops-harness-pg16-{os.getuid()}"
        dest_bin = os.path.join(dest, "pgserver", "pginstall", "bin")
        if not os.path.isfile(os.path.join(dest, ".complete")):
            _log(f"{bin_dir} is not reachable by {RUN_AS_USER}: copying PostgreSQL 16 to {dest}")
            _rmtree(dest)
            os.makedirs(dest, mode=0o755)
            shutil.copytree(os.path.join(pkg, "pginstall"),
                            os.path.join(dest, "pgserver", "pginstall"), symlinks=True)
            libs = os.path.join(os.path.dirname(pkg), "pgserver.libs")
            if os.path.isdir(libs):
                shutil.copytree(libs, os.path.join(dest, "pgserver.libs"), symlinks=True)
            subprocess.run(["chmod", "-R", "a+rX", dest], check=True)
            with open(os.path.join(dest, ".complete"), "w", encoding="ascii") as f:
                f.write(bin_dir + "\n")
        return dest_bin
