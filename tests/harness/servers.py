"""Real database servers for the integration tests.

Starts PostgreSQL 15 (Debian), PostgreSQL 16 (binaries of the ``pgserver``
wheel) and MariaDB 10.11 (Debian), each in its own data directory under a
state directory, on 127.0.0.1 and a free TCP port, with a password-protected
admin account ``dbops_admin``.  The connection details are written to
``<state-dir>/servers.json`` (mode 0600).

Importable (``start``, ``stop``, ``status``, ``load_info``) and a CLI::

    .venv/bin/python tests/harness/servers.py start  --state-dir DIR [--only pg15,pg16,mariadb]
    .venv/bin/python tests/harness/servers.py stop   --state-dir DIR
    .venv/bin/python tests/harness/servers.py status --state-dir DIR

Several instances of the same kind, each on its own loopback address (for a
fleet, e.g. the molecule scenarios), started in parallel::

    servers.py start --state-dir DIR \
        --instances pg15a=pg15@127.0.0.11,pg16a=pg16@127.0.0.13,maria1=mariadb@127.0.0.21 \
        [--password-file FILE]

An instance ``NAME=KIND@ADDRESS`` (KIND one of pg15, pg16, mariadb; ADDRESS in
127.0.0.0/8) listens on ADDRESS at the kind's default port (5432 / 3306) when
nothing listens there, else on a free port of ADDRESS; servers.json records it
under NAME with ``kind`` and ``login_host`` = ADDRESS.  ``--password-file``
(a 0600 file holding one password, used by every server of that start) keeps
the password out of the state dir: servers.json then records
``password_file`` and ``load_info`` reads the password from it.  ``stop``
without ``--only`` stops every recorded server and instance.

``--state-dir`` defaults to ``$DBOPS_SERVERS_STATE``.  Standard library only,
so it also runs under a plain ``python3``.  Passwords never appear on a
command line: initdb reads a 0600 ``--pwfile``, MariaDB creates the account
from a 0600 ``--init-file``, and the clients get the password from
``PGPASSWORD`` or a 0600 ``--defaults-file``.

PostgreSQL refuses to run as root; when this runs as root, the PostgreSQL
servers run as the unprivileged system user ``dbopstest`` (created on demand)
through ``runuser``.  MariaDB runs with ``--user=root`` in that case.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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


# --------------------------------------------------------------------------
# binaries
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------

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


def make_server(name, state_dir, kind=None, address=LOCALHOST):
    """The server object of ``name``: a fixed name (pg15, pg16, mariadb on 127.0.0.1) or an
    instance of ``kind`` on ``address``; instances recorded in the state dir are looked up."""
    if kind is None and name not in SERVER_NAMES and state_dir and state_dir != "/":
        recorded = _load_instances(state_dir).get(name)
        if recorded:
            kind, address = recorded["kind"], recorded["address"]
    kind = kind or name
    if kind in ("pg15", "pg16"):
        return PostgresServer(name, state_dir, kind, address)
    if kind == "mariadb":
        return MariaDBServer(name, state_dir, kind, address)
    raise HarnessError(f"unknown server {name!r} (known: {', '.join(SERVER_NAMES)}, or an "
                       "instance NAME=KIND@ADDRESS started with --instances)")


def _server_of(name, state_dir, info=None):
    """make_server for a recorded server (its kind and address from servers.json if known)."""
    info = info or {}
    if info.get("kind"):
        return make_server(name, state_dir, info["kind"], info.get("login_host", LOCALHOST))
    return make_server(name, state_dir)


# --------------------------------------------------------------------------
# state dir API
# --------------------------------------------------------------------------

def _load_instances(state_dir):
    try:
        with open(os.path.join(state_dir, INSTANCES_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def _raw_info(state_dir):
    try:
        with open(os.path.join(state_dir, STATE_FILE), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def load_info(state_dir):
    """The servers.json of ``state_dir`` as a dict (empty if there is none).

    Servers started with a password file get ``login_password`` read from it.
    """
    info = _raw_info(state_dir)
    for entry in info.values():
        if entry.get("password_file") and "login_password" not in entry:
            with contextlib.suppress(OSError, HarnessError):
                entry["login_password"] = _read_password_file(entry["password_file"])
    return info


def _save_or_remove(path, data, write):
    """Write what is left (``write()``), or remove ``path`` when nothing is."""
    if data:
        write()
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _write_info(state_dir, current):
    """servers.json, without the passwords that live in a password file."""
    on_disk = {}
    for name, entry in current.items():
        entry = dict(entry)
        if entry.get("password_file"):
            entry.pop("login_password", None)
        on_disk[name] = entry
    _write_json_private(os.path.join(state_dir, STATE_FILE), on_disk)


def parse_instances(spec):
    """``"a=pg15@127.0.0.11,b=mariadb@127.0.0.21"`` (or a dict / list of such strings) ->
    {name: {"kind", "address"}}."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        items = [(n, v["kind"], v["address"]) if isinstance(v, dict) else (n, *v)
                 for n, v in spec.items()]
    else:
        if isinstance(spec, str):
            spec = [p.strip() for p in spec.split(",") if p.strip()]
        items = []
        for part in spec:
            name, sep, rest = part.partition("=")
            kind, sep2, address = rest.partition("@")
            if not (sep and sep2 and name and kind and address):
                raise HarnessError(f"bad instance {part!r}: expected NAME=KIND@ADDRESS "
                                   "(e.g. pg15a=pg15@127.0.0.11)")
            items.append((name.strip(), kind.strip(), address.strip()))
    out = {}
    for name, kind, address in items:
        if kind not in KINDS:
            raise HarnessError(f"instance {name}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if name in SERVER_NAMES or not name.replace("_", "").replace("-", "").isalnum():
            raise HarnessError(f"instance {name!r}: use a name of letters, digits, - and _ "
                               f"other than {', '.join(SERVER_NAMES)}")
        try:
            octets = [int(o) for o in address.split(".")]
        except ValueError:
            octets = []
        if len(octets) != 4 or octets[0] != 127 or not all(0 <= o <= 255 for o in octets):
            raise HarnessError(f"instance {name}: address {address!r} is not in 127.0.0.0/8")
        if name in out:
            raise HarnessError(f"instance {name} given twice")
        out[name] = {"kind": kind, "address": address}
    addresses = [(v["kind"] == "mariadb", v["address"]) for v in out.values()]
    if len(set(addresses)) != len(addresses):
        raise HarnessError("two instances of the same engine share an address: give each its own")
    return out


def _parse_only(only, state_dir=None):
    if not only:
        names = list(SERVER_NAMES)
        if state_dir:
            names += [n for n in _load_instances(state_dir) if n not in names]
        return names
    if isinstance(only, str):
        only = [n.strip() for n in only.split(",") if n.strip()]
    known = _load_instances(state_dir) if state_dir else {}
    for n in only:
        if n not in known:
            make_server(n, "/")  # validates the name
    return list(dict.fromkeys(only))


def _start_one(name, state_dir, port, timeout, kind=None, address=LOCALHOST, password_file=None):
    server = make_server(name, state_dir, kind, address)
    for attempt in range(1, PORT_RETRIES + 1):
        password = _read_password_file(password_file) if password_file else secrets.token_urlsafe(24)
        t0 = time.monotonic()
        try:
            info = server.start(port, password, timeout, password_file=password_file)
        except PortInUse:
            server.stop()
            if attempt == PORT_RETRIES:
                raise
            port = _free_ports(1, address)[0]
            _log(f"{name}: port taken meanwhile, retrying on {port}")
            continue
        except BaseException:
            with contextlib.suppress(Exception):
                server.stop()
            raise
        _log(f"{name}: {info['engine']} {info['version']} on {address}:{info['login_port']} "
             f"ready in {time.monotonic() - t0:.1f}s")
        return info
    raise AssertionError("unreachable")


def start(state_dir, only=None, timeout=START_TIMEOUT, instances=None, password_file=None):
    """Start (or reuse, if already running) the servers; returns the servers.json dict.

    ``only``: names among pg15, pg16, mariadb (127.0.0.1, free ports; default all three
    unless ``instances`` is given).  ``instances``: ``"NAME=KIND@ADDRESS,..."`` (or what
    ``parse_instances`` accepts), each on its own loopback address.  ``password_file``:
    a 0600 file with the password every server started here gets (default: a random one
    each, recorded in servers.json).

    Raises HarnessError if any server fails to start; the others stay running
    and recorded, so ``stop`` cleans up everything.
    """
    state_dir = os.path.abspath(state_dir)
    wanted = parse_instances(instances)
    names = _parse_only(only) if (only or not wanted) else []
    if password_file:
        password_file = os.path.abspath(password_file)
        _read_password_file(password_file)  # fail early: missing, empty or readable by others
    os.makedirs(state_dir, exist_ok=True)
    if _is_root():
        # dbopstest must traverse the state dir to reach its data dirs (no listing).
        os.chmod(state_dir, os.stat(state_dir).st_mode & 0o7777 | 0o111)
    with _locked(state_dir):
        if wanted:
            recorded = _load_instances(state_dir)
            for name, spec in wanted.items():
                old = recorded.get(name)
                if old and old != spec:
                    raise HarnessError(f"instance {name} is recorded as {old['kind']}@{old['address']} "
                                       f"in {state_dir}: stop it first")
            recorded.update(wanted)
            _write_json_private(os.path.join(state_dir, INSTANCES_FILE), recorded)
        placement = {n: (n, LOCALHOST) for n in names}
        placement.update({n: (v["kind"], v["address"]) for n, v in wanted.items()})
        current = load_info(state_dir)
        to_start = []
        for name, (kind, address) in placement.items():
            if name in current and make_server(name, state_dir, kind, address).alive(current[name]):
                _log(f"{name}: already running on {address}:{current[name]['login_port']}, reusing")
            else:
                to_start.append(name)
        if not to_start:
            return current
        if _is_root() and any(placement[n][0].startswith("pg") for n in to_start):
            ensure_run_user()
        for name in to_start:  # leftovers of an earlier run
            make_server(name, state_dir, *placement[name]).stop(current.pop(name, None))
        _write_info(state_dir, current)
        fixed = [n for n in to_start if n not in wanted]
        ports = dict(zip(fixed, _free_ports(len(fixed))))
        for name in to_start:
            if name in wanted:
                ports[name] = _port_for(*placement[name])
        errors = []
        with ThreadPoolExecutor(max_workers=len(to_start)) as pool:
            futures = {name: pool.submit(_start_one, name, state_dir, ports[name], timeout,
                                         placement[name][0], placement[name][1], password_file)
                       for name in to_start}
            for name, fut in futures.items():
                try:
                    current[name] = fut.result()
                except Exception as e:  # pylint: disable=broad-exception-caught
                    errors.append(f"{name}: {e}")
        _write_info(state_dir, current)
        if errors:
            raise HarnessError("failed to start:\n" + "\n\n".join(errors))
        return current


def stop(state_dir, only=None):
    """Stop the servers of ``state_dir`` (even half-started ones) and remove their data dirs.

    Without ``only``: every server and instance recorded there.
    """
    state_dir = os.path.abspath(state_dir)
    if not os.path.isdir(state_dir):
        return
    with _locked(state_dir):
        names = _parse_only(only, state_dir)
        current = load_info(state_dir)
        if not only:
            names += [n for n in current if n not in names]
        todo = [n for n in names if n in current or os.path.lexists(os.path.join(state_dir, n))]
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            for fut in [pool.submit(_server_of(n, state_dir, current.get(n)).stop, current.get(n))
                        for n in todo]:
                fut.result()
        for name in todo:
            current.pop(name, None)
            _log(f"{name}: stopped")
        instances = _load_instances(state_dir)
        for name in names:
            instances.pop(name, None)
        _save_or_remove(os.path.join(state_dir, INSTANCES_FILE), instances,
                        lambda: _write_json_private(os.path.join(state_dir, INSTANCES_FILE), instances))
        _save_or_remove(os.path.join(state_dir, STATE_FILE), current, lambda: _write_info(state_dir, current))
    if not current:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(state_dir, ".lock"))


