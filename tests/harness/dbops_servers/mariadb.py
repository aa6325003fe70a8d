"""A MariaDB server in its own data directory: install-db, start, readiness, stop.

Part of tests/harness/servers.py (its CLI and importable names); standard library only."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time

from .common import (
    ADMIN_USER, HarnessError, LOCALHOST, MARIADBD, MARIADB_CLIENT, MARIADB_INSTALL_DB, PortInUse,
    STOP_TIMEOUT, _clean_env, _is_root, _kill_pid, _log, _pid_alive, _pid_cmdline, _read_pid,
    _rmtree, _tail, _wait_pid_gone, _write_private)


class MariaDBServer:
    engine = "mysql"

    def __init__(self, name, state_dir, kind=None, address=LOCALHOST):
        self.name = name
        self.kind = kind or name
        self.address = address
        self.state_dir = state_dir
        self.dir = os.path.join(state_dir, name)
        self.data = os.path.join(self.dir, "data")
        self.tmp = os.path.join(self.dir, "tmp")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.pid_file = os.path.join(self.dir, "mariadbd.pid")
        self.launcher_pid_file = os.path.join(self.dir, "launcher.pid")
        self.log_file = os.path.join(self.dir, "mariadbd.log")
        self.out_file = os.path.join(self.dir, "mariadbd.out")
        self.cnf = os.path.join(self.dir, "my.cnf")
        self.init_file = os.path.join(self.dir, "init.sql")
        self.client_cnf = os.path.join(self.dir, "client.cnf")

    # -- client -----------------------------------------------------------
    def _client(self, info, sql, timeout=15):
        env = _clean_env(("MYSQL", "MARIADB"))
        if info.get("password_file"):
            # The password stays in its own file: the client gets it in its environment.
            env["MYSQL_PWD"] = info["login_password"]
            cnf = os.path.join(self.dir, "client-nopw.cnf")
            if not os.path.exists(cnf):
                _write_private(cnf, f"[client]\nuser={info['login_user']}\n"
                                    f"host={info['login_host']}\nport={info['login_port']}\n"
                                    "protocol=tcp\nconnect-timeout=5\n")
        else:
            cnf = self.client_cnf
            if not os.path.exists(cnf):
                _write_private(cnf,
                               f"[client]\nuser={info['login_user']}\n"
                               f"password={info['login_password']}\n"
                               f"host={info['login_host']}\nport={info['login_port']}\n"
                               "protocol=tcp\nconnect-timeout=5\n")
        return subprocess.run(
            [MARIADB_CLIENT, f"--defaults-file={cnf}", "--batch",
             "--skip-column-names", "-e", sql],
            env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def alive(self, info):
        try:
            res = self._client(info, "SELECT 1", timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return res.returncode == 0 and res.stdout.strip() == "1"

    # -- lifecycle ----------------------------------------------------------
    def start(self, port, password, timeout, password_file=None):
        _rmtree(self.dir)
        os.makedirs(self.tmp, mode=0o700)
        os.chmod(self.dir, 0o700)
        user_opt = ["--user=root"] if _is_root() else []
        res = subprocess.run(
            [MARIADB_INSTALL_DB, "--no-defaults", f"--datadir={self.data}",
             "--skip-test-db", "--skip-name-resolve", "--auth-root-authentication-method=socket",
             "--skip-log-bin", "--innodb-buffer-pool-size=64M", f"--tmpdir={self.tmp}",
             *user_opt],
            cwd=self.dir, env=_clean_env(("MYSQL", "MARIADB")), capture_output=True, text=True,
            timeout=timeout, check=False)
        if res.returncode != 0:
            raise HarnessError(f"{self.name}: mariadb-install-db failed (rc {res.returncode}):\n"
                               f"{res.stdout[-4000:]}{res.stderr[-4000:]}")
        with open(self.cnf, "w", encoding="utf-8") as f:
            f.write(f"""# dbops.maintenance test harness
[mariadbd]
datadir = {self.data}
tmpdir = {self.tmp}
socket = {self.socket}
pid-file = {self.pid_file}
log-error = {self.log_file}
port = {port}
bind-address = {self.address}
skip-name-resolve
skip-log-bin
skip-external-locking
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
max_connections = 300
max_allowed_packet = 64M
innodb_buffer_pool_size = 256M
innodb_flush_log_at_trx_commit = 2
innodb_doublewrite = 0
innodb_flush_method = O_DIRECT_NO_FSYNC
""" + ("user = root\n" if _is_root() else ""))
        quoted = password.replace("\\", "\\\\").replace("'", "\\'")
        _write_private(self.init_file, "".join(
            f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'{host}' IDENTIFIED BY '{quoted}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION;\n"
            for host in dict.fromkeys((self.address, LOCALHOST, "localhost"))))
        with open(self.out_file, "ab") as out:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [MARIADBD, f"--defaults-file={self.cnf}", f"--init-file={self.init_file}"],
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_clean_env(("MYSQL", "MARIADB")), start_new_session=True, close_fds=True)
        with open(self.launcher_pid_file, "w", encoding="ascii") as f:
            f.write(f"{proc.pid}\n")
        info = {
            "engine": self.engine,
            "login_host": self.address,
            "login_port": port,
            "login_user": ADMIN_USER,
            "login_password": password,
            "database": "mysql",
            "socket": self.socket,
            "bin_dir": os.path.dirname(MARIADBD),
            "data_dir": self.data,
            "log_file": self.log_file,
            "run_as": pwd.getpwuid(os.geteuid()).pw_name,
        }
        if self.kind != self.name:
            info["kind"] = self.kind
        if password_file:
            info["password_file"] = password_file
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log_tail = _tail(self.log_file) + "\n" + _tail(self.out_file, 10)
                if "Address already in use" in log_tail or "Do you already have another" in log_tail:
                    raise PortInUse(f"{self.name}: port {port} in use")
                raise HarnessError(f"{self.name}: mariadbd exited with rc {proc.returncode} "
                                   f"during startup\n--- {self.log_file} (tail) ---\n{log_tail}")
            res = self._client(info, "SELECT VERSION()")
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name}: not accepting a password login over TCP on port {port} "
                    f"after {timeout:.0f}s: {res.stderr.strip()}\n--- {self.log_file} (tail) ---\n"
                    f"{_tail(self.log_file)}")
            time.sleep(0.2)
        os.unlink(self.init_file)
        full = res.stdout.strip()
        info["version_full"] = full
        info["version"] = full.split("-")[0]
        return info

    def _server_pid(self):
        for path in (self.pid_file, self.launcher_pid_file):
            pid = _read_pid(path)
            if pid and _pid_alive(pid) and self.cnf in _pid_cmdline(pid):
                return pid
        return 0

    def stop(self, info=None):  # pylint: disable=unused-argument
        pid = self._server_pid()
        if pid:
            _kill_pid(pid, signal.SIGTERM)
            if not _wait_pid_gone(pid, STOP_TIMEOUT):
                _log(f"{self.name}: mariadbd {pid} ignored SIGTERM for {STOP_TIMEOUT:.0f}s, killing")
                _kill_pid(pid, signal.SIGKILL)
                _wait_pid_gone(pid, 10)
        _rmtree(self.dir)
