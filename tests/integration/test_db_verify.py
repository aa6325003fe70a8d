"""db_verify through Ansible against PostgreSQL 15/16, MariaDB 10.11 and SQLite: every check kind
passes on a database that is right and fails (with the actual value) on one that is not; all failed
checks are listed; an empty database and a zero-byte SQLite file are said plainly; queries cannot
write; row-count baselines catch a lost table and lost rows."""

from __future__ import annotations

import hashlib
import os

import pytest

MOD = "dbops.maintenance.db_verify"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


class ServerDB:
    """A fresh database on one of the servers (what conftest's db fixture gives, for any server)."""

    def __init__(self, server):
        self.server = server
        self.name = server.create_database()
        self.engine = server.engine
        self.params = server.params(self.name)

    def execute(self, sql, params=None):
        return self.server.execute(self.name, sql, params)

    def query(self, sql, params=None):
        return self.server.query(self.name, sql, params)


def _anydb(request):
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_db")
        return
    servers = request.getfixturevalue("servers")
    if request.param not in servers:
        pytest.skip("server %s not started" % request.param)
    d = ServerDB(servers[request.param])
    yield d
    d.server.drop_database(d.name)


@pytest.fixture(params=["pg15", "pg16", "mariadb", "sqlite"])
def anydb(request):
    """A fresh database on each server, and a fresh SQLite file."""
    yield from _anydb(request)


@pytest.fixture(params=["pg15", "mariadb", "sqlite"])
def anydb3(request):
    """The same, for the checks whose SQL does not differ between PostgreSQL versions."""
    yield from _anydb(request)


def seed(d):
    """users (3 rows), orders (2 rows); a status enum (PostgreSQL type, MySQL column)."""
    if d.engine == "postgresql":
        d.execute("CREATE TYPE status AS ENUM ('new', 'paid')")
        d.execute("CREATE TABLE users (id serial PRIMARY KEY, email varchar(191) NOT NULL, age int)")
        d.execute("CREATE TABLE orders (id serial PRIMARY KEY, user_id int, state status NOT NULL DEFAULT 'new')")
    elif d.engine == "mysql":
        d.execute("CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, email varchar(191) NOT NULL, age int)")
        d.execute("CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, user_id int, "
                  "state ENUM('new', 'paid') NOT NULL DEFAULT 'new')")
    else:
        d.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(191) NOT NULL, age INT)")
        d.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INT, state TEXT NOT NULL DEFAULT 'new')")
    for email in ("a@x", "b@x", "c@x"):
        d.execute("INSERT INTO users (email, age) VALUES ('%s', 30)" % email)
    d.execute("INSERT INTO orders (user_id) VALUES (1)")
    d.execute("INSERT INTO orders (user_id) VALUES (2)")
    return d


def enum_spec(d, values):
    if d.engine == "postgresql":
        return [dict(name="status", values=values)]
    if d.engine == "mysql":
        return [dict(table="orders", column="state", values=values)]
    return None


def by_name(result):
    return {c["name"]: c for c in result["checks"]}


def test_every_check_kind_passes(ansible, anydb):
    d = seed(anydb)
    args = dict(d.params, tables_min=2, tables=["users", "orders"],
                columns=[dict(table="users", column="email", type="varchar(191)", nullable=False),
                         dict(table="users", column="age", type="int" if d.engine != "sqlite" else "int",
                              nullable=True)],
                queries=[dict(name="three users", sql="SELECT count(*) = 3 FROM users"),
                         dict(sql="SELECT email FROM users ORDER BY id")],
                capture=True)
    if enum_spec(d, ["paid"]):
        args["enum_values"] = enum_spec(d, ["paid"])
    r = ansible.run(MOD, args, expect_failure=False)
    assert r["changed"] is False and r["failed_checks"] == 0
    assert all(c["ok"] for c in r["checks"]), r["checks"]
    kinds = {c["kind"] for c in r["checks"]}
    assert {"tables_min", "tables", "columns", "queries"} <= kinds
    checks = by_name(r)
    assert checks["tables_min"]["actual"] == 2
    if d.engine == "postgresql":
        # int matched integer, varchar(191) matched character varying(191): the server's own normalisation
        assert checks["column public.users.age"]["actual"]["type"] == "integer"
        assert checks["column public.users.email"]["actual"]["type"] == "character varying(191)"
        assert checks["enum public.status"]["actual"] == ["new", "paid"]
        assert r["baseline"]["tables"] == {"public.users": 3, "public.orders": 2}
    else:
        assert r["baseline"]["tables"] == {"users": 3, "orders": 2}
    assert checks["query #2"]["actual"] == "a@x"
    assert r["summary"] == "db_verify: all %d check(s) passed" % len(r["checks"])


