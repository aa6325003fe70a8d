"""A PostgreSQL server (15 or 16) in its own data directory: initdb, start, readiness, stop.

Part of tests/harness/servers.py (its CLI and importable names); standard library only."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time

from .common import (
    ADMIN_USER, HarnessError, LOCALHOST, PG15_BIN_DIR, PortInUse, RUN_AS_USER, STOP_TIMEOUT,
    _as_run_user, _chown_run_user, _clean_env, _is_root, _kill_pid, _pid_cmdline, _read_pid,
    _rmtree, _run_user_can, _tail, _wait_pid_gone, _write_private, ensure_run_user)
from .pgserver import pg15_bin_dir, pg16_bin_dir


class PostgresServer:
    engine = "postgresql"

    def __init__(self, name, state_dir, kind=None, address=LOCALHOST):
        self.name = name
        self.kind = kind or name
        self.address = address
        self.state_dir = state_dir
        self.dir = os.path.join(state_dir, name)
        self.data = os.path.join(self.dir, "data")
        self.sock_dir = os.path.join(self.dir, "run")
        self.log_file = os.path.join(self.dir, "postgres.log")

    def bin_dir(self):
        return pg15_bin_dir() if self.kind == "pg15" else pg16_bin_dir()

    # -- client -----------------------------------------------------------
    @staticmethod
    def _psql(info, sql, timeout=15):
        env = _clean_env(("PG",))
        env["PGPASSWORD"] = info["login_password"]
        env["PGCONNECT_TIMEOUT"] = "5"
        env["PGSSLMODE"] = "disable"
        psql = os.path.join(info["bin_dir"], "psql")
        if not os.access(psql, os.X_OK):
            psql = os.path.join(PG15_BIN_DIR, "psql")
        return subprocess.run(
            [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", info["login_host"], "-p", str(info["login_port"]),
             "-U", info["login_user"], "-d", info.get("database", "postgres"), "-c", sql],
            env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def alive(self, info):
        try:
            res = self._psql(info, "SELECT 1", timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return res.returncode == 0 and res.stdout.strip() == "1"

    # -- lifecycle ----------------------------------------------------------
    def start(self, port, password, timeout, password_file=None):
        ids = ensure_run_user()
        bin_dir = self.bin_dir()
        _rmtree(self.dir)
        os.makedirs(self.sock_dir, mode=0o700)
        os.chmod(self.dir, 0o700)
        _chown_run_user(self.dir, ids)
        _chown_run_user(self.sock_dir, ids)
        if not _run_user_can(["-w", self.dir]):
            raise HarnessError(
                f"{self.name}: user {RUN_AS_USER} cannot write {self.dir}: every parent of the "
                "state dir must be searchable by others (o+x); use a state dir under /tmp")
        pwfile = os.path.join(self.dir, "pwfile")
        _write_private(pwfile, password + "\n", owner=ids)
        try:
            res = subprocess.run(
                _as_run_user([os.path.join(bin_dir, "initdb"), "-D", self.data,
                              "-U", ADMIN_USER, f"--pwfile={pwfile}",
                              "--auth-host=scram-sha-256", "--auth-local=trust",
                              "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]),
                cwd=self.dir, env=_clean_env(("PG",)), capture_output=True, text=True,
                timeout=timeout, check=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pwfile)
        if res.returncode != 0:
            raise HarnessError(f"{self.name}: initdb failed (rc {res.returncode}):\n"
                               f"{res.stdout}{res.stderr}")
        with open(os.path.join(self.data, "postgresql.conf"), "a", encoding="utf-8") as f:
            f.write(f"""
# --- dbops.maintenance test harness ---
listen_addresses = '{self.address}'
port = {port}
unix_socket_directories = '{self.sock_dir}'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 1GB
checkpoint_timeout = 30min
password_encryption = 'scram-sha-256'
logging_collector = off
log_destination = 'stderr'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
lc_messages = 'C'
""")
        if self.address != LOCALHOST:
            # A client of 127.0.0.11 connects from 127.0.0.11 (or 127.0.0.1): initdb's
            # pg_hba.conf only allows 127.0.0.1/32 over TCP.
            with open(os.path.join(self.data, "pg_hba.conf"), "a", encoding="utf-8") as f:
                f.write("host    all    all    127.0.0.0/8    scram-sha-256\n")
        res = subprocess.run(
            _as_run_user([os.path.join(bin_dir, "pg_ctl"), "start", "-D", self.data,
                          "-l", self.log_file, "-w", "-t", str(int(timeout)), "-s"]),
            cwd=self.dir, env=_clean_env(("PG",)), capture_output=True, text=True,
            timeout=timeout + 30, check=False, start_new_session=True)
        log_tail = _tail(self.log_file)
        if res.returncode != 0:
            if "Address already in use" in log_tail:
                raise PortInUse(f"{self.name}: port {port} in use")
            raise HarnessError(f"{self.name}: pg_ctl start failed (rc {res.returncode}): "
                               f"{res.stdout}{res.stderr}\n--- {self.log_file} (tail) ---\n"
                               f"{log_tail}")
        info = {
            "engine": self.engine,
            "login_host": self.address,
            "login_port": port,
            "login_user": ADMIN_USER,
            "login_password": password,
            "database": "postgres",
            "bin_dir": bin_dir,
            "data_dir": self.data,
            "socket_dir": self.sock_dir,
            "log_file": self.log_file,
            "run_as": RUN_AS_USER if _is_root() else pwd.getpwuid(os.geteuid()).pw_name,
        }
        if self.kind != self.name:
            info["kind"] = self.kind
        if password_file:
            info["password_file"] = password_file
        deadline = time.monotonic() + timeout
        while True:
            res = self._psql(info, "SHOW server_version")
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name}: started but a password login over TCP on port {port} fails: "
                    f"{res.stderr.strip()}\n--- {self.log_file} (tail) ---\n{_tail(self.log_file)}")
            time.sleep(0.2)
        full = res.stdout.strip()
        info["version_full"] = full
        info["version"] = full.split()[0]
        return info

    def stop(self, info=None):
        pid_file = os.path.join(self.data, "postmaster.pid")
        if not os.path.exists(pid_file):
            _rmtree(self.dir)
            return
        pid = _read_pid(pid_file)
        bin_dir = (info or {}).get("bin_dir")
        if not bin_dir:
            with contextlib.suppress(HarnessError):
                bin_dir = self.bin_dir()
        stopped = False
        if bin_dir and os.path.exists(os.path.join(bin_dir, "pg_ctl")):
            with contextlib.suppress(subprocess.TimeoutExpired):
                res = subprocess.run(
                    _as_run_user([os.path.join(bin_dir, "pg_ctl"), "stop", "-D", self.data,
                                  "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT)), "-s"]),
                    cwd="/", env=_clean_env(("PG",)), capture_output=True, text=True,
                    timeout=STOP_TIMEOUT + 10, check=False)
                stopped = res.returncode == 0
        if pid and not stopped and "postgres" in _pid_cmdline(pid):
            _kill_pid(pid, signal.SIGINT)  # fast shutdown
            if not _wait_pid_gone(pid, STOP_TIMEOUT / 2):
                _kill_pid(pid, signal.SIGQUIT)  # immediate shutdown
                if not _wait_pid_gone(pid, 10):
                    _kill_pid(pid, signal.SIGKILL)
                    _wait_pid_gone(pid, 10)
        _rmtree(self.dir)
