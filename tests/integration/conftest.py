"""Fixtures for the integration tests: real database servers and an ansible-playbook runner.

Servers (PostgreSQL 15, PostgreSQL 16, MariaDB 10.11; see tests/harness/servers.py):

* If ``DBOPS_SERVERS_STATE`` names a state dir with a servers.json (scripts/test.sh
  starts the servers once and exports it), those servers are used and left running.
* Otherwise the first test that needs them starts them under
  /tmp/dbops-harness-<uid>/<run id>, shared by the pytest-xdist workers of one run
  (file lock + list of user pids), and the last worker to finish stops them.
  ``DBOPS_SERVERS=pg15,mariadb`` limits which are started (tests on others skip).

Fixture API:

* ``servers`` (session): {"pg15": Server, "pg16": Server, "mariadb": Server}
* ``pg_server`` (pg15, pg16), ``any_server`` (pg15, pg16, mariadb): parametrized Servers;
  ``mariadb``: the MariaDB Server.
* ``pg_db`` / ``mysql_db`` / ``db`` (function): a fresh empty database (``DB``) on
  pg_server / mariadb / any_server, dropped afterwards; ``sqlite_db``: a fresh sqlite file.
* ``ansible`` (session): tests/integration/ansible_run.py ``AnsibleRunner``.  A test file that overrides it
  with a module-scoped ``ansible.session()`` (``PlaybookSession``, same ``run`` API) sends all its module runs
  to one long-lived ansible-playbook per xdist worker (tests/README.md, "Time").
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parent), str(HERE)):  # tests/ (for harness.servers) and tests/integration/
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ansible_run import AnsibleRunner  # noqa: E402  pylint: disable=wrong-import-position
from harness import servers as harness  # noqa: E402  pylint: disable=wrong-import-position

PG_SERVERS = ["pg15", "pg16"]
ALL_SERVERS = ["pg15", "pg16", "mariadb"]
HARNESS_BASE = Path(os.environ.get("DBOPS_HARNESS_DIR", f"/tmp/dbops-harness-{os.getuid()}"))


# --------------------------------------------------------------------------
# Server / DB objects
# --------------------------------------------------------------------------

def _quote_ident(engine, name):
    if engine == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


class Server:
    """One running database server, as recorded in servers.json."""

    def __init__(self, name, info):
        self.name = name
        self.info = dict(info)
        self.engine = self.info["engine"]

    def __repr__(self):
        return f"Server({self.name!r}, {self.engine} {self.info.get('version')} " \
               f"on {self.info['login_host']}:{self.info['login_port']})"

    @property
    def version(self):
        return self.info.get("version")

    def params(self, database=None):
        """Connection options for a module: engine, login_host/port/user/password, database."""
        return {
            "engine": self.engine,
            "login_host": self.info["login_host"],
            "login_port": self.info["login_port"],
            "login_user": self.info["login_user"],
            "login_password": self.info["login_password"],
            "database": database or self.info["database"],
        }

    def connect(self, database=None, autocommit=True):
        """A DB-API connection (psycopg 3 or PyMySQL) as the admin user over TCP."""
        db = database or self.info["database"]
        if self.engine == "postgresql":
            import psycopg  # pylint: disable=import-outside-toplevel
            return psycopg.connect(host=self.info["login_host"], port=self.info["login_port"],
                                   user=self.info["login_user"],
                                   password=self.info["login_password"], dbname=db,
                                   autocommit=autocommit, connect_timeout=10)
        import pymysql  # pylint: disable=import-outside-toplevel
        return pymysql.connect(host=self.info["login_host"], port=self.info["login_port"],
                               user=self.info["login_user"], password=self.info["login_password"],
                               database=db, autocommit=autocommit, charset="utf8mb4",
                               connect_timeout=10)

    def query(self, database, sql, params=None):
        """Run ``sql`` (autocommit) and return all rows as a list of tuples ([] if no result set)."""
        conn = self.connect(database)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
            cur.close()
            return [tuple(r) for r in rows]
        finally:
            conn.close()

    def execute(self, database, sql, params=None):
        """Run ``sql`` (autocommit); returns the cursor's rowcount."""
        conn = self.connect(database)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            count = cur.rowcount
            cur.close()
            return count
        finally:
            conn.close()

    def create_database(self, name=None):
        """Create an empty database (``dbops_t_<random>`` by default, an existing one is
        dropped first); returns its name."""
        name = name or f"dbops_t_{secrets.token_hex(5)}"
        self.drop_database(name)
        self.execute(None, f"CREATE DATABASE {_quote_ident(self.engine, name)}")
        return name

    def drop_database(self, name):
        q = _quote_ident(self.engine, name)
        if self.engine == "postgresql":
            self.execute(None, f"DROP DATABASE IF EXISTS {q} WITH (FORCE)")
        else:
            self.execute(None, f"DROP DATABASE IF EXISTS {q}")


class DB:
    """A database on a Server, for one test."""

    def __init__(self, server, name):
        self.server = server
        self.name = name

    def __repr__(self):
        return f"DB({self.name!r} on {self.server.name})"

    @property
    def engine(self):
        return self.server.engine

    @property
    def params(self):
        return self.server.params(self.name)

    def query(self, sql, params=None):
        return self.server.query(self.name, sql, params)

    def execute(self, sql, params=None):
        return self.server.execute(self.name, sql, params)

    def connect(self, autocommit=True):
        return self.server.connect(self.name, autocommit=autocommit)


