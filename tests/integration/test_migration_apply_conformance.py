"""Conformance of migration_apply with the real dbmate (scripts/install-conformance-tools.sh), on twin databases:
dbmate's `up` on one, migration_apply on the other, the same files (a transactional migration, one with
transaction:false, a failing one). Same schema (pg_dump -s / mariadb-dump --no-data / sqlite_master), same
history, and `dbmate status --exit-code` / `dbmate up` are clean on ours.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from migration_batch import ServerDB, run_tasks

APPLY = "dbops.maintenance.migration_apply"
REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("DBOPS_CONFORMANCE_DIR", REPO / "build" / "conformance"))
DBMATE = TOOLS_DIR / "node" / "node_modules" / ".bin" / "dbmate"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def sh(cmd, ok=True, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ, **(env or {})))
    if ok and p.returncode != 0:
        raise AssertionError("%s -> %s\n%s\n%s" % (cmd, p.returncode, p.stdout, p.stderr))
    return p


@pytest.fixture(params=["pg16", "mariadb", "sqlite"])
def twins(request, tmp_path):
    if request.param == "sqlite":
        out = []
        for n in ("dbmate", "ours"):
            p = tmp_path / ("%s.sqlite3" % n)
            sqlite3.connect(p).close()
            from conftest import SqliteDB
            out.append(SqliteDB(p))
        return out
    servers = request.getfixturevalue("servers")
    if request.param not in servers:
        pytest.skip("%s not started" % request.param)
    server = servers[request.param]
    out = []
    for _n in range(2):
        name = server.create_database()
        request.addfinalizer(lambda name=name: server.drop_database(name))
        out.append(ServerDB(server, name))
    return out


def url(db):
    if db.engine == "sqlite":
        return "sqlite:%s" % db.name
    i = db.server.info
    scheme = "mysql" if db.engine == "mysql" else "postgres"
    return "%s://%s:%s@%s:%s/%s%s" % (scheme, i["login_user"], i["login_password"], i["login_host"], i["login_port"],
                                      db.name, "?sslmode=disable" if scheme == "postgres" else "")


def schema(db):
    if db.engine == "sqlite":
        conn = sqlite3.connect(db.name)
        try:
            return sorted(r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
        finally:
            conn.close()
    i = db.server.info
    if db.engine == "mysql":
        out = sh(["mariadb-dump", "--no-data", "--skip-comments", "--skip-dump-date", "-h", i["login_host"],
                  "-P", str(i["login_port"]), "-u", i["login_user"], db.name],
                 env={"MYSQL_PWD": i["login_password"]}).stdout
        return re.sub(r" AUTO_INCREMENT=\d+", "", out)
    out = sh([os.path.join(i["bin_dir"], "pg_dump"), "-s", "--no-owner", "--no-privileges", "-h", i["login_host"],
              "-p", str(i["login_port"]), "-U", i["login_user"], db.name],
             env={"PGPASSWORD": i["login_password"]}).stdout
    return "\n".join(x for x in out.split("\n") if not x.startswith(("--", "\\restrict", "\\unrestrict")))


def history(db):
    return db.query("SELECT version FROM schema_migrations ORDER BY version")


def files(engine, path, with_failure):
    path.mkdir(parents=True, exist_ok=True)
    text = "varchar(100)" if engine != "sqlite" else "text"
    (path / "20240101000001_users.sql").write_text(
        "-- migrate:up\nCREATE TABLE users (id integer PRIMARY KEY, email %s NOT NULL);\n"
        "CREATE INDEX users_email ON users (email);\n\n-- migrate:down\nDROP TABLE users;\n" % text)
    notx = "CREATE INDEX CONCURRENTLY users_id_email ON users (id, email);" if engine == "postgresql" \
        else "CREATE INDEX users_id_email ON users (id, email);"
    (path / "20240101000002_index.sql").write_text(
        "-- migrate:up transaction:false\n%s\n\n-- migrate:down\nSELECT 1;\n" % notx)
    if with_failure:
        (path / "20240101000003_broken.sql").write_text(
            "-- migrate:up\nCREATE TABLE orders (id integer PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);\n\n"
            "-- migrate:down\nDROP TABLE orders;\n")


def test_dbmate_up_and_ours_agree(ansible, twins, tmp_path):
    if not DBMATE.exists():
        pytest.skip("dbmate is not installed (%s): run scripts/install-conformance-tools.sh" % DBMATE)
    theirs, ours = twins
    mig = tmp_path / "migrations"
    files(theirs.engine, mig, with_failure=False)
    dbmate = [str(DBMATE), "--migrations-dir", str(mig), "--no-dump-schema"]
    sh(dbmate + ["--url", url(theirs), "up"])
    args = dict(ours.params, tool="dbmate", migrations_path=str(mig), create_table=True, lint=False)
    res = run_tasks(ansible, [dict(name="apply", module=APPLY, args=args)])
    assert not res["apply"]["failed"], res["apply"]
    assert [a["name"] for a in res["apply"]["applied"]] == ["20240101000001", "20240101000002"]
    assert schema(ours) == schema(theirs)
    assert history(ours) == history(theirs) == [("20240101000001",), ("20240101000002",)]
    p = sh(dbmate + ["--url", url(ours), "status", "--exit-code"], ok=False)
    assert p.returncode == 0 and "Pending: 0" in p.stdout, p.stdout + p.stderr
    p = sh(dbmate + ["--url", url(ours), "up"])
    assert "Applying" not in p.stdout, p.stdout
    # a failing migration: dbmate and we leave the same schema and history behind
    files(theirs.engine, mig, with_failure=True)
    p = sh(dbmate + ["--url", url(theirs), "up"], ok=False)
    assert p.returncode != 0
    res = run_tasks(ansible, [dict(name="fail", module=APPLY, args=args)])
    assert res["fail"]["failed"] and res["fail"]["failed_migration"]["name"] == "20240101000003", res["fail"]
    assert schema(ours) == schema(theirs)
    assert history(ours) == history(theirs) == [("20240101000001",), ("20240101000002",)]
