"""migration_apply through Ansible: the native apply of prisma, dbmate, golang-migrate, goose, sqlx and Flyway
on PostgreSQL, MariaDB and SQLite. One ansible-playbook per engine for all six tools (a database per tool).

Per tool: check mode from empty (no table, no row), apply `to` the first, apply the rest, idempotent re-run,
a failing migration recorded as the tool records it (and the schema as the tool leaves it), the next run
refused where the tool refuses it, the history rows compared with what the tool's source writes.
"""

from __future__ import annotations

import json

import pytest
from migration_batch import ServerDB, run_tasks

APPLY = "dbops.maintenance.migration_apply"
STATUS = "dbops.maintenance.migration_status"
NATIVE = ["prisma", "dbmate", "golang-migrate", "goose", "sqlx", "flyway"]


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def mig_id(tool, n):
    return {"prisma": "2025010100000%d_m%d" % (n, n), "dbmate": "2024010100000%d" % n, "sqlx": "2024010100000%d" % n,
            }.get(tool, str(n))


def mig_file(tool, n):
    """The file name of migration n (prisma: its directory), which `to` accepts as well as the id."""
    return {"prisma": mig_id(tool, n), "dbmate": "%s_m%d.sql" % (mig_id(tool, n), n),
            "golang-migrate": "%d_m%d.up.sql" % (n, n), "goose": "%05d_m%d.sql" % (n, n),
            "sqlx": "%s_m%d.sql" % (mig_id(tool, n), n), "flyway": "V%d__m%d.sql" % (n, n)}[tool]


def write_migration(tool, path, n, up):
    """Migration n of a tool, with `up` as its up SQL, in the tool's layout and markers."""
    if tool == "prisma":
        d = path / mig_id(tool, n)
        d.mkdir(parents=True, exist_ok=True)
        (d / "migration.sql").write_text(up)
    elif tool == "dbmate":
        (path / ("%s_m%d.sql" % (mig_id(tool, n), n))).write_text("-- migrate:up\n%s\n\n-- migrate:down\nSELECT 1;\n" % up)
    elif tool == "golang-migrate":
        (path / ("%d_m%d.up.sql" % (n, n))).write_text(up)
        (path / ("%d_m%d.down.sql" % (n, n))).write_text("SELECT 1;\n")
    elif tool == "goose":
        (path / ("%05d_m%d.sql" % (n, n))).write_text("-- +goose Up\n%s\n-- +goose Down\nSELECT 1;\n" % up)
    elif tool == "sqlx":
        (path / ("%s_m%d.sql" % (mig_id(tool, n), n))).write_text(up)
    elif tool == "flyway":
        (path / ("V%d__m%d.sql" % (n, n))).write_text(up)


def make_db(request, engine, tmp_path, label):
    if engine == "sqlite":
        import sqlite3
        p = tmp_path / ("%s.sqlite3" % label)
        sqlite3.connect(p).close()
        from conftest import SqliteDB
        return SqliteDB(p)
    servers = request.getfixturevalue("servers")
    name = "mariadb" if engine == "mariadb" else "pg16"
    if name not in servers:
        pytest.skip("%s not started" % name)
    server = servers[name]
    dbname = server.create_database()
    request.addfinalizer(lambda: server.drop_database(dbname))
    return ServerDB(server, dbname)


def ok(res, name):
    r = res[name]
    assert not r["failed"], "%s failed: %s" % (name, json.dumps(r, indent=1, default=str)[:4000])
    return r


def bad(res, name, *needles):
    r = res[name]
    assert r["failed"], "%s did not fail: %s" % (name, json.dumps(r, indent=1, default=str)[:4000])
    for n in needles:
        assert n in r["msg"], (name, n, r["msg"])
    return r


def tables(db):
    if db.engine == "sqlite":
        return sorted(r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%'"))
    if db.engine == "mysql":
        return sorted(r[0] for r in db.query("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = DATABASE()"))
    return sorted(r[0] for r in db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))