def test_every_check_kind_fails_and_all_are_listed(ansible, anydb):
    d = seed(anydb)
    args = dict(d.params, tables_min=5, tables=["users", "invoices"],
                columns=[dict(table="users", column="email", type="text", nullable=True),
                         dict(table="users", column="phone"),
                         dict(table="nope", column="x")],
                queries=[dict(name="ten users", sql="SELECT count(*) = 10 FROM users"),
                         dict(name="no row", sql="SELECT id FROM users WHERE id < 0"),
                         dict(name="broken", sql="SELECT no_such_column FROM users")])
    if enum_spec(d, ["paid", "refunded"]):
        args["enum_values"] = enum_spec(d, ["paid", "refunded"])
    r = ansible.run(MOD, args, expect_failure=True)
    checks = by_name(r)
    prefix = "public." if d.engine == "postgresql" else ""
    failed = {c["name"] for c in r["checks"] if not c["ok"]}
    expected_failed = {"tables_min", "table %sinvoices" % prefix, "column %susers.email" % prefix,
                       "column %susers.phone" % prefix, "column %snope.x" % prefix,
                       "query ten users", "query no row", "query broken"}
    if d.engine != "sqlite":
        expected_failed.add("enum public.status" if d.engine == "postgresql" else "enum orders.state")
    assert failed == expected_failed
    assert checks["table %susers" % prefix]["ok"] is True
    assert checks["tables_min"]["actual"] == 2 and checks["tables_min"]["expected"] == 5
    email = checks["column %susers.email" % prefix]
    assert email["actual"]["nullable"] is False and "expected text" in email["message"]
    assert "Similar names found" in checks["table %sinvoices" % prefix]["message"] or \
        checks["table %sinvoices" % prefix]["actual"] == "missing"
    assert checks["query ten users"]["actual"] in (False, 0)
    assert "no row" in checks["query no row"]["message"]
    assert "no_such_column" in checks["query broken"]["message"]
    if d.engine != "sqlite":
        enum = [c for c in r["checks"] if c["kind"] == "enum_values"][0]
        assert enum["actual"] == ["new", "paid"] and "refunded" in enum["message"]
    # the message lists every failed check, not only the first
    assert r["msg"].startswith("db_verify: %d of %d check(s) failed" % (len(expected_failed), len(r["checks"])))
    for name in expected_failed:
        assert "FAIL %s:" % name in r["msg"]


def test_empty_database_fails_plainly(ansible, anydb3):
    if anydb3.engine == "sqlite":
        anydb3.execute("PRAGMA user_version = 1")     # a valid SQLite file, not zero bytes, with no table
    r = ansible.run(MOD, dict(anydb3.params, tables_min=1, tables=["users"]), expect_failure=True)
    checks = by_name(r)
    assert checks["tables_min"]["actual"] == 0
    assert checks["tables_min"]["message"] == "empty database: no tables"
    assert "empty database: no tables" in r["msg"]


def test_zero_byte_sqlite_file_is_an_empty_database_not_an_error(ansible, sqlite_db):
    assert os.path.getsize(sqlite_db.name) == 0
    r = ansible.run(MOD, dict(sqlite_db.params, tables_min=1), expect_failure=True)
    check = r["checks"][0]
    assert check["ok"] is False and check["actual"] == 0
    assert check["message"].startswith("empty database: no tables (the file ")
    assert "is 0 bytes" in check["message"]
    assert os.path.getsize(sqlite_db.name) == 0, "db_verify wrote to the file"


def test_missing_sqlite_file_is_refused_not_created(ansible, tmp_path):
    path = tmp_path / "absent.db"
    r = ansible.run(MOD, dict(engine="sqlite", database=str(path), tables_min=1), expect_failure=True)
    assert "does not exist" in r["msg"]
    assert not path.exists()


