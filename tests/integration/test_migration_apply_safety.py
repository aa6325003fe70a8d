"""migration_apply's safety through Ansible: lock timeout + whole-transaction retry with a concurrent reader,
retries used up (history as before), the tool's own migration lock, the lint gate, code tools via command.

Locks are held and released on events (lock_events.py), never after a sleep.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from lock_events import ModuleRun, Reader, ServerView, hold_transaction, wait_for, watch_window
from migration_batch import ServerDB, pg16_db, run_tasks

APPLY = "dbops.maintenance.migration_apply"
REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("DBOPS_CONFORMANCE_DIR", REPO / "build" / "conformance"))
VENV = TOOLS_DIR / "venv" / "bin"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


@pytest.fixture(params=["pg16", "mariadb"])
def sdb(request):
    servers = request.getfixturevalue("servers")
    if request.param not in servers:
        pytest.skip("%s not started" % request.param)
    server = servers[request.param]
    name = server.create_database()
    request.addfinalizer(lambda: server.drop_database(name))
    return ServerDB(server, name)


def make_orders(db):
    if db.engine == "postgresql":
        db.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
        db.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 200) g")
    else:
        db.execute("CREATE TABLE orders (id int PRIMARY KEY, total int) ENGINE=InnoDB")
        db.execute("INSERT INTO orders SELECT seq, seq FROM seq_1_to_200")


def dbmate_dir(tmp_path, up):
    d = tmp_path / "dbmate"
    d.mkdir()
    (d / "20240101000001_note.sql").write_text("-- migrate:up\n%s\n\n-- migrate:down\nSELECT 1;\n" % up)
    return d


def has_column(db, column):
    if db.engine == "postgresql":
        q = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = %s"
    else:
        q = ("SELECT count(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
             "AND TABLE_NAME = 'orders' AND COLUMN_NAME = %s")
    return db.query(q, [column])[0][0] == 1


def test_lock_timeout_rolls_back_and_retries_whole_reader_not_stalled(ansible, sdb, tmp_path):
    """A blocker on orders: the migration's ALTER times out, its transaction (with the history INSERT) is rolled
    back, it waits for the blocker to go, then runs whole once; the reader is never stuck behind us for longer
    than lock_timeout (+ 0.5 s of scheduling on a loaded machine)."""
    db = sdb
    make_orders(db)
    db.execute("CREATE TABLE schema_migrations (version varchar(128) primary key)")
    path = dbmate_dir(tmp_path, "ALTER TABLE orders ADD COLUMN note varchar(20);")
    args = dict(db.params, tool="dbmate", migrations_path=str(path), lock_timeout=1, lock_retries=5,
                lock_wait_total=300)
    reader = Reader(db, "SELECT total FROM orders WHERE id = 7")
    reader.start()
    reader.ready.wait(30)
    view = ServerView(db, reader)
    conn = None
    run = None
    try:
        conn, ident = hold_transaction(db, ["SELECT count(*) FROM orders /* report job */"])
        view.add_other(ident)
        view.start()
        view.first.wait(30)
        run = ModuleRun(ansible, APPLY, args)
        run.start()
        assert wait_for(lambda: view.queueings() >= 1 and view.module_waiting(), run, "module queueing"), run.result
        assert wait_for(view.module_watching, run, "module watching its blockers"), run.result
        w0, w1 = watch_window(view, reader, run, queries=30)
        assert not run.done.is_set(), "returned while the blocker held the table: %s" % run.result
        # while it watched, nothing of the migration stayed: no column, no history row
        assert not has_column(db, "note")
        assert db.query("SELECT count(*) FROM schema_migrations")[0][0] == 0
        conn.commit()
        r = run.wait()
    finally:
        if conn is not None:
            try:
                conn.rollback()
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
        if run is not None:
            run.done.wait(300)
        view.finish()
        reader.finish()
    assert not r.failed, json.dumps(r, default=str)[:3000]
    res = r
    assert [a["name"] for a in res["applied"]] == ["20240101000001"], res
    assert len(res["attempts"]) == 1 and res["attempts"][0]["requeued"] == "blockers gone", res["attempts"]
    assert view.reader_waits(w0, w1) == 0
    assert reader.completed_between(w0, w1) > 0
    stall = max(e - s for s, e in reader.queries)
    assert stall < 1 + 0.5, "reader stalled %.2fs behind a lock_timeout of 1s" % stall
    assert has_column(db, "note")
    assert db.query("SELECT version FROM schema_migrations") == [("20240101000001",)]


def test_retries_used_up_prisma_history_as_before_and_tool_lock(ansible, request, tmp_path):
    """PostgreSQL, Prisma: (1) the blocker never goes (held until the module returned): the migration is rolled
    back whole, the started row is taken back, so the history is as before and the next run may simply retry;
    (2) another session holds Prisma's own advisory lock: refused, nothing run; (3) the lock gone: applied."""
    db = pg16_db(request)
    make_orders(db)
    mig = tmp_path / "prisma" / "20250101000000_note"
    mig.mkdir(parents=True)
    (mig / "migration.sql").write_text('-- AlterTable\nALTER TABLE "orders" ADD COLUMN "note" TEXT;\n')
    args = dict(db.params, tool="prisma", migrations_path=str(mig.parent), create_table=True, lock_timeout=0.5,
                lock_retries=1, lock_wait_total=3)
    blocker, _ident = hold_transaction(db, ["SELECT count(*) FROM orders"])
    try:
        first = run_tasks(ansible, [dict(name="blocked", module=APPLY, args=args)])["blocked"]
    finally:
        blocker.rollback()
        blocker.close()
    rows_after_first = db.query('SELECT count(*) FROM "_prisma_migrations"')[0][0]
    column_after_first = has_column(db, "note")
    lock_conn, _lock_ident = hold_transaction(db, ["SELECT pg_advisory_lock(72707369)"])
    try:
        second = run_tasks(ansible, [dict(name="tool_lock", module=APPLY, args=args)])["tool_lock"]
    finally:
        lock_conn.rollback()
        lock_conn.cursor().execute("SELECT pg_advisory_unlock_all()")
        lock_conn.close()
    third = run_tasks(ansible, [dict(name="free", module=APPLY, args=args)])["free"]

    assert first["failed"] and "lock" in first["msg"], first
    assert first["failed_migration"]["lock_timeout"] is True, first["failed_migration"]
    assert "history is as before" in first["msg"], first["msg"]
    assert len(first["attempts"]) >= 1, first
    assert rows_after_first == 0 and not column_after_first, "the history or schema changed after the give-up"
    assert second["failed"] and "own lock" in second["msg"] and "72707369" in second["msg"], second
    assert second["applied"] == [] if "applied" in second else True
    assert not third["failed"], third
    assert [a["name"] for a in third["applied"]] == ["20250101000000_note"]
    rows = db.query('SELECT migration_name, finished_at IS NOT NULL, applied_steps_count, logs, rolled_back_at '
                    'FROM "_prisma_migrations"')
    assert rows == [("20250101000000_note", True, 1, None, None)], rows
    assert has_column(db, "note")


