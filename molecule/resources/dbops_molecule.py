"""Connection helpers and pytest fixtures for the testinfra tests of the molecule scenarios.

molecule runs the tests of ``molecule/<scenario>/tests/test_*.py`` with
``MOLECULE_EPHEMERAL_DIRECTORY`` set; create.yml wrote the fleet's connection details to
``$MOLECULE_EPHEMERAL_DIRECTORY/dbops/connections.json`` (the password stays in its own
0600 file next to it).  A scenario's ``tests/conftest.py`` makes this module importable
and re-exports the fixtures::

    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
    from dbops_molecule import fleet, query  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

Fixtures: ``fleet`` (the ``Fleet``), ``query`` (``query(host, sql, params=None)`` -> rows).
Without pytest: ``Fleet.load()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pytest = None


class Fleet:
    """The hosts create.yml built: names, engines, connection details."""

    def __init__(self, data, private_dir):
        self.data = data
        self.hosts = data["hosts"]
        self.private_dir = Path(private_dir)

    @classmethod
    def load(cls, ephemeral_dir=None):
        ephemeral_dir = ephemeral_dir or os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
        if not ephemeral_dir:
            raise RuntimeError("MOLECULE_EPHEMERAL_DIRECTORY is not set: run the tests through molecule "
                               "(molecule verify -s <scenario>)")
        private = Path(ephemeral_dir) / "dbops"
        with open(private / "connections.json", encoding="utf-8") as f:
            return cls(json.load(f), private)

    def names(self, engine=None, kind=None, connection=None, group=None):
        """Host names, optionally only those of an engine (postgresql, mysql, sqlite), a kind
        (pg15, pg16, mariadb, sqlite), a connection (local, ssh) or an extra group of fleet.yml."""
        return sorted(
            n for n, h in self.hosts.items()
            if (engine is None or h["engine"] == engine) and (kind is None or h["kind"] == kind)
            and (connection is None or h["connection"] == connection)
            and (group is None or group in h.get("groups", [])))

    def host(self, name):
        return self.hosts[name]

    def password(self, name):
        path = self.hosts[name].get("password_file")
        if not path:
            return None
        return Path(path).read_text(encoding="utf-8").strip()

    def module_params(self, name, database=None):
        """The connection options a dbops.maintenance module takes, for this host."""
        h = self.hosts[name]
        params = {"engine": h["engine"], "database": database or h["database"]}
        if h["engine"] != "sqlite":
            params.update(login_host=h["login_host"], login_port=h["login_port"],
                          login_user=h["login_user"], login_password=self.password(name))
        return params

    def connect(self, name, database=None, autocommit=True):
        """A DB-API connection to the host's application database (or ``database``)."""
        h = self.hosts[name]
        database = database or h["database"]
        if h["engine"] == "postgresql":
            import psycopg  # pylint: disable=import-outside-toplevel
            return psycopg.connect(host=h["login_host"], port=h["login_port"], user=h["login_user"],
                                   password=self.password(name), dbname=database, connect_timeout=10,
                                   sslmode="disable", autocommit=autocommit)
        if h["engine"] == "mysql":
            import pymysql  # pylint: disable=import-outside-toplevel
            return pymysql.connect(host=h["login_host"], port=h["login_port"], user=h["login_user"],
                                   password=self.password(name), database=database, connect_timeout=10,
                                   autocommit=autocommit)
        if not os.path.exists(database):
            raise FileNotFoundError(database)
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        return conn

    def query(self, name, sql, params=None, database=None):
        """Rows (list of tuples) of one statement; ``%s`` placeholders on PostgreSQL/MySQL, ``?`` on SQLite."""
        with contextlib.closing(self.connect(name, database)) as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql, params or ())
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
            finally:
                cur.close()


if pytest is not None:
    @pytest.fixture(scope="session", name="fleet")
    def fleet_fixture():
        """The ``Fleet`` of this scenario run."""
        return Fleet.load()

    @pytest.fixture(scope="session", name="query")
    def query_fixture(fleet):
        """``query(host, sql, params=None, database=None)`` -> list of row tuples."""
        return fleet.query
