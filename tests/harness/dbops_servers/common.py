"""Constants, errors, small process/port/file helpers and the unprivileged user PostgreSQL runs as.

Part of tests/harness/servers.py (its CLI and importable names); standard library only."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import time


SERVER_NAMES = ("pg15", "pg16", "mariadb")
KINDS = SERVER_NAMES
DEFAULT_PORTS = {"pg15": 5432, "pg16": 5432, "mariadb": 3306}
INSTANCES_FILE = "instances.json"
ADMIN_USER = "dbops_admin"
RUN_AS_USER = "dbopstest"
LOCALHOST = "127.0.0.1"
STATE_FILE = "servers.json"
PG15_BIN_DIR = "/usr/lib/postgresql/15/bin"
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "/usr/bin/mariadb-install-db"
MARIADB_CLIENT = "/usr/bin/mariadb"
START_TIMEOUT = float(os.environ.get("DBOPS_SERVER_START_TIMEOUT", "120"))
STOP_TIMEOUT = 60.0
PORT_RETRIES = 3

_print_lock = threading.Lock()


class HarnessError(RuntimeError):
    """A server could not be started, checked or stopped."""


class PortInUse(HarnessError):
    """The server could not bind its port (someone took it meanwhile)."""


def _log(msg):
    with _print_lock:
        print(f"servers: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def _is_root():
    return os.geteuid() == 0


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _write_private(path, text, owner=None):
    """Write ``text`` to ``path`` with mode 0600 (optionally chowned to ``owner`` (uid, gid))."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _write_json_private(path, data):
    tmp = f"{path}.tmp.{os.getpid()}"
    _write_private(tmp, json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _free_ports(count, host=LOCALHOST):
    socks = []
    try:
        while len(socks) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(host, port):
    """True if nothing listens on ``host:port`` (nor on the wildcard address at ``port``)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(1)
        if s.connect_ex((host, port)) == 0:
            return False
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)  # a listener on 0.0.0.0:port makes this fail even with SO_REUSEADDR
        except OSError:
            return False
    return True


def _port_for(kind, host):
    """The kind's default port on ``host`` if it is free there, else a free port of ``host``."""
    port = DEFAULT_PORTS[kind]
    if port_is_free(host, port):
        return port
    return _free_ports(1, host)[0]


def _read_password_file(path):
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise HarnessError(f"password file {path} must not be readable by group or others "
                           f"(mode {st.st_mode & 0o777:04o}): chmod 0600 it")
    with open(path, encoding="utf-8") as f:
        password = f.read().strip()
    if not password:
        raise HarnessError(f"password file {path} is empty")
    return password


def _pid_alive(pid):
    """True if ``pid`` runs (reaps it first if it is our own exited child)."""
    if not pid or pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


pid_alive = _pid_alive


def _pid_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _kill_pid(pid, sig):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _read_pid(path):
    try:
        with open(path, encoding="ascii") as f:
            return int(f.readline().strip() or 0)
    except (OSError, ValueError):
        return 0


def _rmtree(path):
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.exists(path):
        shutil.rmtree(path, ignore_errors=True)


def _clean_env(drop_prefixes=()):
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(tuple(drop_prefixes)):
            del env[key]
    env["LC_ALL"] = "C.UTF-8"
    env.pop("LANG", None)
    return env


@contextlib.contextmanager
def _locked(state_dir):
    fd = os.open(os.path.join(state_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------
# the unprivileged user PostgreSQL runs as when we are root
# --------------------------------------------------------------------------

_user_lock = threading.Lock()


def ensure_run_user():
    """Return (uid, gid) the PostgreSQL servers run as, creating ``dbopstest`` if root."""
    if not _is_root():
        return os.geteuid(), os.getegid()
    with _user_lock:
        try:
            pw = pwd.getpwnam(RUN_AS_USER)
        except KeyError:
            res = subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home",
                 "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                 "--comment", "dbops.maintenance test servers", RUN_AS_USER],
                capture_output=True, text=True, check=False)
            try:
                pw = pwd.getpwnam(RUN_AS_USER)
            except KeyError:
                raise HarnessError(
                    f"cannot create system user {RUN_AS_USER} (PostgreSQL refuses to run as "
                    f"root): {res.stdout}{res.stderr}") from None
            _log(f"created system user {RUN_AS_USER} (uid {pw.pw_uid}) to run PostgreSQL")
        return pw.pw_uid, pw.pw_gid


def _as_run_user(cmd):
    if _is_root():
        return ["runuser", "-u", RUN_AS_USER, "--"] + list(cmd)
    return list(cmd)


def _chown_run_user(path, ids):
    if _is_root():
        os.chown(path, ids[0], ids[1])


def _run_user_can(test_args):
    if not _is_root():
        return True
    return subprocess.run(_as_run_user(["test"] + test_args), check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