@pytest.mark.parametrize("engine", ["pg", "mariadb", "sqlite"])
def test_native_apply(ansible, request, tmp_path, engine):  # pylint: disable=too-many-locals,too-many-statements
    dbs, base, tasks = {}, {}, []
    for tool in NATIVE:
        db = make_db(request, engine, tmp_path, tool.replace("-", "_"))
        dbs[tool] = db
        path = tmp_path / tool
        path.mkdir()
        t = "t_" + tool.replace("-", "_")
        write_migration(tool, path, 1, "CREATE TABLE %s_a (id INT PRIMARY KEY);" % t)
        write_migration(tool, path, 2, "ALTER TABLE %s_a ADD COLUMN name VARCHAR(50);\n"
                                       "CREATE TABLE %s_b (id INT PRIMARY KEY);" % (t, t))
        write_migration(tool, path, 3, "CREATE TABLE %s_c (id INT PRIMARY KEY);\nINSERT INTO %s_c VALUES (1);" % (t, t))
        base[tool] = dict(db.params, tool=tool, migrations_path=str(path))
        # m4 fails on its second statement: CREATE TABLE d, then an INSERT into a table that does not exist
        fail_sql = "CREATE TABLE %s_d (id INT PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);" % t
        tasks += [
            dict(name=tool + ":no_table", module=APPLY, args=base[tool]),
            dict(name=tool + ":check", module=APPLY, args=dict(base[tool], create_table=True), check=True, diff=True),
            dict(name=tool + ":status_after_check", module=STATUS, args=base[tool]),
            dict(name=tool + ":to", module=APPLY, args=dict(base[tool], create_table=True, to=mig_id(tool, 1)),
                 diff=True),
            dict(name=tool + ":rest", module=APPLY, args=base[tool], diff=True),
            dict(name=tool + ":again", module=APPLY, args=base[tool]),
            dict(name=tool + ":status_clean", module=STATUS, args=dict(base[tool], fail_on=["failed"])),
        ]
        write_migration(tool, path, 4, fail_sql)
        tasks += [
            dict(name=tool + ":fail", module=APPLY, args=base[tool]),
            dict(name=tool + ":after_fail", module=APPLY, args=base[tool]),
        ]
    # the failing migration exists from the start in the files, so the `to`/rest runs must not reach it:
    # rest runs up to 3 (to=3), and the failing run is the one after.
    for tool in NATIVE:
        for task in tasks:
            if task["name"] == tool + ":rest":  # by file name: goose 00003_m3.sql is version 3
                task["args"] = dict(task["args"], to=mig_file(tool, 3))
            if task["name"] in (tool + ":again",):
                task["args"] = dict(task["args"], to=mig_id(tool, 3))
            if task["name"] == tool + ":check":
                task["args"] = dict(task["args"], to=mig_id(tool, 3))
    res = run_tasks(ansible, tasks)

    for tool in NATIVE:
        db = dbs[tool]
        t = "t_" + tool.replace("-", "_")
        ids = [mig_id(tool, n) for n in (1, 2, 3)]
        bad(res, tool + ":no_table", "create_table: true", "Nothing was run")
        r = ok(res, tool + ":check")
        assert r["changed"] and r["pending"] == ids, (tool, r["pending"])
        assert [p["name"] for p in r["plan"]] == ids
        assert r["queries"][0].upper().startswith("CREATE TABLE"), r["queries"][:2]
        assert any("%s_c" % t in q for q in r["queries"]), r["queries"]
        assert ok(res, tool + ":status_after_check")["table_exists"] is False, (tool, "check mode created the table")
        # the diff predicts the history rows the run writes (the real run's rows are compared in golden())
        predicted = r["diff"]["after"]
        assert r["diff"]["before"] == [] and predicted, (tool, r["diff"])
        if tool == "golang-migrate":
            assert [(row["version"], row["dirty"]) for row in predicted] == [(3, False)], predicted
        else:
            assert len(predicted) == 3 + (tool == "goose"), (tool, predicted)  # goose: its version 0 row
            assert all(str(i) in json.dumps(predicted) for i in ids), (tool, predicted)
        r = ok(res, tool + ":to")
        assert r["changed"] and [a["name"] for a in r["applied"]] == ids[:1], (tool, r["applied"])
        assert r["diff"]["before"] == [] and r["diff"]["after"], r["diff"]
        r = ok(res, tool + ":rest")
        assert [a["name"] for a in r["applied"]] == ids[1:], (tool, r["applied"])
        assert all(a["duration"] >= 0 for a in r["applied"])
        assert r["status"]["applied"][-1] == ids[-1] or tool == "golang-migrate", r["status"]
        r = ok(res, tool + ":again")
        assert r["changed"] is False and r["applied"] == [] and r["queries"] == [], (tool, r)
        r = ok(res, tool + ":status_clean")
        assert r["current"] == [ids[-1]] and r["failed_migrations"] == [] and r["pending"] == [mig_id(tool, 4)], (tool, r)
        # the failure, as the tool records it
        r = bad(res, tool + ":fail", "no_such_table")
        fm = r["failed_migration"]
        assert fm["name"] == mig_id(tool, 4) and "no_such_table" in fm["error"], fm
        assert r["applied"] == []
        names = tables(db)
        for x in ("a", "b", "c"):
            assert "%s_%s" % (t, x) in names, (tool, names)
        # half applied: where the tool runs the file without a transaction, or MySQL committed the DDL
        transactional = {
            "prisma": engine == "pg", "dbmate": engine != "mariadb", "golang-migrate": engine != "mariadb",
            "goose": engine != "mariadb", "sqlx": engine != "mariadb", "flyway": engine != "mariadb"}[tool]
        assert (("%s_d" % t) in names) is (not transactional), (tool, engine, names)
        assert fm["rolled_back"] is transactional or engine == "mariadb", fm
        # what the tool records, and whether the next run is refused
        failed_state = {"prisma": True, "golang-migrate": True, "flyway": engine == "mariadb",
                        "sqlx": engine == "mariadb", "dbmate": False, "goose": False}[tool]
        r = res[tool + ":after_fail"]
        assert r["failed"], (tool, r)
        if failed_state:
            assert "not clean" in r["msg"] and "migration_resolve" in r["msg"], (tool, r["msg"])
            assert r["queries"] == [] or all(not q.upper().startswith(("CREATE", "INSERT INTO NO")) for q in r["queries"])
        else:  # the migration runs again: fails the same way, or (MariaDB, DDL committed) on its first statement
            assert "no_such_table" in r["msg"] or (engine == "mariadb" and "already exists" in r["msg"]), r["msg"]
            assert r["failed_migration"]["name"] == mig_id(tool, 4)
        golden(tool, db, engine, dbs_path(base[tool]))