def status(state_dir):
    """{name: {"running": bool, "engine", "login_port", "version"}} for the recorded servers."""
    state_dir = os.path.abspath(state_dir)
    out = {}
    for name, info in load_info(state_dir).items():
        out[name] = {
            "running": _server_of(name, state_dir, info).alive(info),
            "engine": info.get("engine"),
            "login_host": info.get("login_host"),
            "login_port": info.get("login_port"),
            "version": info.get("version"),
        }
    return out


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", default=os.environ.get("DBOPS_SERVERS_STATE"),
                        help="directory for data dirs and servers.json "
                             "(default: $DBOPS_SERVERS_STATE)")
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(SERVER_NAMES)
                        + " (or of the instances, for stop)")
    parser.add_argument("--instances", metavar="NAME=KIND@ADDRESS,...",
                        help="start these instances (KIND: " + ", ".join(KINDS) + "; ADDRESS in "
                             "127.0.0.0/8), e.g. pg15a=pg15@127.0.0.11,maria1=mariadb@127.0.0.21")
    parser.add_argument("--password-file",
                        help="0600 file with the password for the servers started now "
                             "(not copied into servers.json)")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT,
                        help="seconds to wait for each server to accept logins")
    args = parser.parse_args(argv)
    if not args.state_dir:
        parser.error("--state-dir is required (or set DBOPS_SERVERS_STATE)")
    try:
        if args.command == "start":
            t0 = time.monotonic()
            info = start(args.state_dir, args.only, args.timeout, instances=args.instances,
                         password_file=args.password_file)
            _log(f"{len(info)} server(s) ready in {time.monotonic() - t0:.1f}s; "
                 f"connection details in {os.path.join(os.path.abspath(args.state_dir), STATE_FILE)}")
        elif args.command == "stop":
            stop(args.state_dir, args.only)
        else:
            st = status(args.state_dir)
            print(json.dumps(st, indent=2, sort_keys=True))
            return 0 if st and all(s["running"] for s in st.values()) else 3
    except HarnessError as e:
        print(f"servers: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
