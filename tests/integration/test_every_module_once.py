"""Every module once per engine, and maintenance.yml once: the supported-versions slice.

scripts/test.sh runs this file in the main integration stage (ansible-core 2.19) and again in the core-2.16
stage with the .venv-2.16 interpreter (its ansible-playbook is ansible-core 2.16), so each module, each engine
and the main playbook are proven on the oldest ansible-core the README claims. Two batched playbooks per engine
(every module, then db_restore of the backup the first one took) and one maintenance.yml run: 7
ansible-playbook starts.
"""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import pytest

from conftest import DB, SqliteDB  # noqa: E402  pylint: disable=wrong-import-position
from migration_batch import run_tasks  # noqa: E402  pylint: disable=wrong-import-position

ROOT = Path(__file__).resolve().parents[2]
PRISMA = Path(__file__).resolve().parent / "fixtures" / "migrations" / "prisma"
INIT = "20250101000000_init"

SEED = {
    "postgresql": ['CREATE TYPE "Kind" AS ENUM (\'A\', \'B\')',
                   'CREATE TABLE items (id int PRIMARY KEY, kind "Kind" NOT NULL)',
                   "INSERT INTO items VALUES (1, 'A'), (2, 'B')"],
    "mysql": ["CREATE TABLE items (id int PRIMARY KEY, kind enum('A','B') NOT NULL)",
              "INSERT INTO items VALUES (1, 'A'), (2, 'B')"],
    "sqlite": ["CREATE TABLE items (id integer PRIMARY KEY, kind text NOT NULL)",
               "INSERT INTO items VALUES (1, 'A'), (2, 'B')"],
}


@pytest.fixture(params=["pg15", "mariadb", "sqlite"])
def onedb(request, servers, tmp_path):  # pylint: disable=redefined-outer-name
    """A fresh database on PostgreSQL 15, MariaDB or SQLite (one per engine: pg16 adds nothing here)."""
    if request.param == "sqlite":
        path = tmp_path / "one.sqlite3"
        db = SqliteDB(path)
        import sqlite3  # pylint: disable=import-outside-toplevel
        with sqlite3.connect(path) as c:
            for sql in SEED["sqlite"]:
                c.execute(sql)
        yield db
        return
    server = servers[request.param]
    db = DB(server, server.create_database())
    for sql in SEED[server.engine]:
        db.execute(sql)
    yield db
    server.drop_database(db.name)


def test_every_module_runs_on_this_engine(ansible, onedb, tmp_path):  # pylint: disable=redefined-outer-name
    conn = dict(onedb.params)
    engine = conn["engine"]
    migrations = tmp_path / "prisma"
    migrations.mkdir()
    shutil.copytree(PRISMA / INIT, migrations / INIT)
    lint_file = tmp_path / "lint.sql"
    lint_file.write_text("DROP TABLE items;\n")
    backups = tmp_path / "backups"
    mod = "dbops.maintenance."
    tasks = []
    if engine == "postgresql":
        tasks.append({"name": "enum_add", "module": mod + "enum_add", "args": dict(conn, name="Kind", values=["C"])})
    elif engine == "mysql":
        tasks.append({"name": "enum_add", "module": mod + "enum_add",
                      "args": dict(conn, table="items", column="kind", values=["C"])})
    tasks += [
        {"name": "column_ensure", "module": mod + "column_ensure",
         "args": dict(conn, table="items", column="note", type="text", nullable=True)},
        {"name": "column_ensure again", "module": mod + "column_ensure",
         "args": dict(conn, table="items", column="note", type="text", nullable=True)},
        {"name": "db_backup", "module": mod + "db_backup", "args": dict(conn, dest=str(backups), label="one")},
        {"name": "migration_resolve", "module": mod + "migration_resolve",
         "args": dict(conn, tool="prisma", migrations_path=str(migrations), migration=INIT, create_table=True)},
        {"name": "migration_status", "module": mod + "migration_status",
         "args": dict(conn, tool="prisma", migrations_path=str(migrations))},
        {"name": "migration_lint", "module": mod + "migration_lint",
         "args": {"path": [str(lint_file)], "engine": engine, "fail_on": "never"}},
        {"name": "db_verify", "module": mod + "db_verify",
         "args": dict(conn, tables=["items"], columns=[{"table": "items", "column": "note"}])},
    ]
    # A scratch copy (db_clone makes only dbops_scratch_* names): a file beside the database for SQLite.
    scratch = str(tmp_path / "dbops_scratch_one.sqlite3") if engine == "sqlite" else "dbops_scratch_" + onedb.name
    tasks += [
        {"name": "db_clone", "module": mod + "db_clone", "args": dict(conn, name=scratch)},
        {"name": "db_clone absent", "module": mod + "db_clone", "args": dict(conn, name=scratch, state="absent")},
        # the controller-side report writer (an action plugin; no database)
        {"name": "report_write", "module": mod + "report_write",
         "args": {"path": str(tmp_path / "report"), "files": {"report.json": "{}\n"}}},
    ]
    r = run_tasks(ansible, tasks)
    failed = {name: res.get("msg") for name, res in r.items() if res["failed"]}
    assert not failed, failed
    if engine != "sqlite":
        assert r["enum_add"]["changed"] and r["enum_add"]["queries"], r["enum_add"]
    assert r["db_clone"]["changed"] and r["db_clone absent"]["changed"]
    assert r["column_ensure"]["changed"] and not r["column_ensure again"]["changed"]
    manifest = r["db_backup"]["manifest_path"]
    assert r["db_backup"]["changed"] and Path(manifest).is_file()
    assert r["migration_resolve"]["changed"]
    assert r["migration_status"]["applied"] and not r["migration_status"]["pending"], r["migration_status"]
    assert any(f.get("rule") == "drop-table" for f in r["migration_lint"]["findings"]), r["migration_lint"]
    assert not r["db_verify"]["changed"]
    assert r["report_write"]["changed"] and (tmp_path / "report" / "report.json").read_text() == "{}\n"

    # db_restore of that backup over the database brings back the row deleted after it.
    onedb.execute("DELETE FROM items WHERE id = 2")
    r = run_tasks(ansible, [{"name": "db_restore", "module": mod + "db_restore",
                             "args": dict(conn, backup=manifest, replace=True)}])
    assert not r["db_restore"]["failed"], r["db_restore"].get("msg")
    assert r["db_restore"]["changed"]
    assert sorted(row[0] for row in onedb.query("SELECT id FROM items")) == [1, 2]


