"""The migration_deploy role through playbooks/migration_deploy.yml, as an operator or AWX runs it (flat extra vars,
one inventory host per database), against the real servers: one fleet run per engine covers five databases at
once (one batch, max_fail_percentage 100 so that every host runs), then a re-run of the deployed host.

Per engine (PostgreSQL 15, MariaDB, SQLite), dbmate migrations (applied natively by migration_apply):

* ``deploy``: two pending migrations (on PostgreSQL the second adds an enum value with ``transaction:false``),
  rehearsed on a scratch copy first: both applied, history rows written, one backup, the copy dropped;
  the re-run changes nothing (no copy, no backup, changed=0, report ``unchanged``).
* ``rehearsal_fails``: the second migration fails on the data (duplicate key): the rehearsal fails on the copy,
  production is never touched (no column, no history table, no backup), the copy is dropped.
* ``production_fails``: the same migrations without rehearsal: the first is applied, the second fails, the backup
  taken just before is restored (``rolled_back``), production is as before.
* ``lint_refused``: a pending ``DROP TABLE``: the lint gate of the plan refuses it, nothing runs, no backup.
* ``stop_at`` (SQLite only: the role passes ``to`` through, the engines are migration_apply's tests):
  ``dbops_migration_deploy_to`` the first migration: only that one applied, the other still pending.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from conftest import DB, SqliteDB

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "migration_deploy.yml"
ENGINES = ["pg15", "mariadb", "sqlite"]

FIRST = "20260101000000_add_phone.sql"
SECOND = "20260102000000_second.sql"

SEED = {
    "postgresql": [
        "CREATE TYPE account_kind AS ENUM ('USER', 'BOT')",
        "CREATE TABLE accounts (id integer PRIMARY KEY, email varchar(64) NOT NULL, kind account_kind NOT NULL)",
        "INSERT INTO accounts VALUES (1, 'a@example.com', 'USER'), (2, 'b@example.com', 'BOT'), "
        "(3, 'c@example.com', 'USER')",
    ],
    "mysql": [
        "CREATE TABLE accounts (id integer PRIMARY KEY, email varchar(64) NOT NULL, kind varchar(8) NOT NULL)",
        "INSERT INTO accounts VALUES (1, 'a@example.com', 'USER'), (2, 'b@example.com', 'BOT'), "
        "(3, 'c@example.com', 'USER')",
    ],
    "sqlite": [
        "CREATE TABLE accounts (id integer PRIMARY KEY, email varchar(64) NOT NULL, kind varchar(8) NOT NULL)",
        "INSERT INTO accounts VALUES (1, 'a@example.com', 'USER'), (2, 'b@example.com', 'BOT'), "
        "(3, 'c@example.com', 'USER')",
    ],
}
ADD_PHONE = "-- migrate:up\nALTER TABLE accounts ADD COLUMN phone varchar(32);\n\n-- migrate:down\n"
GOOD_SECOND = {
    # An enum value cannot be added inside a transaction block before PostgreSQL 12, and is unusable in the
    # transaction that added it: dbmate's transaction:false runs it on its own.
    "postgresql": "-- migrate:up transaction:false\nALTER TYPE account_kind ADD VALUE IF NOT EXISTS 'SERVICE';\n\n"
                  "-- migrate:down\n",
    "mysql": "-- migrate:up\nCREATE INDEX accounts_phone ON accounts (phone);\n\n-- migrate:down\n",
    "sqlite": "-- migrate:up\nCREATE INDEX accounts_phone ON accounts (phone);\n\n-- migrate:down\n",
}
# Fails on the rows (a key that exists): only a copy with the data catches it.
FAILING_SECOND = "-- migrate:up\nINSERT INTO accounts (id, email, kind) VALUES (1, 'dup@example.com', 'USER');\n\n" \
                 "-- migrate:down\n"
DROP_TABLE = "-- migrate:up\nDROP TABLE accounts;\n\n-- migrate:down\n"

CASES = {
    "deploy": ({FIRST: ADD_PHONE, SECOND: None}, {"dbops_rehearse": True}),
    "rehearsal_fails": ({FIRST: ADD_PHONE, SECOND: FAILING_SECOND}, {"dbops_rehearse": True}),
    "production_fails": ({FIRST: ADD_PHONE, SECOND: FAILING_SECOND}, {"dbops_rehearse": False}),
    "lint_refused": ({FIRST: DROP_TABLE}, {"dbops_rehearse": True}),
    # the backup's own preflight finds too little space for the estimated dump: nothing written, nothing applied
    "no_space": ({FIRST: ADD_PHONE}, {"dbops_rehearse": False, "dbops_preflight_space_factor": 1e12}),
    "stop_at": ({FIRST: ADD_PHONE, SECOND: None},
                {"dbops_rehearse": False, "dbops_migration_deploy_to": FIRST.split("_", 1)[0]}),
}


def cases(engine):
    return [c for c in CASES if c != "stop_at" or engine == "sqlite"]


def columns(db, engine):
    if engine == "sqlite":
        return [r[1] for r in db.query("PRAGMA table_info(accounts)")]
    if engine == "postgresql":
        return [r[0] for r in db.query("SELECT column_name::text FROM information_schema.columns WHERE "
                                       "table_schema = 'public' AND table_name = 'accounts' ORDER BY ordinal_position")]
    return [r[0] for r in db.query("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                                   "AND table_name = 'accounts' ORDER BY ordinal_position")]


def tables(db, engine):
    if engine == "sqlite":
        return {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if engine == "postgresql":
        return {r[0] for r in db.query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")}
    return {r[0] for r in db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")}


def history(db, engine):
    if "schema_migrations" not in tables(db, engine):
        return None
    return [str(r[0]) for r in db.query("SELECT version FROM schema_migrations ORDER BY version")]


def rows(db):
    return [tuple(r) for r in db.query("SELECT id, email FROM accounts ORDER BY id")]


def scratch_left(server, db, engine):
    if engine == "sqlite":
        return glob.glob(os.path.join(os.path.dirname(db.name), "dbops_scratch_*"))
    if engine == "postgresql":
        return server.query(None, "SELECT datname::text FROM pg_database WHERE datname LIKE 'dbops_scratch_%%'")
    return server.query(None, "SELECT schema_name FROM information_schema.schemata "
                              "WHERE schema_name LIKE 'dbops_scratch_%%'")


def recap(stdout, host):
    m = re.search(r"\n" + re.escape(host) + r"\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert m, stdout[-3000:]
    return {"ok": int(m[1]), "changed": int(m[2]), "failed": int(m[4])}


@pytest.fixture(name="fleet")
def fleet_fixture(request, servers, tmp_path):
    """One database per case on the engine's server (or SQLite files), seeded, with its migrations directory."""
    kind = request.param
    server = None if kind == "sqlite" else servers.get(kind)
    if kind != "sqlite" and server is None:
        pytest.fail(f"server {kind} is not running")
    engine = "sqlite" if server is None else server.engine
    dbs = {}
    try:
        for case in cases(engine):
            files = CASES[case][0]
            if server is None:
                path = tmp_path / "sqlite" / case / "app.sqlite3"
                path.parent.mkdir(parents=True)
                sqlite3.connect(path).close()
                db = SqliteDB(path)
            else:
                db = DB(server, server.create_database())
            for stmt in SEED[engine]:
                db.execute(stmt)
            mig = tmp_path / "migrations" / case
            mig.mkdir(parents=True)
            for name, text in files.items():
                (mig / name).write_text(text if text is not None else GOOD_SECOND[engine], encoding="utf-8")
            dbs[case] = db
        yield {"engine": engine, "server": server, "dbs": dbs, "kind": kind}
    finally:
        if server is not None:
            for db in dbs.values():
                server.drop_database(db.name)