def test_row_count_baseline_detects_lost_table_and_lost_rows(ansible, anydb3):
    d = seed(anydb3)
    d.execute("CREATE TABLE audit (id INT)")
    for i in range(10):
        d.execute("INSERT INTO audit (id) VALUES (%d)" % i)
    base = ansible.run(MOD, dict(d.params, capture=True), expect_failure=False)["baseline"]
    prefix = "public." if d.engine == "postgresql" else ""
    assert base["tables"]["%saudit" % prefix] == 10
    d.execute("DROP TABLE orders")
    d.execute("DELETE FROM audit WHERE id < 3")
    d.execute("DELETE FROM users WHERE id = 1")
    d.execute("CREATE TABLE extra (id INT)")
    r = ansible.run(MOD, dict(d.params, baseline=base, tolerance=20), expect_failure=True)
    checks = by_name(r)
    gone = checks["row_count %sorders" % prefix]
    assert gone["ok"] is False and gone["actual"] is None and "table is gone (it had 2 row(s)" in gone["message"]
    users = checks["row_count %susers" % prefix]          # 1 of 3 lost: 33% > 20%
    assert users["ok"] is False and users["actual"] == 2 and "lost 1 row(s) of 3" in users["message"]
    audit = checks["row_count %saudit" % prefix]          # 3 of 10 lost: 30% > 20%
    assert audit["ok"] is False and audit["actual"] == 7 and audit["expected"] == ">= 8"
    assert "row_count %sextra" % prefix not in checks     # new tables are fine
    # within the tolerance, only the lost table fails
    r = ansible.run(MOD, dict(d.params, baseline=base, tolerance=40), expect_failure=True)
    assert [c["name"] for c in r["checks"] if not c["ok"]] == ["row_count %sorders" % prefix]


def test_queries_are_read_only(ansible, anydb3):
    d = seed(anydb3)
    writes = ["DELETE FROM users", "UPDATE users SET age = 0", "INSERT INTO users (email) VALUES ('z@x')",
              "SELECT 1; DELETE FROM users", "DROP TABLE orders"]
    if d.engine == "postgresql":
        writes.append("WITH gone AS (DELETE FROM users RETURNING 1) SELECT count(*) FROM gone")
    r = ansible.run(MOD, dict(d.params, queries=[dict(name="w%d" % i, sql=s) for i, s in enumerate(writes)]),
                    expect_failure=True)
    assert [c["ok"] for c in r["checks"]] == [False] * len(writes), r["checks"]
    assert sorted(x[0] for x in d.query("SELECT email FROM users")) == ["a@x", "b@x", "c@x"]
    assert d.query("SELECT count(*) FROM orders")[0][0] == 2
    assert d.query("SELECT count(*) FROM users WHERE age = 0")[0][0] == 0


PRISMA_DDL = {
    "postgresql": 'CREATE TABLE "_prisma_migrations" ("id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) '
                  'NOT NULL, "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, '
                  '"rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), '
                  '"applied_steps_count" INTEGER NOT NULL DEFAULT 0)',
    "mysql": "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL, "
             "finished_at DATETIME(3), migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at DATETIME(3), "
             "started_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), "
             "applied_steps_count INTEGER UNSIGNED NOT NULL DEFAULT 0)",
    "sqlite": 'CREATE TABLE "_prisma_migrations" ("id" TEXT PRIMARY KEY NOT NULL, "checksum" TEXT NOT NULL, '
              '"finished_at" DATETIME, "migration_name" TEXT NOT NULL, "logs" TEXT, "rolled_back_at" DATETIME, '
              '"started_at" DATETIME NOT NULL DEFAULT current_timestamp, '
              '"applied_steps_count" INTEGER UNSIGNED NOT NULL DEFAULT 0)',
}


def _prisma_dir(tmp_path, names):
    out = {}
    for name in names:
        (tmp_path / "migrations" / name).mkdir(parents=True)
        sql = "CREATE TABLE t_%s (id INT);\n" % name.split("_")[0]
        (tmp_path / "migrations" / name / "migration.sql").write_text(sql)
        out[name] = hashlib.sha256(sql.encode()).hexdigest()
    return tmp_path / "migrations", out


def _record(d, name, checksum, finished=True):
    now = {"postgresql": "now()", "mysql": "UTC_TIMESTAMP(3)", "sqlite": "1700000000000"}[d.engine]
    d.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, "
              "applied_steps_count) VALUES ('%s', '%s', %s, '%s', %s, 1)"
              % (name[:30], checksum, now if finished else "NULL", name, now))