def test_lint_gate_and_command(ansible, request, tmp_path):
    """PostgreSQL: an error finding refuses the run (nothing run), dbops:ignore accepts it, lint: false skips the
    gate; command: the application's tool runs with PGOPTIONS carrying lock_timeout, the history read before
    and after, a failing command reported with its output and not retried."""
    db = pg16_db(request)
    server, name = db.server, db.name
    db.execute("CREATE TABLE old_a (id int)")
    db.execute("CREATE TABLE old_b (id int)")
    lint_dir = tmp_path / "lint"
    lint_dir.mkdir()
    (lint_dir / "20240101000001_drop.sql").write_text("-- migrate:up\nDROP TABLE old_a;\n\n-- migrate:down\n")
    ign_dir = tmp_path / "ignored"
    ign_dir.mkdir()
    (ign_dir / "20240101000001_drop.sql").write_text(
        "-- migrate:up\n-- dbops:ignore drop-table the table was emptied in release 41\nDROP TABLE old_b;\n\n"
        "-- migrate:down\n")
    many_dir = tmp_path / "many"
    many_dir.mkdir()
    for i in range(105):  # a style hint (info) each; the last one a warning too (integer key)
        (many_dir / ("202401010%05d_t.sql" % i)).write_text(
            "-- migrate:up\nCREATE TABLE many_%d (id %s PRIMARY KEY, note varchar(40));\n\n-- migrate:down\n"
            % (i, "integer" if i == 104 else "bigint"))
    base = dict(db.params, tool="dbmate", create_table=True)
    # a "tool" that records a dbmate row itself, and prints its PGOPTIONS (the lock_timeout it was given)
    tool = tmp_path / "fake_tool.py"
    tool.write_text(
        "import os, sys, psycopg\n"
        "print('PGOPTIONS=' + os.environ.get('PGOPTIONS', ''))\n"
        "if os.environ.get('FAIL'):\n"
        "    sys.stderr.write('migration 20240101000003 failed: boom\\n')\n"
        "    sys.exit(3)\n"
        "c = psycopg.connect(os.environ['APP_DSN'], autocommit=True)\n"
        "print('lock_timeout=' + c.execute('SHOW lock_timeout').fetchone()[0])\n"
        "c.execute(\"INSERT INTO schema_migrations (version) VALUES ('20240101000002')\")\n")
    i = server.info
    dsn = "host=%s port=%s user=%s password=%s dbname=%s" % (
        i["login_host"], i["login_port"], i["login_user"], i["login_password"], name)
    cmd_dir = tmp_path / "cmd"
    cmd_dir.mkdir()
    (cmd_dir / "20240101000002_x.sql").write_text("-- migrate:up\nSELECT 1;\n-- migrate:down\n")
    tasks = [
        dict(name="lint_refused", module=APPLY, args=dict(base, migrations_path=str(lint_dir))),
        dict(name="lint_ignored", module=APPLY, args=dict(base, migrations_path=str(ign_dir), history_table="h_ign")),
        dict(name="lint_off", module=APPLY, args=dict(base, migrations_path=str(lint_dir), lint=False)),
        dict(name="lint_capped", module=APPLY, check=True,
             args=dict(base, migrations_path=str(many_dir), history_table="h_many")),
        dict(name="cmd_check", module=APPLY, check=True,
             args=dict(base, migrations_path=str(cmd_dir), history_table="schema_migrations",
                       command=[sys.executable, str(tool)], environment=dict(APP_DSN=dsn))),
        dict(name="cmd", module=APPLY, diff=True,
             args=dict(base, migrations_path=str(cmd_dir), command=[sys.executable, str(tool)], chdir=str(tmp_path),
                       lock_timeout=1.5, environment=dict(APP_DSN=dsn))),
        dict(name="cmd_fail", module=APPLY,
             args=dict(base, migrations_path=str(cmd_dir), command=[sys.executable, str(tool)],
                       environment=dict(APP_DSN=dsn, FAIL="please-fail"))),
    ]
    res = run_tasks(ansible, tasks)
    r = res["lint_refused"]
    assert r["failed"] and "lint gate" in r["msg"] and "drop-table" in r["msg"], r
    assert any(f["rule"] == "drop-table" and not f["ignored"] for f in r["lint"]), r["lint"]
    assert r["lint_unlisted_info"] == 0, r  # returned with the refusal too
    r = res["lint_ignored"]
    assert not r["failed"], r
    assert [f["ignored"] for f in r["lint"] if f["rule"] == "drop-table"] == [True], r["lint"]
    r = res["lint_off"]
    assert not r["failed"] and r["lint"] == [] and [a["name"] for a in r["applied"]] == ["20240101000001"], r
    # the gate lists findings as migration_lint does by default: every warning, at most 100 style hints
    r = res["lint_capped"]
    assert not r["failed"] and r["changed"] and len(r["pending"]) == 105, r
    severities = [f["severity"] for f in r["lint"]]
    assert severities.count("info") == 100 and r["lint_unlisted_info"] == 5, (severities, r["lint_unlisted_info"])
    assert [f["rule"] for f in r["lint"] if f["severity"] == "warning"] == ["prefer-bigint"], r["lint"]
    assert res["lint_off"]["lint_unlisted_info"] == 0, res["lint_off"]
    tables = [t[0] for t in db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert "old_a" not in tables and not any(t.startswith("many_") for t in tables) and "old_b" not in tables, tables
    r = res["cmd_check"]
    assert not r["failed"] and r["changed"] and r["pending"] == ["20240101000002"] and "stdout" not in r, r
    r = res["cmd"]
    assert not r["failed"], r
    assert "PGOPTIONS=-c lock_timeout=1500ms" in r["stdout"] and "lock_timeout=1500ms" in r["stdout"], r["stdout"]
    assert r["changed"] and [a["name"] for a in r["applied"]] == ["20240101000002"] and r["pending"] == [], r
    assert i["login_password"] not in json.dumps(r), "the DSN's password reached the output"
    r = res["cmd_fail"]
    assert r["failed"] and "exited with 3" in r["msg"] and "not retried" in r["msg"], r
    assert "boom" in r["stderr"] and r["status"]["applied"], r
    assert i["login_password"] not in json.dumps(r)


def test_alembic_command_conformance(ansible, request, tmp_path):
    """The real alembic through command (SQLite): applied listed from the history difference, re-run idempotent."""
    if not (VENV / "alembic").exists():
        pytest.skip("alembic is not installed (%s): run scripts/install-conformance-tools.sh" % VENV)
    import sqlite3
    dbfile = tmp_path / "app.sqlite3"
    sqlite3.connect(dbfile).close()
    proj = tmp_path / "proj"
    versions = proj / "alembic" / "versions"
    versions.mkdir(parents=True)
    (proj / "alembic.ini").write_text("[alembic]\nscript_location = alembic\nsqlalchemy.url = sqlite:///%s\n" % dbfile)
    (proj / "alembic" / "env.py").write_text(
        "from alembic import context\nfrom sqlalchemy import engine_from_config, pool\n"
        "config = context.config\n"
        "engine = engine_from_config(config.get_section(config.config_ini_section), prefix='sqlalchemy.', "
        "poolclass=pool.NullPool)\n"
        "with engine.connect() as connection:\n"
        "    context.configure(connection=connection, target_metadata=None)\n"
        "    with context.begin_transaction():\n"
        "        context.run_migrations()\n")
    (proj / "alembic" / "script.py.mako").write_text("")
    for rev, down, table in (("001_a", None, "a"), ("002_b", "001_a", "b")):
        (versions / ("%s.py" % rev)).write_text(
            "from alembic import op\nimport sqlalchemy as sa\nrevision = %r\ndown_revision = %r\n"
            "branch_labels = None\ndepends_on = None\n"
            "def upgrade():\n    op.create_table(%r, sa.Column('id', sa.Integer, primary_key=True))\n"
            "def downgrade():\n    op.drop_table(%r)\n" % (rev, down, table, table))
    args = dict(engine="sqlite", database=str(dbfile), tool="alembic", migrations_path=str(versions),
                command=[str(VENV / "alembic"), "upgrade", "head"], chdir=str(proj))
    res = run_tasks(ansible, [dict(name="check", module=APPLY, args=args, check=True),
                              dict(name="up", module=APPLY, args=args, diff=True),
                              dict(name="again", module=APPLY, args=args)])
    r = res["check"]
    assert not r["failed"] and r["pending"] == ["001_a", "002_b"], r
    r = res["up"]
    assert not r["failed"], r
    assert r["changed"] and r["status"]["current"] == ["002_b"] and r["pending"] == [], r
    assert r["diff"]["after"] == [{"version_num": "002_b"}], r["diff"]
    r = res["again"]
    assert not r["failed"] and r["changed"] is False and r["applied"] == [], r
    import subprocess
    current = subprocess.run([str(VENV / "alembic"), "current"], cwd=proj, capture_output=True, text=True,
                             timeout=300, check=False)
    assert current.returncode == 0 and "002_b (head)" in current.stdout, current.stdout + current.stderr
    conn = sqlite3.connect(dbfile)
    assert {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {"a", "b"}
    conn.close()


def test_knex_command_pgoptions_reach_node_postgres(ansible, request, tmp_path):
    """The real knex through command (PostgreSQL): migrate:latest runs under our maintenance lock, its
    connection (node-postgres) gets lock_timeout from PGOPTIONS, applied is the history difference (knex's
    own rows, batch 1), the re-run changes nothing; the password given in environment is never in the output."""
    knex = TOOLS_DIR / "node" / "node_modules" / ".bin" / "knex"
    if not knex.exists():
        pytest.skip("knex is not installed (%s): run scripts/install-conformance-tools.sh" % knex)
    db = pg16_db(request)
    server, name = db.server, db.name
    mig = tmp_path / "migrations"
    mig.mkdir()
    (mig / "20240101000001_seen.js").write_text(
        "exports.up = async (knex) => {\n"
        "  const r = await knex.raw('SHOW lock_timeout');\n"
        "  await knex.schema.createTable('seen', (t) => { t.string('lock_timeout'); });\n"
        "  await knex('seen').insert({ lock_timeout: r.rows[0].lock_timeout });\n"
        "};\nexports.down = async (knex) => knex.schema.dropTable('seen');\n")
    (tmp_path / "knexfile.js").write_text(
        "module.exports = { client: 'pg', connection: { host: process.env.H, port: +process.env.P, "
        "user: process.env.U, password: process.env.APP_SECRET, database: process.env.D }, "
        "migrations: { directory: %r } };\n" % str(mig))
    i = server.info
    args = dict(db.params, tool="knex", migrations_path=str(mig), create_table=True, lock_timeout=2.5,
                command=[str(knex), "migrate:latest", "--knexfile", str(tmp_path / "knexfile.js")], chdir=str(tmp_path),
                environment=dict(H=i["login_host"], P=str(i["login_port"]), U=i["login_user"],
                                 APP_SECRET=i["login_password"], D=name,
                                 NODE_PATH=str(TOOLS_DIR / "node" / "node_modules")))

    def knex_list():  # the oracle: knex's own list of completed and pending migrations
        import subprocess
        out = subprocess.run([str(knex), "migrate:list", "--knexfile", str(tmp_path / "knexfile.js")], cwd=tmp_path,
                             env=dict(os.environ, **args["environment"]), capture_output=True, text=True, timeout=300,
                             check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    listed = knex_list()
    assert "Found 1 Pending Migration file/files." in listed and "20240101000001_seen.js" in listed, listed
    res = run_tasks(ansible, [dict(name="check", module=APPLY, args=args, check=True),
                              dict(name="up", module=APPLY, args=args), dict(name="again", module=APPLY, args=args)],
                    output=True)
    assert res["check"]["pending"] == ["20240101000001_seen.js"], res["check"]
    r = res["up"]
    assert not r["failed"], r
    assert [a["name"] for a in r["applied"]] == ["20240101000001_seen.js"] and r["pending"] == [], r
    listed = knex_list()
    assert "No Pending Migration files Found." in listed and "Found 1 Completed Migration file/files." in listed, \
        listed
    assert db.query("SELECT lock_timeout FROM seen") == [("2500ms",)]
    assert db.query("SELECT name, batch FROM knex_migrations") == [("20240101000001_seen.js", 1)]
    r = res["again"]
    assert not r["failed"] and r["changed"] is False and r["applied"] == [], r
    assert i["login_password"] not in res["_stdout"] + res["_stderr"]


# --- the tools' own migration locks: sqlx (MySQL), Flyway, goose --------------------------------------------

def java_hash(text):
    """java.lang.String.hashCode, written again here (not imported from the module under test)."""
    h = 0
    for unit in [int.from_bytes(text.encode("utf-16-be")[i:i + 2], "big") for i in range(0, 2 * len(text), 2)]:
        h = (h * 31 + unit) % 2 ** 32
    return h - 2 ** 32 if h >= 2 ** 31 else h


def golden_lock(tool, engine, database):
    """The lock each tool takes, from its source: (statement holding it in another session, what our message names)."""
    import zlib
    if tool == "sqlx":  # sqlx-<engine>/src/migrate.rs generate_lock_id: 0x3d32ad9e * crc32(database)
        key = 0x3d32ad9e * zlib.crc32(database.encode())
        if engine == "postgresql":
            return "SELECT pg_advisory_lock(%d)" % key, str(key)
        return "SELECT GET_LOCK('%x', 0)" % key, "%x" % key
    if tool == "flyway":  # PostgreSQLAdvisoryLockTemplate / MySQLNamedLockTemplate: Table.toString().hashCode()
        if engine == "postgresql":
            key = 0x466C79776179 + java_hash('"public"."flyway_schema_history"')
            # Flyway's default (postgresql.transactional.lock): the transaction-level lock
            return "SELECT pg_advisory_xact_lock(%d)" % key, str(key)
        name = "Flyway-%d" % java_hash("`%s`.`flyway_schema_history`" % database)
        return "SELECT GET_LOCK('%s', 0)" % name, name
    if tool == "golang-migrate":  # database/util.go GenerateAdvisoryLockId: crc32(names joined by NUL) * salt
        def lock_id(name, *more):
            if more:
                name = "\x00".join(list(more) + [name])
            return (zlib.crc32(name.encode()) * 1486364155) % 2 ** 32
        if engine == "postgresql":  # postgres.go Lock: (DatabaseName, migrationsSchemaName, migrationsTableName)
            key = lock_id(database, "public", "schema_migrations")
            return "SELECT pg_advisory_lock(%d)" % key, str(key)
        key = lock_id("%s:schema_migrations" % database)  # mysql.go Lock: "<database>:<table>", GET_LOCK(?, 10)
        return "SELECT GET_LOCK('%d', 0)" % key, str(key)
    if tool == "prisma":  # schema-engine flavour/mysql.rs acquire_lock
        return "SELECT GET_LOCK('prisma_migrate', 0)", "prisma_migrate"
    # goose lock.DefaultLockID (the session locker, off by default in goose)
    return "SELECT pg_advisory_lock(5887940537704921958)", "5887940537704921958"


LOCK_CASES = {"pg16": ["sqlx", "flyway", "goose", "golang-migrate"],
              "mariadb": ["sqlx", "flyway", "golang-migrate", "prisma"]}
HISTORY = {"sqlx": "_sqlx_migrations", "flyway": "flyway_schema_history", "goose": "goose_db_version",
           "golang-migrate": "schema_migrations", "prisma": "_prisma_migrations"}


def write_one(tool, path):
    path.mkdir()
    if tool == "sqlx":
        (path / "20240101000001_lockcheck.sql").write_text("CREATE TABLE lockcheck (id int);\n")
    elif tool == "flyway":
        (path / "V1__lockcheck.sql").write_text("CREATE TABLE lockcheck (id int);\n")
    elif tool == "golang-migrate":
        (path / "1_lockcheck.up.sql").write_text("CREATE TABLE lockcheck (id int);\n")
        (path / "1_lockcheck.down.sql").write_text("DROP TABLE lockcheck;\n")
    elif tool == "prisma":
        (path / "20250101000000_lockcheck").mkdir()
        (path / "20250101000000_lockcheck" / "migration.sql").write_text("CREATE TABLE lockcheck (id int);\n")
    else:
        (path / "00001_lockcheck.sql").write_text("-- +goose Up\nCREATE TABLE lockcheck (id int);\n-- +goose Down\n"
                                                  "DROP TABLE lockcheck;\n")


def table_exists(db, table):
    if db.engine == "postgresql":
        return db.query("SELECT to_regclass(%s) IS NOT NULL", [table])[0][0]
    return db.query("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = %s", [table])[0][0] == 1


@pytest.mark.parametrize("server_name", ["pg16", "mariadb"])
def test_tool_locks(ansible, request, tmp_path, server_name):
    """Another session holds the tool's own migration lock (the name/number derived from the tool's source,
    computed again here): migration_apply refuses clearly, naming the lock, after a bounded wait (it returns while
    the lock is still held), and nothing ran (no history table, no schema change). With the lock released
    while migration_apply is waiting for it (wait_for_lock), it takes the lock and applies."""
    servers = request.getfixturevalue("servers")
    if server_name not in servers:
        pytest.skip("%s not started" % server_name)
    server = servers[server_name]
    cases = {}
    for tool in LOCK_CASES[server_name]:
        name = server.create_database()
        request.addfinalizer(lambda name=name: server.drop_database(name))
        db = ServerDB(server, name)
        path = tmp_path / tool
        write_one(tool, path)
        hold, needle = golden_lock(tool, db.engine, name)
        cases[tool] = dict(db=db, args=dict(db.params, tool=tool, migrations_path=str(path), create_table=True),
                           hold=hold, needle=needle)
    holders = {tool: hold_transaction(c["db"], [c["hold"]])[0] for tool, c in cases.items()}
    try:
        tasks = [dict(name=tool, module=APPLY, args=dict(c["args"], wait_for_lock=0)) for tool, c in cases.items()]
        tasks.append(dict(name="sqlx:bounded", module=APPLY, args=dict(cases["sqlx"]["args"], wait_for_lock=1)))
        refused = run_tasks(ansible, tasks)
        untouched = {tool: not table_exists(c["db"], HISTORY[tool]) and not table_exists(c["db"], "lockcheck")
                     for tool, c in cases.items()}
        waited = None
        if server_name == "pg16":
            # the release comes while a run waits for Flyway's lock: seen asking for it, then the holder lets go
            c = cases["flyway"]
            run = ModuleRun(ansible, APPLY, dict(c["args"], wait_for_lock=120))
            run.start()
            asking = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND query LIKE 'SELECT pg_try_advisory_lock(%'")
            assert wait_for(lambda: c["db"].query(asking)[0][0] >= 1, run, "migration_apply asking for the lock")
            assert not run.done.is_set(), run.result
            holders.pop("flyway").rollback()  # the transaction-level lock goes with the transaction
            waited = run.wait()
    finally:
        for conn in holders.values():
            try:
                conn.rollback()
            finally:
                conn.close()
    for tool, c in cases.items():
        r = refused[tool]
        assert r["failed"] and "own lock is held by another session" in r["msg"] and c["needle"] in r["msg"], (tool, r)
        assert "Nothing was run" in r["msg"] and not r.get("applied"), r
        assert untouched[tool], "%s: the history table or the migration's table exists after the refusal" % tool
    r = refused["sqlx:bounded"]
    assert r["failed"] and "wait_for_lock" in r["msg"] and cases["sqlx"]["needle"] in r["msg"], r
    if waited is not None:
        assert not waited["failed"], waited
        assert [a["file"] for a in waited["applied"]] == ["V1__lockcheck.sql"], waited
        assert table_exists(cases["flyway"]["db"], "lockcheck")
    again = run_tasks(ansible, [dict(name=t, module=APPLY, args=dict(c["args"], wait_for_lock=0))
                                for t, c in cases.items() if waited is None or t != "flyway"])
    for tool in again:
        assert not again[tool]["failed"] and len(again[tool]["applied"]) == 1, (tool, again[tool])


def test_history_read_again_once_the_tool_lock_is_ours(ansible, request, tmp_path):
    """An application container holds sqlx's lock and applies one of our pending migrations meanwhile: once
    migration_apply gets the lock (it was seen asking for it, then the holder committed its row and let go) it
    reads the history again, sees the change and runs nothing (running the migration again would fail it); the
    next run applies only what is left."""
    import hashlib
    db = pg16_db(request)
    name = db.name
    path = tmp_path / "sqlx"
    path.mkdir()
    files = {1: "CREATE TABLE race_a (id int);\n", 2: "CREATE TABLE race_b (id int);\n",
             3: "CREATE TABLE race_c (id int);\n"}
    for n, text in files.items():
        (path / ("2024010100000%d_m%d.sql" % (n, n))).write_text(text)
    args = dict(db.params, tool="sqlx", migrations_path=str(path), create_table=True)
    first = run_tasks(ansible, [dict(name="first", module=APPLY, args=dict(args, to="20240101000001"))])["first"]
    assert not first["failed"] and len(first["applied"]) == 1, first
    hold, _needle = golden_lock("sqlx", "postgresql", name)
    holder, _pid = hold_transaction(db, [hold])
    try:
        holder.commit()  # the session-level lock stays; the transaction is the other deploy's own
        run = ModuleRun(ansible, APPLY, dict(args, wait_for_lock=120))
        run.start()
        asking = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND query LIKE 'SELECT pg_try_advisory_lock(%'")
        assert wait_for(lambda: db.query(asking)[0][0] >= 1, run, "migration_apply asking for sqlx's lock")
        assert not run.done.is_set(), run.result
        cur = holder.cursor()
        cur.execute(files[2])
        cur.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
                    "VALUES (20240101000002, 'm2', true, %s, 1)", [hashlib.sha384(files[2].encode()).digest()])
        holder.commit()
        cur.execute(hold.replace("pg_advisory_lock", "pg_advisory_unlock"))
        holder.commit()
        raced = run.wait()
    finally:
        holder.rollback()
        holder.close()
    assert raced["failed"] and "changed while this run was getting the tool's migration lock" in raced["msg"], raced
    assert "applied 20240101000002" in raced["msg"] and raced["pending"] == ["20240101000003"], raced
    assert not table_exists(db, "race_c")
    assert db.query("SELECT version FROM _sqlx_migrations ORDER BY version") == [(20240101000001,), (20240101000002,)]
    again = run_tasks(ansible, [dict(name="again", module=APPLY, args=args)])["again"]
    assert not again["failed"] and [a["name"] for a in again["applied"]] == ["20240101000003"], again
    assert table_exists(db, "race_c")


def test_history_row_of_a_non_transactional_migration_waits_bounded(ansible, request, tmp_path):
    """dbmate transaction:false on PostgreSQL: the migration ran (it is held in a gate until the test has taken
    an ACCESS EXCLUSIVE lock on schema_migrations), then its history INSERT hits the lock: it is retried within
    lock_wait_total, and then the run fails saying what ran and stays (no "Unexpected error"), the lock still
    held until the module returned. Once the lock is gone the re-run records it."""
    db = pg16_db(request)
    db.execute("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
    db.execute("CREATE TABLE gate (id int)")
    db.execute("CREATE FUNCTION gate_wait() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
               "LOOP EXIT WHEN EXISTS (SELECT 1 FROM gate); PERFORM pg_sleep(0.02); END LOOP; END $$")
    path = tmp_path / "dbmate"
    path.mkdir()
    (path / "20240101000001_gated.sql").write_text(
        "-- migrate:up transaction:false\nCREATE TABLE IF NOT EXISTS marked (id int);\nSELECT gate_wait();\n\n"
        "-- migrate:down\n")
    args = dict(db.params, tool="dbmate", migrations_path=str(path), lock_timeout=0.5, lock_retries=2,
                lock_wait_total=1)
    run = ModuleRun(ansible, APPLY, args)
    run.start()
    in_gate = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
               "AND query LIKE '%gate_wait()%' AND pid <> pg_backend_pid()")
    holder = None
    try:
        assert wait_for(lambda: db.query(in_gate)[0][0] >= 1, run, "the migration in its gate")
        holder, _pid = hold_transaction(db, ["LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE"])
        db.execute("INSERT INTO gate VALUES (1)")
        r = run.wait()  # the lock is held until the module has returned
    finally:
        if holder is not None:
            holder.rollback()
            holder.close()
    assert r["failed"] and "history row could not be written" in r["msg"], r
    assert "Unexpected" not in r["msg"] and "ran and stay" in r["msg"], r["msg"]
    fm = r["failed_migration"]
    assert fm["name"] == "20240101000001" and fm["ran"] and fm["rolled_back"] is False, fm
    assert table_exists(db, "marked") and db.query("SELECT count(*) FROM schema_migrations") == [(0,)]
    again = run_tasks(ansible, [dict(name="again", module=APPLY, args=args)])["again"]
    assert not again["failed"] and [a["name"] for a in again["applied"]] == ["20240101000001"], again
    assert db.query("SELECT version FROM schema_migrations") == [("20240101000001",)]