def dbs_path(args):
    from pathlib import Path
    return Path(args["migrations_path"])


def flyway_crc32(data):
    """Flyway's checksum (ChecksumCalculator): CRC32 over the UTF-8 bytes of each line (line breaks not
    included, a BOM dropped), as a signed 32-bit int."""
    import zlib
    crc = 0
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    for line in text.splitlines():
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def golden(tool, db, engine, path):
    """The history rows after m1..m3 applied and m4 failed, as each tool's source writes them."""
    import hashlib
    ids = [mig_id(tool, n) for n in (1, 2, 3, 4)]
    if tool == "prisma":
        rows = db.query("SELECT migration_name, checksum, finished_at IS NOT NULL, logs, rolled_back_at, "
                        "applied_steps_count FROM _prisma_migrations ORDER BY started_at, migration_name")
        want = [(i, hashlib.sha256((path / i / "migration.sql").read_bytes()).hexdigest(), True, None, None, 1)
                for i in ids[:3]]
        assert [tuple(r) for r in rows[:3]] == want, rows
        name, checksum, finished, logs, rolled, steps = rows[3]
        assert (name, finished, rolled, steps) == (ids[3], False, None, 0) and "no_such_table" in logs, rows[3]
        assert checksum == hashlib.sha256((path / ids[3] / "migration.sql").read_bytes()).hexdigest()
    elif tool == "dbmate":
        assert db.query("SELECT version FROM schema_migrations ORDER BY version") == [(i,) for i in ids[:3]]
    elif tool == "golang-migrate":
        rows = db.query("SELECT version, dirty FROM schema_migrations")
        assert [(int(v), bool(d)) for v, d in rows] == [(4, True)], rows
    elif tool == "goose":
        rows = db.query("SELECT version_id, is_applied FROM goose_db_version ORDER BY id")
        assert [(int(v), bool(a)) for v, a in rows] == [(0, True), (1, True), (2, True), (3, True)], rows
    elif tool == "sqlx":
        rows = db.query("SELECT version, description, success, checksum, execution_time FROM _sqlx_migrations "
                        "ORDER BY version")
        files = {1: "20240101000001_m1.sql", 2: "20240101000002_m2.sql", 3: "20240101000003_m3.sql",
                 4: "20240101000004_m4.sql"}
        want = [(int(ids[n - 1]), "m%d" % n, True, hashlib.sha384((path / files[n]).read_bytes()).digest())
                for n in (1, 2, 3)]
        if engine == "mariadb":  # sqlx-mysql: the success = FALSE row stays after the committed CREATE TABLE
            want.append((int(ids[3]), "m4", False, hashlib.sha384((path / files[4]).read_bytes()).digest()))
        got = [(int(v), d, bool(s), bytes(c)) for v, d, s, c, _t in rows]
        assert got == want, rows
        assert all(t >= 0 for *_x, t in rows[:3]), "execution_time is updated after the commit"
    elif tool == "flyway":
        rows = db.query("SELECT installed_rank, version, description, type, script, checksum, execution_time, success "
                        "FROM flyway_schema_history ORDER BY installed_rank")
        want = [(n, str(n), "m%d" % n, "SQL", "V%d__m%d.sql" % (n, n),
                 flyway_crc32((path / ("V%d__m%d.sql" % (n, n))).read_bytes()), True) for n in (1, 2, 3)]
        if engine == "mariadb":  # no DDL transactions: Flyway records the failure
            want.append((4, "4", "m4", "SQL", "V4__m4.sql", flyway_crc32((path / "V4__m4.sql").read_bytes()), False))
        got = [(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), bool(r[7])) for r in rows]
        assert got == want, rows
        assert all(int(r[6]) >= 0 for r in rows)