class SqliteDB:
    """A fresh sqlite database file (no server)."""

    server = None
    engine = "sqlite"

    def __init__(self, path):
        self.name = str(path)

    def __repr__(self):
        return f"SqliteDB({self.name!r})"

    @property
    def params(self):
        return {"engine": "sqlite", "database": self.name}

    def connect(self, autocommit=True):
        return sqlite3.connect(self.name, isolation_level=None if autocommit else "DEFERRED")

    def query(self, sql, params=None):
        conn = self.connect()
        try:
            cur = conn.execute(sql, params or ())
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def execute(self, sql, params=None):
        conn = self.connect()
        try:
            return conn.execute(sql, params or ()).rowcount
        finally:
            conn.close()


# --------------------------------------------------------------------------
# server lifecycle for a pytest run
# --------------------------------------------------------------------------

@contextlib.contextmanager
def _harness_lock():
    HARNESS_BASE.mkdir(mode=0o711, parents=True, exist_ok=True)
    fd = os.open(HARNESS_BASE / "harness.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _users_file(state_dir):
    return state_dir.with_name(state_dir.name + ".users")


def _read_users(state_dir):
    try:
        return [int(p) for p in json.loads(_users_file(state_dir).read_text())]
    except (OSError, ValueError):
        return []


def _write_users(state_dir, pids):
    _users_file(state_dir).write_text(json.dumps(sorted(set(pids))))


def _discard(state_dir):
    with contextlib.suppress(Exception):
        harness.stop(str(state_dir))
    shutil.rmtree(state_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        _users_file(state_dir).unlink()


def _reap_stale(keep):
    """Stop servers of earlier runs whose pytest processes all died (must hold the lock)."""
    for entry in HARNESS_BASE.iterdir():
        if not entry.is_dir() or not entry.name.startswith("run-") or entry == keep:
            continue
        if not any(harness.pid_alive(p) for p in _read_users(entry)):
            _discard(entry)


class _OwnServers:
    """Servers this pytest run started itself (shared by its xdist workers)."""

    def __init__(self, only):
        run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
        self.state_dir = HARNESS_BASE / f"run-{run_id}"
        self.only = only
        self.released = False

    def acquire(self):
        with _harness_lock():
            os.chmod(HARNESS_BASE, 0o711)  # the PostgreSQL user must reach its data dirs
            _reap_stale(keep=self.state_dir)
            _write_users(self.state_dir, _read_users(self.state_dir) + [os.getpid()])
            info = harness.start(str(self.state_dir), self.only)
        atexit.register(self.release)
        return info

    def release(self):
        if self.released:
            return
        self.released = True
        with _harness_lock():
            others = [p for p in _read_users(self.state_dir)
                      if p != os.getpid() and harness.pid_alive(p)]
            if others:
                _write_users(self.state_dir, others)
            else:
                _discard(self.state_dir)


def _wanted_servers():
    wanted = os.environ.get("DBOPS_SERVERS")
    if not wanted:
        return list(ALL_SERVERS)
    return [n.strip() for n in wanted.split(",") if n.strip()]


@pytest.fixture(scope="session")
def servers():
    """{"pg15": Server, "pg16": Server, "mariadb": Server} of running servers."""
    state = os.environ.get("DBOPS_SERVERS_STATE")
    own = None
    if state and (Path(state) / harness.STATE_FILE).exists():
        info = harness.load_info(state)
        dead = [n for n, s in harness.status(state).items() if not s["running"]]
        if dead:
            pytest.fail(f"DBOPS_SERVERS_STATE={state}: {', '.join(dead)} not running "
                        f"(tests/harness/servers.py status --state-dir {state})", pytrace=False)
    else:
        own = _OwnServers(_wanted_servers())
        try:
            info = own.acquire()
        except harness.HarnessError as e:
            own.release()
            pytest.fail(f"cannot start the test database servers: {e}", pytrace=False)
    yield {name: Server(name, i) for name, i in info.items()}
    if own is not None:
        own.release()


def _server(servers, name):  # pylint: disable=redefined-outer-name
    if name not in servers:
        pytest.skip(f"server {name} not started (DBOPS_SERVERS / servers.json)")
    return servers[name]


@pytest.fixture(scope="session", params=PG_SERVERS)
def pg_server(request, servers):  # pylint: disable=redefined-outer-name
    return _server(servers, request.param)


@pytest.fixture(scope="session", params=ALL_SERVERS)
def any_server(request, servers):  # pylint: disable=redefined-outer-name
    return _server(servers, request.param)


@pytest.fixture(scope="session")
def mariadb(servers):  # pylint: disable=redefined-outer-name
    return _server(servers, "mariadb")


def _fresh_db(server):
    name = server.create_database()
    return DB(server, name)


@pytest.fixture
def pg_db(pg_server):  # pylint: disable=redefined-outer-name
    db_ = _fresh_db(pg_server)
    yield db_
    pg_server.drop_database(db_.name)


@pytest.fixture
def mysql_db(mariadb):  # pylint: disable=redefined-outer-name
    db_ = _fresh_db(mariadb)
    yield db_
    mariadb.drop_database(db_.name)


@pytest.fixture
def db(any_server):  # pylint: disable=redefined-outer-name
    db_ = _fresh_db(any_server)
    yield db_
    any_server.drop_database(db_.name)


@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / f"dbops_t_{secrets.token_hex(5)}.sqlite3"
    sqlite3.connect(path).close()
    return SqliteDB(path)


@pytest.fixture(scope="session")
def ansible(tmp_path_factory):
    runner = AnsibleRunner(base_dir=tmp_path_factory.mktemp("ansible"))
    yield runner
    runner.close()


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config):  # pylint: disable=unused-argument
    state = os.environ.get("DBOPS_SERVERS_STATE")
    if state:
        return f"dbops servers: reusing {state}"
    return f"dbops servers: started on demand under {HARNESS_BASE}"