def test_maintenance_playbook_once(ansible, servers, tmp_path):
    """playbooks/maintenance.yml on PostgreSQL 15: the enum fix with a backup, a verify and the report."""
    server = servers["pg15"]
    db = DB(server, server.create_database())
    try:
        for sql in SEED["postgresql"]:
            db.execute(sql)
        p = db.params
        extra = {"dbops_engine": p["engine"], "dbops_database": p["database"], "dbops_hosts": "localhost",
                 "dbops_backup_dir": str(tmp_path / "backups"), "dbops_report_dir": str(tmp_path / "reports"),
                 "dbops_preflight_min_free_mb": 1, "dbops_report_run_id": "once",
                 "dbops_enums": [{"name": "Kind", "values": ["C"]}]}
        for key in ("login_host", "login_port", "login_user", "login_password"):
            extra["dbops_" + key] = p[key]
        result = ansible.playbook(ROOT / "playbooks" / "maintenance.yml", extra_vars=extra)
        assert result.rc == 0, result.stdout[-4000:]
        assert db.query('SELECT unnest(enum_range(NULL::"Kind"))::text') == [("A",), ("B",), ("C",)]
        assert len(glob.glob(str(tmp_path / "backups" / "*.manifest.json"))) == 1
        report = json.loads((tmp_path / "reports" / "once" / "report.json").read_text())
        assert [h["outcome"] for h in report["hosts"]] == ["changed"], report["hosts"]
        assert p["login_password"] not in result.stdout + result.stderr
    finally:
        server.drop_database(db.name)


def test_a_list_of_dicts_option_that_does_not_parse_fails_cleanly(ansible, tmp_path):
    """queries='a=b c' (an element that is no dictionary): ansible-core 2.16 raised ValueError from its own
    argument validation (a MODULE FAILURE traceback); every supported core must give a clean message that says
    what to fix, and never the password (run here with -vvvv, on 2.19 and, in the core-2.16 stage, on 2.16)."""
    marker = "Pw" + "7f3c9e1a5b2d4680"
    args = dict(engine="sqlite", database=str(tmp_path / "none.sqlite3"), login_password=marker, queries="a=b c")
    r = ansible.run("dbops.maintenance.db_verify", args, expect_failure=True, verbosity=4)
    out = r.stdout + r.stderr
    assert "MODULE FAILURE" not in out and "Traceback" not in r["msg"], out[-3000:]
    assert "key=value" in r["msg"], r["msg"]
    assert marker not in out, "the password was printed"
    assert not (tmp_path / "none.sqlite3").exists()