def write_no_transaction(tool, path, n, up):
    """Migration n with the tool's marker that turns its transaction off."""
    if tool == "dbmate":
        (path / ("%s_m%d.sql" % (mig_id(tool, n), n))).write_text(
            "-- migrate:up transaction:false\n%s\n\n-- migrate:down\nSELECT 1;\n" % up)
    elif tool == "goose":
        (path / ("%05d_m%d.sql" % (n, n))).write_text(
            "-- +goose NO TRANSACTION\n-- +goose Up\n%s\n-- +goose Down\nSELECT 1;\n" % up)
    else:  # sqlx: the marker on the first line
        (path / ("%s_m%d.sql" % (mig_id(tool, n), n))).write_text("-- no-transaction\n%s\n" % up)


@pytest.mark.parametrize("engine", ["pg", "sqlite"])
def test_no_transaction_markers(ansible, request, tmp_path, engine):
    """dbmate transaction:false, goose NO TRANSACTION, sqlx -- no-transaction: the migration runs without a
    transaction, so a failure on its second statement leaves the first one applied - except where the tool sends
    the whole file as one query to PostgreSQL (dbmate, sqlx: one implicit transaction, rolled back whole) - and
    no history row (each tool writes its row only after success); the next run runs it again and fails on what
    stayed, as the tool would."""
    tools = ["dbmate", "goose", "sqlx"]
    dbs, tasks = {}, []
    for tool in tools:
        db = dbs[tool] = make_db(request, engine, tmp_path, "nt_" + tool)
        path = tmp_path / ("nt_" + tool)
        path.mkdir()
        write_no_transaction(tool, path, 1, "CREATE TABLE nt_ok (id int);")
        write_no_transaction(tool, path, 2, "CREATE TABLE nt_half (id int);\nINSERT INTO no_such_table VALUES (1);")
        args = dict(db.params, tool=tool, migrations_path=str(path), create_table=True)
        tasks += [dict(name=tool + ":run", module=APPLY, args=args), dict(name=tool + ":again", module=APPLY, args=args)]
    res = run_tasks(ansible, tasks)
    for tool in tools:
        db = dbs[tool]
        whole = engine == "pg" and tool in ("dbmate", "sqlx")
        r = bad(res, tool + ":run", "no_such_table")
        assert [a["name"] for a in r["applied"]] == [mig_id(tool, 1)], (tool, r["applied"])
        fm = r["failed_migration"]
        assert fm["name"] == mig_id(tool, 2) and fm["rolled_back"] is whole, (tool, fm)
        assert ("ran and stay" in r["msg"]) is not whole, (tool, r["msg"])
        names = tables(db)
        assert "nt_ok" in names and ("nt_half" in names) is not whole, (tool, names)
        assert r["status"]["applied"] == [mig_id(tool, 1)] and r["pending"] == [mig_id(tool, 2)], (tool, r["status"])
        r = bad(res, tool + ":again")
        assert r["failed_migration"]["name"] == mig_id(tool, 2), (tool, r)
        assert ("no_such_table" if whole else "already exists") in r["msg"], (tool, r["msg"])