def test_migrations_clean_and_not_clean(ansible, anydb3, tmp_path):
    d = anydb3
    path, sums = _prisma_dir(tmp_path, ["20240101000000_init", "20240201000000_more"])
    d.execute(PRISMA_DDL[d.engine])
    _record(d, "20240101000000_init", sums["20240101000000_init"])
    _record(d, "20240201000000_more", sums["20240201000000_more"])
    spec = dict(tool="prisma", path=str(path))
    r = ansible.run(MOD, dict(d.params, migrations=spec), expect_failure=False)
    assert {c["name"]: c["ok"] for c in r["checks"]} == {
        "migrations prisma failed": True, "migrations prisma unknown": True,
        "migrations prisma modified": True, "migrations prisma pending": True}
    # a new file not applied, a failed run, a row for a file that is not on disk
    _prisma_dir(tmp_path, ["20240301000000_new"])
    d.execute("DELETE FROM _prisma_migrations WHERE migration_name = '20240201000000_more'")
    _record(d, "20240201000000_more", sums["20240201000000_more"], finished=False)
    _record(d, "20231201000000_gone", "0" * 64)
    r = ansible.run(MOD, dict(d.params, migrations=spec), expect_failure=True)
    checks = by_name(r)
    assert checks["migrations prisma pending"]["actual"] == ["20240301000000_new"]
    assert checks["migrations prisma failed"]["actual"] == ["20240201000000_more"]
    assert checks["migrations prisma unknown"]["actual"] == ["20231201000000_gone"]
    assert checks["migrations prisma modified"]["ok"] is True
    assert "3 of 4 check(s) failed" in r["msg"]


def test_migrations_on_a_database_never_migrated(ansible, sqlite_db, tmp_path):
    path, _sums = _prisma_dir(tmp_path, ["20240101000000_init"])
    r = ansible.run(MOD, dict(sqlite_db.params, tables_min=1, migrations=dict(tool="prisma", path=str(path))),
                    expect_failure=True)
    pending = by_name(r)["migrations prisma pending"]
    assert pending["actual"] == ["20240101000000_init"]
    assert "does not exist: no migration was ever applied" in pending["message"]
    assert "empty database: no tables" in r["msg"]


# --- schema_snapshot (issue 12): snapshot before, check after: exactly the declared change ---------------------

def test_schema_snapshot_exactly_the_declared_change(ansible, anydb3, tmp_path):
    d = anydb3
    seed(d)
    snap = tmp_path / "before.json"
    r = ansible.run("dbops.maintenance.schema_diff", dict(d.params, snapshot_dest=str(snap)), expect_failure=False)
    assert snap.exists()
    spec = dict(snapshot=str(snap))
    r = ansible.run(MOD, dict(d.params, schema_snapshot=spec), expect_failure=False)
    c = by_name(r)["schema %s" % snap]
    assert c["ok"] is True and c["message"] == "the schema equals the snapshot"
    # the intended change: one new column
    d.execute("ALTER TABLE users ADD COLUMN note varchar(20)")
    declared = [dict(kind="column", name="users.note", what="unexpected")]
    r = ansible.run(MOD, dict(d.params, schema_snapshot=dict(spec, expected=declared)), expect_failure=False)
    c = by_name(r)["schema %s" % snap]
    assert c["ok"] is True and "exactly the declared change (1 entry)" in c["message"]
    # the change not declared: the check fails and names it
    r = ansible.run(MOD, dict(d.params, schema_snapshot=spec), expect_failure=True)
    c = by_name(r)["schema %s" % snap]
    assert c["ok"] is False and "not declared: 1 difference: 1 column unexpected (users.note)" in c["message"]
    # something else happened too, and a declared change that did not happen
    d.execute("ALTER TABLE users DROP COLUMN age")
    r = ansible.run(MOD, dict(d.params, schema_snapshot=dict(spec, expected=declared + [
        dict(kind="index", name="users.nope", what="missing")])), expect_failure=True)
    c = by_name(r)["schema %s" % snap]
    assert "1 column missing (users.age)" in c["message"] and "declared but not found: index users.nope missing" \
        in c["message"], c["message"]
    # a bad expected entry: a clear failure of the check
    bad = [dict(kind="nonsense", name="x", what="missing")]
    r = ansible.run(MOD, dict(d.params, schema_snapshot=dict(spec, expected=bad)), expect_failure=True)
    assert "kind 'nonsense' is not one of" in by_name(r)["schema %s" % snap]["message"]