def inventory(fleet, ansible, tmp_path):
    hosts = {}
    for case, db in fleet["dbs"].items():
        params = db.params
        host = {"ansible_connection": "local", "ansible_python_interpreter": ansible.python,
                "dbops_backup_dir": str(tmp_path / "backups" / case),
                "dbops_migrations_path": str(tmp_path / "migrations" / case)}
        host.update({"dbops_" + k: v for k, v in params.items() if v is not None})
        host.update(CASES[case][1])
        hosts[case] = host
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"all": {"hosts": hosts}}), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def report(tmp_path, run_id):
    return json.loads((tmp_path / "reports" / run_id / "report.json").read_text(encoding="utf-8"))


def backups(tmp_path, case):
    return sorted(glob.glob(str(tmp_path / "backups" / case / "*.manifest.json")))


@pytest.mark.parametrize("fleet", ENGINES, indirect=True)
def test_migration_deploy_fleet(ansible, fleet, tmp_path):
    engine, server, dbs = fleet["engine"], fleet["server"], fleet["dbs"]
    inv = inventory(fleet, ansible, tmp_path)
    extra = {"dbops_migration_tool": "dbmate", "dbops_hosts": "all", "dbops_serial": "100%",
             "dbops_max_fail_percentage": 100, "dbops_report_dir": str(tmp_path / "reports"),
             "dbops_report_run_id": "run1", "dbops_preflight_min_free_mb": 1,
             "dbops_migration_deploy_create_table": True}
    before = {case: (columns(db, engine), rows(db)) for case, db in dbs.items()}

    r = ansible.playbook(PLAYBOOK, extra_vars=extra, inventory=inv)
    out = r.stdout + r.stderr
    assert r.rc == 2, out[-6000:]  # the failing hosts fail the run; the others deployed
    rep = {h["host"]: h for h in report(tmp_path, "run1")["hosts"]}
    assert set(rep) == set(cases(engine)), rep.keys()

    # deploy: rehearsed, backed up, both migrations applied, history as dbmate writes it, copy dropped.
    db, row = dbs["deploy"], rep["deploy"]
    assert row["outcome"] == "changed", row
    assert row["rehearsal"]["status"] == "passed", row["rehearsal"]
    assert columns(db, engine) == before["deploy"][0] + ["phone"]
    assert rows(db) == before["deploy"][1]
    assert history(db, engine) == ["20260101000000", "20260102000000"]
    if engine == "postgresql":
        assert db.query("SELECT unnest(enum_range(NULL::account_kind))::text") == [("USER",), ("BOT",), ("SERVICE",)]
    else:
        index_sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'accounts_phone'"
                     if engine == "sqlite" else
                     "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() "
                     "AND index_name = 'accounts_phone'")
        assert db.query(index_sql) == [("accounts_phone",)]
    assert len(backups(tmp_path, "deploy")) == 1
    production = [c for c in row["changes"] if not c["rehearsal"] and not c["plan"]]
    rehearsal = [c for c in row["changes"] if c["rehearsal"]]
    assert [c["step"] for c in production] == ["migration_deploy"] and production[0]["database"] == db.name
    assert [c["step"] for c in rehearsal] == ["migration_deploy"] and "dbops_scratch_" in rehearsal[0]["database"]
    assert [a["name"] for a in row["migrations"]["applied"]] == ["20260101000000", "20260102000000"], row
    assert row["migrations"]["clean"] in (True, "True", "true"), row["migrations"]

    # rehearsal_fails: the copy caught it; production never touched, no backup taken.
    db, row = dbs["rehearsal_fails"], rep["rehearsal_fails"]
    assert row["outcome"] == "failed", row
    assert row["rehearsal"]["status"] == "failed", row["rehearsal"]
    assert "production" in row["error"] and "not touched" in row["error"], row["error"]
    assert (columns(db, engine), rows(db)) == before["rehearsal_fails"]
    assert history(db, engine) is None
    assert backups(tmp_path, "rehearsal_fails") == []
    assert not [c for c in row["changes"] if not c["rehearsal"] and not c["plan"]]

    # production_fails: the first migration ran, the second failed, the backup was restored.
    db, row = dbs["production_fails"], rep["production_fails"]
    assert row["outcome"] == "rolled_back", row
    assert row["rollback"]["restored"] in (True, "True", "true"), row["rollback"]
    assert len(backups(tmp_path, "production_fails")) == 1
    assert row["rollback"]["backup"] == backups(tmp_path, "production_fails")[0]
    assert (columns(db, engine), rows(db)) == before["production_fails"]
    assert history(db, engine) is None
    assert "Apply the pending migrations on production" in row["failed_step"], row

    # lint_refused: refused by the lint gate of the plan, before any copy, backup or statement.
    db, row = dbs["lint_refused"], rep["lint_refused"]
    assert row["outcome"] == "failed", row
    assert "drop-table" in row["error"], row["error"]
    assert (columns(db, engine), rows(db)) == before["lint_refused"]
    assert history(db, engine) is None
    assert backups(tmp_path, "lint_refused") == []

    # no_space: the backup's preflight refused (in db_backup's own run, before the dump); production untouched.
    db, row = dbs["no_space"], rep["no_space"]
    assert row["outcome"] == "failed", row
    assert "Take the backup" in row["failed_step"], row
    assert "MiB free" in row["error"] and "space_factor" in row["error"], row["error"]
    assert "production was not changed" in out, out[-6000:]  # only this host failed in production.yml
    assert (columns(db, engine), rows(db)) == before["no_space"]
    assert history(db, engine) is None
    assert not glob.glob(str(tmp_path / "backups" / "no_space" / "*"))

    # stop_at: only the first migration.
    if "stop_at" in dbs:
        db, row = dbs["stop_at"], rep["stop_at"]
        assert row["outcome"] == "changed", row
        assert history(db, engine) == ["20260101000000"]
        assert "phone" in columns(db, engine)
        assert "accounts_phone" not in {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert [a["name"] for a in row["migrations"]["applied"]] == ["20260101000000"], row["migrations"]

    # No scratch copy left, and the password never in the output or the report.
    assert not scratch_left(server, dbs["deploy"], engine)
    if server is not None:
        password = server.info["login_password"]
        assert password not in out
        assert password not in (tmp_path / "reports" / "run1" / "report.json").read_text(encoding="utf-8")

    # The re-run of the deployed host: nothing pending, so no copy, no backup, no change.
    r = ansible.playbook(PLAYBOOK, extra_vars=dict(extra, dbops_hosts="deploy", dbops_report_run_id="run2"),
                         inventory=inv)
    assert r.rc == 0, (r.stdout + r.stderr)[-6000:]
    assert recap(r.stdout, "deploy")["changed"] == 0, r.stdout[-6000:]
    assert len(backups(tmp_path, "deploy")) == 1
    [row] = report(tmp_path, "run2")["hosts"]
    assert row["outcome"] == "unchanged" and row["rehearsal"] == {"status": "not run"}, row
    assert history(dbs["deploy"], engine) == ["20260101000000", "20260102000000"]


MAINTENANCE = PLAYBOOK.parent / "maintenance.yml"


@pytest.mark.parametrize("fleet", ["sqlite"], indirect=True)
def test_maintenance_playbook_deploys_with_dbops_migration_deploy(ansible, fleet, tmp_path):
    """maintenance.yml with dbops_migration_deploy: the deploy is planned with the fix, runs after the schema fix
    and the history repair on the backup maintenance.yml took, and a failure there is rolled back by
    maintenance.yml's own rescue; a re-run with nothing pending changes nothing and takes no backup."""
    engine, dbs = fleet["engine"], fleet["dbs"]
    inv = inventory(fleet, ansible, tmp_path)
    extra = {"dbops_migration_tool": "dbmate", "dbops_migration_deploy": True, "dbops_hosts": "deploy:production_fails",
             "dbops_serial": "100%", "dbops_max_fail_percentage": 100, "dbops_report_dir": str(tmp_path / "reports"),
             "dbops_report_run_id": "m1", "dbops_preflight_min_free_mb": 1,
             "dbops_migration_deploy_create_table": True}
    before = {case: (columns(db, engine), rows(db)) for case, db in dbs.items()}

    r = ansible.playbook(MAINTENANCE, extra_vars=extra, inventory=inv)
    out = r.stdout + r.stderr
    assert r.rc == 2, out[-6000:]
    rep = {h["host"]: h for h in report(tmp_path, "m1")["hosts"]}
    assert set(rep) == {"deploy", "production_fails"}, rep.keys()
    assert rep["deploy"]["outcome"] == "changed", rep["deploy"]
    assert history(dbs["deploy"], engine) == ["20260101000000", "20260102000000"]
    assert columns(dbs["deploy"], engine) == before["deploy"][0] + ["phone"]
    assert len(backups(tmp_path, "deploy")) == 1
    assert rep["production_fails"]["outcome"] == "rolled_back", rep["production_fails"]
    assert (columns(dbs["production_fails"], engine), rows(dbs["production_fails"])) == before["production_fails"]
    assert history(dbs["production_fails"], engine) is None

    r = ansible.playbook(MAINTENANCE, extra_vars=dict(extra, dbops_hosts="deploy", dbops_report_run_id="m2"),
                         inventory=inv)
    assert r.rc == 0, (r.stdout + r.stderr)[-6000:]
    assert recap(r.stdout, "deploy")["changed"] == 0, r.stdout[-6000:]
    assert len(backups(tmp_path, "deploy")) == 1
    [row] = report(tmp_path, "m2")["hosts"]
    assert row["outcome"] == "unchanged", row


# A code tool's command (here a script standing in for alembic/knex): it migrates the database its APP_URL names.
CODE_TOOL = (
    "import os, sqlite3\n"
    "c = sqlite3.connect(os.environ['APP_URL'][len('sqlite:///'):])\n"
    "c.execute('ALTER TABLE accounts ADD COLUMN phone varchar(32)')\n"
    "c.execute('CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) primary key)')\n"
    "c.execute(\"INSERT INTO schema_migrations VALUES ('20260101000000')\")\n"
    "c.commit()\n"
)


def test_code_tool_rehearsal_migrates_the_copy_never_production(ansible, tmp_path):
    """A code-migration tool's command is rehearsed on the copy only when it is told the database by a token:
    with {database_url} the copy, then production after the backup; with a URL of its own and no token the
    rehearsal is refused before anything runs; with a token that does not reach the URL (misdirected), the
    command migrates production during the rehearsal, and the failure says so instead of "not touched"."""
    tool = tmp_path / "code_tool.py"
    tool.write_text(CODE_TOOL, encoding="utf-8")
    hosts, dbs = {}, {}
    for case in ("tokened", "untokened", "misdirected"):
        path = tmp_path / "sqlite" / case / "app.sqlite3"
        path.parent.mkdir(parents=True)
        sqlite3.connect(path).close()
        db = dbs[case] = SqliteDB(path)
        for stmt in SEED["sqlite"]:
            db.execute(stmt)
        mig = tmp_path / "migrations" / case
        mig.mkdir(parents=True)
        (mig / FIRST).write_text(ADD_PHONE, encoding="utf-8")
        env = {"APP_URL": "{database_url}"} if case == "tokened" else {"APP_URL": "sqlite:///%s" % path}
        if case == "misdirected":
            env["APP_NOTE"] = "{database}"
        hosts[case] = {"ansible_connection": "local", "ansible_python_interpreter": ansible.python,
                       "dbops_engine": "sqlite", "dbops_database": str(path),
                       "dbops_backup_dir": str(tmp_path / "backups" / case), "dbops_migrations_path": str(mig),
                       "dbops_migration_deploy_command": [ansible.python, str(tool)],
                       "dbops_migration_deploy_environment": env}
    inv = tmp_path / "inventory.json"
    inv.write_text(json.dumps({"all": {"hosts": hosts}}), encoding="utf-8")
    extra = {"dbops_migration_tool": "dbmate", "dbops_hosts": "all", "dbops_serial": "100%",
             "dbops_max_fail_percentage": 100, "dbops_report_dir": str(tmp_path / "reports"),
             "dbops_report_run_id": "code", "dbops_preflight_min_free_mb": 1, "dbops_rehearse": True,
             "dbops_migration_deploy_create_table": True}
    r = ansible.playbook(PLAYBOOK, extra_vars=extra, inventory=inv)
    out = r.stdout + r.stderr
    assert r.rc == 2, out[-6000:]
    rep = {h["host"]: h for h in report(tmp_path, "code")["hosts"]}

    row, db = rep["tokened"], dbs["tokened"]
    assert row["outcome"] == "changed" and row["rehearsal"]["status"] == "passed", row
    assert "phone" in columns(db, "sqlite") and history(db, "sqlite") == ["20260101000000"]
    assert len(backups(tmp_path, "tokened")) == 1

    row, db = rep["untokened"], dbs["untokened"]
    assert row["outcome"] == "failed" and "names no database token" in row["error"], row
    assert "phone" not in columns(db, "sqlite") and history(db, "sqlite") is None
    assert backups(tmp_path, "untokened") == []

    row, db = rep["misdirected"], dbs["misdirected"]
    assert row["outcome"] == "failed" and row["rehearsal"]["status"] == "failed", row
    assert "WAS migrated during the rehearsal" in row["error"] and "not touched" not in row["error"], row["error"]
    assert history(db, "sqlite") == ["20260101000000"] and backups(tmp_path, "misdirected") == []

    assert not glob.glob(str(tmp_path / "sqlite" / "*" / "dbops_scratch_*"))
