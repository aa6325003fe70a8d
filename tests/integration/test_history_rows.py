"""The history rows migration_resolve writes, read back with RAW SQL (not through migration_status, which
shares its code with the writer) and compared column by column with what each tool is documented, in ITS
SOURCE, to write: column types from the catalog, checksum encoding, timestamps (present, format, time zone),
success/dirty flags and ordering keys. The source file is cited next to each expectation.

One ansible-playbook run per engine (PostgreSQL, MariaDB, SQLite) covers all ten tools: each tool gets its
own database (several tools share the table name schema_migrations); between the module tasks a local
command snapshots the table (this file run as a script: ``snap``), so each step's rows are read from the
database at that point. Timestamps are checked against the server's clock read by the snapshots just
before and just after the write (an ordering of events, not a time limit).

Where the real tool runs here it is the oracle as well: dbmate (npm) and Rails (Debian's
ruby-activerecord) create their own table in a second database, whose catalog must equal ours, and read
the rows migration_resolve wrote. alembic, Django and knex read our rows in test_migration_conformance.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
from conftest import SqliteDB
from migration_batch import ServerDB, run_tasks

HERE = Path(__file__).resolve().parent

RESOLVE = "dbops.maintenance.migration_resolve"
FIXTURES = HERE / "fixtures" / "migrations"
REPO = HERE.parents[1]
TOOLS_DIR = Path(os.environ.get("DBOPS_CONFORMANCE_DIR", REPO / "build" / "conformance"))
DBMATE = TOOLS_DIR / "node" / "node_modules" / ".bin" / "dbmate"

# tool -> (fixture sub-directory, first migration, second migration, table, order by, extra args)
TOOLS = {
    "prisma": ("prisma", "20250101000000_init", "20250821015630_add_shipment_file_field", "_prisma_migrations",
               "started_at, id", {}),
    "alembic": ("alembic/versions", "001_initial_schema", "002_users", "alembic_version", "version_num", {}),
    "flyway": ("flyway", "1", "1.1", "flyway_schema_history", "installed_rank", {}),
    "django": ("django/shop/migrations", "0001_initial", "0002_item_name", "django_migrations", "id", {"app": "shop"}),
    "golang-migrate": ("golang-migrate", "1", "2", "schema_migrations", "version", {}),
    "sqlx": ("sqlx", "20240101000001", "20240101000002", "_sqlx_migrations", "version", {}),
    "knex": ("knex", "20240101000001_init.js", "20240101000002_users.js", "knex_migrations", "id", {}),
    "rails": ("rails", "20240101000001", "20240101000002", "schema_migrations", "version", {}),
    "dbmate": ("dbmate", "20240101000001", "20240101000002", "schema_migrations", "version", {}),
    "goose": ("goose", "1", "2", "goose_db_version", "id", {}),
}
# How each tool un-applies the second migration: the state migration_resolve is asked for.
UNAPPLY = {"prisma": "absent", "flyway": "absent", "sqlx": "absent", "alembic": "rolled_back",
           "golang-migrate": "rolled_back", "django": "absent", "knex": "rolled_back", "rails": "rolled_back",
           "dbmate": "rolled_back", "goose": "rolled_back"}
# Tools with a failed state: a failed row for the second migration is written the way the tool writes it
# when a run stops halfway, then resolved rolled_back, then applied.
FAILABLE = ("prisma", "flyway", "sqlx", "golang-migrate")
FILES = {
    "prisma": lambda m: m + "/migration.sql",
    "flyway": {"1": "V1__init.sql", "1.1": "V1_1__add_users.sql"}.get,
    "sqlx": {"20240101000001": "20240101000001_init.sql", "20240101000002": "20240101000002_add_users.sql"}.get,
}


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


# ------------------------------------------------------------------------------------ snapshots
def _connect(spec):
    if spec["engine"] == "sqlite":
        import sqlite3  # pylint: disable=import-outside-toplevel
        return sqlite3.connect(spec["database"], isolation_level=None)
    if spec["engine"] == "postgresql":
        import psycopg  # pylint: disable=import-outside-toplevel
        return psycopg.connect(host=spec["login_host"], port=spec["login_port"], user=spec["login_user"],
                               password=spec["login_password"], dbname=spec["database"], autocommit=True)
    import pymysql  # pylint: disable=import-outside-toplevel
    return pymysql.connect(host=spec["login_host"], port=spec["login_port"], user=spec["login_user"],
                           password=spec["login_password"], database=spec["database"], autocommit=True)


def _enc(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"t": "bytes", "v": bytes(v).hex()}
    if isinstance(v, dt.datetime):
        return {"t": "datetime", "v": v.replace(tzinfo=None).isoformat(), "tz": v.utcoffset() is not None,
                "utc": (v.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat() if v.tzinfo else None)}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, int):
        return {"t": "int", "v": v}
    if v is None:
        return {"t": "null", "v": None}
    return {"t": type(v).__name__, "v": str(v)}


def snapshot(spec, table, order):
    """The table's catalog and rows, and the server's clock (UTC and local), read with plain SQL."""
    conn = _connect(spec)
    cur = conn.cursor()
    out = {"columns": [], "rows": [], "typeof": []}
    e = spec["engine"]
    if e == "postgresql":
        cur.execute("SELECT (now() AT TIME ZONE 'UTC')::timestamp, LOCALTIMESTAMP")
        utc, local = cur.fetchone()
        cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
                    "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                    ('"%s"' % table,))
    elif e == "mysql":
        cur.execute("SELECT UTC_TIMESTAMP(6), NOW(6)")
        utc, local = cur.fetchone()
        cur.execute("SELECT column_name, column_type, is_nullable = 'NO' FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position", (table,))
    else:
        cur.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
        utc = local = dt.datetime.fromisoformat(cur.fetchone()[0])
        cur.execute("SELECT name, type, \"notnull\" FROM pragma_table_info(?) ORDER BY cid", (table,))
    out["columns"] = [[r[0], r[1], bool(r[2])] for r in cur.fetchall()]
    out["utc"], out["local"] = utc.isoformat(), local.isoformat()
    if out["columns"]:
        q = '"%s"' % table if e != "mysql" else "`%s`" % table
        cur.execute("SELECT * FROM %s ORDER BY %s" % (q, order))
        names = [d[0] for d in cur.description]
        out["rows"] = [dict(zip(names, map(_enc, r))) for r in cur.fetchall()]
        if e == "sqlite":
            cur.execute("SELECT %s FROM %s ORDER BY %s" % (", ".join("typeof(\"%s\")" % n for n in names), q, order))
            out["typeof"] = [dict(zip(names, r)) for r in cur.fetchall()]
    conn.close()
    return out


def run_sql(spec, sql):
    conn = _connect(spec)
    conn.cursor().execute(sql)
    conn.close()


def main(argv):
    """snap PLAN DIR LABEL: every tool's table into DIR/LABEL.json; failed PLAN: write the failed rows."""
    plan = json.loads(Path(argv[2]).read_text())
    if argv[1] == "snap":
        out = {tool: snapshot(p["spec"], p["table"], p["order"]) for tool, p in plan.items()}
        Path(argv[3], argv[4] + ".json").write_text(json.dumps(out))
    elif argv[1] == "failed":
        for p in plan.values():
            if p["failed"]:
                run_sql(p["spec"], p["failed"])
    return 0


# ------------------------------------------------------------------------------------ expectations
def ts(cell):
    """(naive datetime, 'aware' | 'naive') of a timestamp cell; SQLite text and epoch-ms accepted."""
    if cell["t"] == "datetime":
        if cell["tz"]:
            return dt.datetime.fromisoformat(cell["utc"]), "aware"
        return dt.datetime.fromisoformat(cell["v"]), "naive"
    if cell["t"] == "int":
        return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=cell["v"]), "epoch_ms"
    return dt.datetime.fromisoformat(cell["v"]), "text"


class Check:
    """Collects every mismatch of one engine (all tools), so one run reports them all."""

    def __init__(self, engine, snaps):
        self.engine = engine
        self.snaps = snaps
        self.errors = []

    def eq(self, tool, what, got, want):
        if got != want:
            self.errors.append("%s/%s %s: got %r, want %r" % (tool, self.engine, what, got, want))

    def true(self, tool, what, cond, detail=""):
        if not cond:
            self.errors.append("%s/%s %s %s" % (tool, self.engine, what, detail))

    def written_between(self, tool, what, cell, before, after, clock="utc"):
        """The timestamp was written between two snapshots (server clock), +-1 s for rounding."""
        value, _kind = ts(cell)
        lo = dt.datetime.fromisoformat(self.snaps[tool][before][clock]) - dt.timedelta(seconds=1)
        hi = dt.datetime.fromisoformat(self.snaps[tool][after][clock]) + dt.timedelta(seconds=1)
        self.true(tool, what, lo <= value <= hi, "%s not between %s (%s) and %s (%s), %s clock"
                  % (value, lo, before, hi, after, clock))

    def columns(self, tool, snap, want):
        got = [(c[0], c[1].lower()) for c in self.snaps[tool][snap]["columns"]]
        self.eq(tool, "columns (catalog types)", got, [(c, t.lower()) for c, t in want])


def v(cell):
    return cell["v"]


def file_bytes(tool, mid):
    return (FIXTURES / TOOLS[tool][0] / FILES[tool](mid)).read_bytes()


def java_crc32(data):
    """flyway-core .../resolver/ChecksumCalculator.java: CRC32 over each line (BufferedReader.readLine, UTF-8,
    BOM stripped), returned as a signed int."""
    crc = 0
    for line in re.split(b"\r\n|\r|\n", data):
        crc = zlib.crc32(line, crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


PG, MY, LITE = "postgresql", "mysql", "sqlite"


def check_prisma(c, e, s):
    t, a, b = "prisma", TOOLS["prisma"][1], TOOLS["prisma"][2]
    # prisma/prisma-engines schema-engine/connectors/sql-schema-connector/src/flavour/{postgres,mysql,sqlite}.rs
    # (create_migrations_table): the DDL of _prisma_migrations per engine.
    c.columns(t, "a", {
        PG: [("id", "character varying(36)"), ("checksum", "character varying(64)"),
             ("finished_at", "timestamp with time zone"), ("migration_name", "character varying(255)"),
             ("logs", "text"), ("rolled_back_at", "timestamp with time zone"),
             ("started_at", "timestamp with time zone"), ("applied_steps_count", "integer")],
        MY: [("id", "varchar(36)"), ("checksum", "varchar(64)"), ("finished_at", "datetime(3)"),
             ("migration_name", "varchar(255)"), ("logs", "text"), ("rolled_back_at", "datetime(3)"),
             ("started_at", "datetime(3)"), ("applied_steps_count", "int(10) unsigned")],
        LITE: [("id", "text"), ("checksum", "text"), ("finished_at", "datetime"), ("migration_name", "text"),
               ("logs", "text"), ("rolled_back_at", "datetime"), ("started_at", "datetime"),
               ("applied_steps_count", "integer unsigned")]}[e])
    rows = s["ab"]["rows"]
    c.eq(t, "rows after applying both", [v(r["migration_name"]) for r in rows], [a, b])
    for r, (mid, before, after) in zip(rows, [(a, "start", "a"), (b, "a", "ab")]):
        # schema-engine/connectors/sql-schema-connector/src/sql_migration_persistence.rs
        # (mark_migration_applied_impl): id = Uuid::new_v4(), checksum, logs = "", started_at = finished_at =
        # the same chrono::Utc::now(); rolled_back_at and applied_steps_count left to their defaults.
        c.eq(t, "id is a UUID v4", uuid.UUID(v(r["id"])).version, 4)
        # schema-engine/core/src/commands/.../checksum.rs (render_checksum): lowercase hex SHA-256, 64 chars.
        c.eq(t, "checksum", v(r["checksum"]), hashlib.sha256(file_bytes(t, mid)).hexdigest())
        c.eq(t, "logs", v(r["logs"]), "")
        c.eq(t, "rolled_back_at", v(r["rolled_back_at"]), None)
        c.eq(t, "applied_steps_count", v(r["applied_steps_count"]), 0)
        c.eq(t, "started_at == finished_at (one now)", v(r["started_at"]), v(r["finished_at"]))
        # quaint: chrono DateTime<Utc> -> timestamptz on PostgreSQL, naive UTC DATETIME(3) on MySQL, and on
        # SQLite an integer of milliseconds since the epoch (quaint/src/connector/sqlite/conversion.rs).
        kind = ts(r["started_at"])[1]
        c.eq(t, "started_at kind", kind, {PG: "aware", MY: "naive", LITE: "epoch_ms"}[e])
        c.written_between(t, "started_at (UTC)", r["started_at"], before, after)
    if e == LITE:
        c.eq(t, "sqlite storage classes", s["ab"]["typeof"][0]["started_at"], "integer")
    c.eq(t, "after absent", [v(r["migration_name"]) for r in s["un"]["rows"]], [a])
    # the failed row, resolved --rolled-back: mark_migration_rolled_back_by_id sets rolled_back_at = now (UTC)
    failed = [r for r in s["rb"]["rows"] if v(r["migration_name"]) == b]
    c.eq(t, "failed row kept, one", len(failed), 1)
    if failed:
        c.eq(t, "failed row still unfinished", v(failed[0]["finished_at"]), None)
        c.true(t, "rolled_back_at set", v(failed[0]["rolled_back_at"]) is not None)
        if v(failed[0]["rolled_back_at"]) is not None:
            c.written_between(t, "rolled_back_at (UTC)", failed[0]["rolled_back_at"], "failed", "rb")
    # resolve --applied afterwards: the rolled-back attempt stays as history, a new finished row is added
    # (schema-engine/core/src/commands/mark_migration_applied.rs).
    mine = [r for r in s["fixed"]["rows"] if v(r["migration_name"]) == b]
    c.eq(t, "rows of the fixed migration", [(v(r["finished_at"]) is not None, v(r["rolled_back_at"]) is not None)
                                            for r in mine], [(False, True), (True, False)])


def check_flyway(c, e, s):
    t = "flyway"
    # flyway/flyway flyway-database-postgresql .../postgresql/createMetaDataTable.sql, flyway-mysql
    # .../mysql/createMetaDataTable.sql, flyway-database-sqlite ... (SQLiteDatabase.getRawCreateScript).
    c.columns(t, "a", {
        PG: [("installed_rank", "integer"), ("version", "character varying(50)"),
             ("description", "character varying(200)"), ("type", "character varying(20)"),
             ("script", "character varying(1000)"), ("checksum", "integer"),
             ("installed_by", "character varying(100)"), ("installed_on", "timestamp without time zone"),
             ("execution_time", "integer"), ("success", "boolean")],
        MY: [("installed_rank", "int(11)"), ("version", "varchar(50)"), ("description", "varchar(200)"),
             ("type", "varchar(20)"), ("script", "varchar(1000)"), ("checksum", "int(11)"),
             ("installed_by", "varchar(100)"), ("installed_on", "timestamp"), ("execution_time", "int(11)"),
             ("success", "tinyint(1)")],
        LITE: [("installed_rank", "int"), ("version", "varchar(50)"), ("description", "varchar(200)"),
               ("type", "varchar(20)"), ("script", "varchar(1000)"), ("checksum", "int"),
               ("installed_by", "varchar(100)"), ("installed_on", "text"), ("execution_time", "int"),
               ("success", "boolean")]}[e])
    rows = s["ab"]["rows"]
    # flyway-core .../schemahistory/JdbcTableSchemaHistory.java (doAddAppliedMigration): installed_rank =
    # max + 1, version, description, type SQL, script, checksum, installed_by = the database user,
    # installed_on = the column default (the server's clock), execution_time, success.
    c.eq(t, "ranks, versions, scripts", [(v(r["installed_rank"]), v(r["version"]), v(r["script"]), v(r["type"]))
                                         for r in rows],
         [(1, "1", "V1__init.sql", "SQL"), (2, "1.1", "V1_1__add_users.sql", "SQL")])
    c.eq(t, "descriptions (underscores as spaces)", [v(r["description"]) for r in rows], ["init", "add users"])
    c.eq(t, "checksums (signed CRC32 per line)", [v(r["checksum"]) for r in rows],
         [java_crc32(file_bytes(t, "1")), java_crc32(file_bytes(t, "1.1"))])
    c.eq(t, "success", [v(r["success"]) for r in rows], [True, True] if e == PG else [1, 1])
    c.eq(t, "execution_time", [v(r["execution_time"]) for r in rows], [0, 0])
    # installed_by: PostgreSQLDatabase/MySQLDatabase.getCurrentUser = the login user; SQLite has none
    # (SQLiteDatabase.doGetCurrentUser returns "").
    c.eq(t, "installed_by", {v(r["installed_by"]) for r in rows}, {"dbops_admin" if e != LITE else ""})
    # installed_on: the column default. PostgreSQL: timestamp without time zone DEFAULT now() = the session's
    # local time; MySQL: TIMESTAMP DEFAULT CURRENT_TIMESTAMP (local); SQLite: strftime(..., 'now') = UTC text.
    c.written_between(t, "installed_on", rows[1]["installed_on"], "a", "ab", clock="utc" if e == LITE else "local")
    c.eq(t, "after absent", [v(r["version"]) for r in s["un"]["rows"]], ["1"])
    # flyway repair (rolled_back of a failed row) removes the failed row: DbRepair / removeFailedMigrations.
    c.eq(t, "after repair", [(v(r["version"]), bool(v(r["success"]))) for r in s["rb"]["rows"]], [("1", True)])
    c.eq(t, "applied after repair: next rank", [(v(r["installed_rank"]), v(r["version"]), bool(v(r["success"])))
                                                for r in s["fixed"]["rows"]], [(1, "1", True), (2, "1.1", True)])


def check_sqlx(c, e, s):
    t, a, b = "sqlx", TOOLS["sqlx"][1], TOOLS["sqlx"][2]
    # launchbadge/sqlx sqlx-{postgres,mysql,sqlite}/src/migrate.rs (ensure_migrations_table)
    c.columns(t, "a", {
        PG: [("version", "bigint"), ("description", "text"), ("installed_on", "timestamp with time zone"),
             ("success", "boolean"), ("checksum", "bytea"), ("execution_time", "bigint")],
        MY: [("version", "bigint(20)"), ("description", "text"), ("installed_on", "timestamp"),
             ("success", "tinyint(1)"), ("checksum", "blob"), ("execution_time", "bigint(20)")],
        LITE: [("version", "bigint"), ("description", "text"), ("installed_on", "timestamp"),
               ("success", "boolean"), ("checksum", "blob"), ("execution_time", "bigint")]}[e])
    rows = s["ab"]["rows"]
    # sqlx-postgres/src/migrate.rs (execute_migration): INSERT (version, description, success, checksum,
    # execution_time) VALUES ($1, $2, TRUE, $3, -1); installed_on from its default. sqlx-core
    # src/migrate/source.rs: description = the name after the version, underscores as spaces; sqlx-core
    # src/migrate/migration.rs: checksum = Sha384::digest(sql), 48 bytes.
    c.eq(t, "versions", [v(r["version"]) for r in rows], [int(a), int(b)])
    c.eq(t, "descriptions", [v(r["description"]) for r in rows], ["init", "add users"])
    c.eq(t, "checksums (SHA-384, 48 bytes)", [(r["checksum"]["t"], v(r["checksum"])) for r in rows],
         [("bytes", hashlib.sha384(file_bytes(t, m)).hexdigest()) for m in (a, b)])
    c.eq(t, "success", [bool(v(r["success"])) for r in rows], [True, True])
    c.eq(t, "execution_time (sqlx's insert value)", [v(r["execution_time"]) for r in rows], [-1, -1])
    if e == LITE:
        c.eq(t, "sqlite storage classes", s["ab"]["typeof"][0]["checksum"], "blob")
    # installed_on: TIMESTAMPTZ DEFAULT now() (aware) on PostgreSQL; TIMESTAMP CURRENT_TIMESTAMP (local) on
    # MySQL; CURRENT_TIMESTAMP (UTC text 'YYYY-MM-DD HH:MM:SS') on SQLite.
    c.written_between(t, "installed_on", rows[1]["installed_on"], "a", "ab", clock="local" if e == MY else "utc")
    if e == LITE:
        c.true(t, "installed_on format", re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", v(rows[1]["installed_on"])),
               v(rows[1]["installed_on"]))
    c.eq(t, "after absent", [v(r["version"]) for r in s["un"]["rows"]], [int(a)])
    # sqlx has no repair: 'fix and remove row from _sqlx_migrations table' (sqlx-core src/migrate/error.rs,
    # Dirty): rolled_back of the failed row deletes it.
    c.eq(t, "after rolled_back of the failed row", [v(r["version"]) for r in s["rb"]["rows"]], [int(a)])
    c.eq(t, "applied again", [(v(r["version"]), bool(v(r["success"]))) for r in s["fixed"]["rows"]],
         [(int(a), True), (int(b), True)])


def check_golang_migrate(c, e, s):
    t = "golang-migrate"
    # golang-migrate/migrate database/postgres/postgres.go, database/mysql/mysql.go,
    # database/sqlite3/sqlite3.go (ensureVersionTable)
    c.columns(t, "a", {PG: [("version", "bigint"), ("dirty", "boolean")],
                       MY: [("version", "bigint(20)"), ("dirty", "tinyint(1)")],
                       LITE: [("version", "uint64"), ("dirty", "bool")]}[e])

    def state(snap):
        return [(v(r["version"]), bool(v(r["dirty"]))) for r in s[snap]["rows"]]
    # database/*/…go (SetVersion): DELETE FROM the table, then INSERT (version, dirty): one row, the latest.
    c.eq(t, "after applying 1", state("a"), [(1, False)])
    c.eq(t, "after applying 2", state("ab"), [(2, False)])
    # migrate force 1 (rolled_back of 2 = the version before it on disk)
    c.eq(t, "after rolling back 2", state("un"), [(1, False)])
    c.eq(t, "the dirty row", state("failed"), [(2, True)])
    c.eq(t, "dirty 2 rolled back = force 1", state("rb"), [(1, False)])
    c.eq(t, "applied 2 = force 2", state("fixed"), [(2, False)])
    if e == LITE:
        c.eq(t, "sqlite storage classes", s["ab"]["typeof"], [{"version": "integer", "dirty": "integer"}])


def check_alembic(c, e, s):
    t = "alembic"
    # sqlalchemy/alembic alembic/ddl/impl.py (version_table_impl): Column('version_num', String(32),
    # nullable=False), PrimaryKeyConstraint(name='<table>_pkc').
    c.columns(t, "a", [("version_num", {PG: "character varying(32)", MY: "varchar(32)", LITE: "varchar(32)"}[e])])
    c.true(t, "version_num NOT NULL", s["a"]["columns"] and s["a"]["columns"][0][2])

    def heads(snap):
        return [v(r["version_num"]) for r in s[snap]["rows"]]
    # alembic/runtime/migration.py (HeadMaintainer._insert_version / _update_version): one row per head.
    c.eq(t, "stamp 001", heads("a"), ["001_initial_schema"])
    c.eq(t, "stamp 002 replaces its ancestor", heads("ab"), ["002_users"])
    c.eq(t, "downgrade to 001", heads("un"), ["001_initial_schema"])


def check_django(c, e, s):
    t = "django"
    # django/django django/db/migrations/recorder.py (MigrationRecorder.Migration: app, name CharField(255),
    # applied DateTimeField(default=now)); the id is the project's DEFAULT_AUTO_FIELD (BigAutoField since
    # Django 3.2's startproject): bigint identity / bigint AUTO_INCREMENT / integer AUTOINCREMENT.
    c.columns(t, "a", {
        PG: [("id", "bigint"), ("app", "character varying(255)"), ("name", "character varying(255)"),
             ("applied", "timestamp with time zone")],
        MY: [("id", "bigint(20)"), ("app", "varchar(255)"), ("name", "varchar(255)"), ("applied", "datetime(6)")],
        LITE: [("id", "integer"), ("app", "varchar(255)"), ("name", "varchar(255)"), ("applied", "datetime")]}[e])
    rows = s["ab"]["rows"]
    c.eq(t, "rows", [(v(r["app"]), v(r["name"])) for r in rows], [("shop", "0001_initial"), ("shop", "0002_item_name")])
    c.true(t, "ids ascending", v(rows[0]["id"]) < v(rows[1]["id"]))
    # applied = django.utils.timezone.now(): UTC (USE_TZ). Stored as timestamptz on PostgreSQL, UTC datetime(6)
    # on MySQL (django/db/backends/mysql/operations.py adapt_datetimefield_value), and on SQLite as
    # str(value) = 'YYYY-MM-DD HH:MM:SS.ffffff' (django/db/backends/sqlite3/operations.py).
    c.written_between(t, "applied (UTC)", rows[1]["applied"], "a", "ab")
    if e == LITE:
        c.true(t, "applied format (str(datetime), microseconds)",
               re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", v(rows[1]["applied"])), v(rows[1]["applied"]))
    # record_unapplied: DELETE the (app, name) row
    c.eq(t, "after unapply", [v(r["name"]) for r in s["un"]["rows"]], ["0001_initial"])


def check_knex(c, e, s):
    t = "knex"
    # knex/knex lib/migrations/migrate/table-creator.js (_createMigrationTable: increments id, string name,
    # integer batch, timestamp migration_time), types per dialect's columncompiler.
    c.columns(t, "a", {
        PG: [("id", "integer"), ("name", "character varying(255)"), ("batch", "integer"),
             ("migration_time", "timestamp with time zone")],
        MY: [("id", "int(10) unsigned"), ("name", "varchar(255)"), ("batch", "int(11)"), ("migration_time", "timestamp")],
        LITE: [("id", "integer"), ("name", "varchar(255)"), ("batch", "integer"), ("migration_time", "datetime")]}[e])
    rows = s["ab"]["rows"]
    # lib/migrations/migrate/Migrator.js (_waterfallBatch): insert {name, batch: batchNo, migration_time: new
    # Date()}; batchNo = _latestBatchNumber() + 1 for each migrate run (each resolve is one run).
    c.eq(t, "rows (name, batch)", [(v(r["name"]), v(r["batch"])) for r in rows],
         [(TOOLS[t][1], 1), (TOOLS[t][2], 2)])
    c.true(t, "ids ascending", v(rows[0]["id"]) < v(rows[1]["id"]))
    # new Date(): timestamptz on PostgreSQL; on MySQL the driver sends the Date in the connection's time zone
    # ('local'); node-sqlite3 binds a Date as its milliseconds since the epoch.
    c.written_between(t, "migration_time", rows[1]["migration_time"], "a", "ab", clock="local" if e == MY else "utc")
    if e == LITE:
        c.eq(t, "sqlite storage class", s["ab"]["typeof"][1]["migration_time"], "integer")
    # rollback: delete where {name}
    c.eq(t, "after rollback", [v(r["name"]) for r in s["un"]["rows"]], [TOOLS[t][1]])


def check_rails(c, e, s):
    t = "rails"
    # rails/rails activerecord/lib/active_record/schema_migration.rb (create_table: t.string :version,
    # primary key, no id): character varying / varchar(255) / varchar.
    c.columns(t, "a", [("version", {PG: "character varying", MY: "varchar(255)", LITE: "varchar"}[e])])
    # schema_migration.rb (create_version / delete_version): one row per version, as a string
    c.eq(t, "versions", [v(r["version"]) for r in s["ab"]["rows"]], [TOOLS[t][1], TOOLS[t][2]])
    c.eq(t, "after rollback", [v(r["version"]) for r in s["un"]["rows"]], [TOOLS[t][1]])


def check_dbmate(c, e, s):
    t = "dbmate"
    # amacneil/dbmate pkg/driver/{postgres,mysql,sqlite}/*.go (CreateMigrationsTable, dbmate 2.x): version
    # varchar primary key on PostgreSQL, varchar(128) on MySQL and SQLite (the tool's own table is compared
    # below too: it found the PostgreSQL one).
    c.columns(t, "a", [("version", {PG: "character varying", MY: "varchar(128)", LITE: "varchar(128)"}[e])])
    # InsertMigration: insert into schema_migrations (version) values ($1); DeleteMigration: delete where version
    c.eq(t, "versions", [v(r["version"]) for r in s["ab"]["rows"]], [TOOLS[t][1], TOOLS[t][2]])
    c.eq(t, "after rollback", [v(r["version"]) for r in s["un"]["rows"]], [TOOLS[t][1]])
    if e == LITE:
        c.eq(t, "sqlite storage class (text, as the Go driver binds a string)", s["ab"]["typeof"][0]["version"], "text")


def check_goose(c, e, s):
    t = "goose"
    # pressly/goose internal/dialect/dialectquery/{postgres,mysql,sqlite3}.go (CreateTable)
    c.columns(t, "a", {
        PG: [("id", "integer"), ("version_id", "bigint"), ("is_applied", "boolean"),
             ("tstamp", "timestamp without time zone")],
        MY: [("id", "bigint(20) unsigned"), ("version_id", "bigint(20)"), ("is_applied", "tinyint(1)"),
             ("tstamp", "timestamp")],
        LITE: [("id", "integer"), ("version_id", "integer"), ("is_applied", "integer"), ("tstamp", "timestamp")]}[e])

    def rows(snap):
        return [(v(r["id"]), v(r["version_id"]), bool(v(r["is_applied"]))) for r in s[snap]["rows"]]
    # goose creates the table with a version 0 row (migrate.go / provider: EnsureDBVersion -> InsertVersion(0)),
    # then InsertVersion: INSERT (version_id, is_applied) VALUES ($1, true); tstamp from its default.
    c.eq(t, "version 0 row, then 1", rows("a"), [(1, 0, True), (2, 1, True)])
    c.eq(t, "then 2", rows("ab"), [(1, 0, True), (2, 1, True), (3, 2, True)])
    # DeleteVersion: DELETE FROM goose_db_version WHERE version_id = $1
    c.eq(t, "down 2", rows("un"), [(1, 0, True), (2, 1, True)])
    # tstamp: timestamp DEFAULT now() = local time on PostgreSQL and MySQL; SQLite datetime('now') = UTC text.
    c.written_between(t, "tstamp", s["ab"]["rows"][2]["tstamp"], "a", "ab", clock="local" if e != LITE else "utc")


CHECKS = {"prisma": check_prisma, "flyway": check_flyway, "sqlx": check_sqlx, "golang-migrate": check_golang_migrate,
          "alembic": check_alembic, "django": check_django, "knex": check_knex, "rails": check_rails,
          "dbmate": check_dbmate, "goose": check_goose}


# ------------------------------------------------------------------------------------ the failed rows
def failed_row_sql(tool, engine, table):
    """The row the tool writes when the run of the second migration stops halfway."""
    b = TOOLS[tool][2]
    q = "`%s`" % table if engine == MY else '"%s"' % table
    false, true = ("false", "true") if engine == PG else ("0", "1")
    if tool == "prisma":
        # sql_migration_persistence.rs (record_migration_started_impl): id, checksum, started_at, name only.
        now = {PG: "now()", MY: "UTC_TIMESTAMP(3)",
               LITE: "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"}[engine]
        return ("INSERT INTO %s (id, checksum, migration_name, started_at, logs, applied_steps_count) VALUES "
                "('%s', '%s', '%s', %s, 'P3018', 0)" % (q, uuid.uuid4(), "0" * 64, b, now))
    if tool == "flyway":
        return ("INSERT INTO %s (installed_rank, version, description, type, script, checksum, installed_by, "
                "execution_time, success) VALUES (2, '1.1', 'add users', 'SQL', 'V1_1__add_users.sql', 1, 'me', 5, %s)"
                % (q, false))
    if tool == "sqlx":
        blob = "'\\x00'::bytea" if engine == PG else "X'00'"
        return ("INSERT INTO %s (version, description, success, checksum, execution_time) VALUES (%s, 'add users', "
                "%s, %s, -1)" % (q, b, false, blob))
    # golang-migrate: SetVersion(2, dirty=true) before running the up script
    return "UPDATE %s SET version = %s, dirty = %s" % (q, b, true)


# ------------------------------------------------------------------------------------ the run
@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def engine_dbs(request, tmp_path):
    """engine, {tool: database} with one fresh database per tool (plus one per tool oracle)."""
    engine = request.param
    names = list(TOOLS) + ["oracle-dbmate", "oracle-rails"]
    if engine == "sqlite":
        dbs = {}
        for n in names:
            path = tmp_path / ("%s.sqlite3" % n)
            path.touch()
            dbs[n] = SqliteDB(path)
        return engine, dbs
    servers = request.getfixturevalue("servers")
    server = servers["pg15" if engine == "postgresql" else "mariadb"]
    dbs = {}
    for n in names:
        name = server.create_database()
        request.addfinalizer(lambda name=name: server.drop_database(name))
        dbs[n] = ServerDB(server, name)
    return engine, dbs


def test_history_rows_as_each_tool_writes_them(ansible, engine_dbs, tmp_path):
    engine, dbs = engine_dbs
    snaps_dir = tmp_path / "snaps"
    snaps_dir.mkdir()
    plan = {}
    for tool, (sub, _a, _b, table, order, _extra) in TOOLS.items():
        path = tmp_path / "m" / tool
        shutil.copytree(FIXTURES / sub, path)
        failed = None
        if tool in FAILABLE:
            failed = failed_row_sql(tool, engine, table)
        plan[tool] = dict(spec=dbs[tool].params, table=table, order=order, failed=failed)
    plan_file = tmp_path / "plan.json"
    fd = os.open(plan_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the login password
    with os.fdopen(fd, "w") as f:
        json.dump(plan, f)
    tasks = []
    me = "'%s' '%s'" % (sys.executable, Path(__file__).resolve())

    def snap(label):
        # one local command reads every tool's table at this point
        tasks.append(dict(name="snap %s" % label, shell="%s snap '%s' '%s' %s" % (me, plan_file, snaps_dir, label)))

    def resolve(label, tools, migration, state=None, **more):
        for tool in tools:
            _sub, a, b, _table, _order, extra = TOOLS[tool]
            args = dict(dbs[tool].params, tool=tool, migrations_path=str(tmp_path / "m" / tool),
                        migration=a if migration == "a" else b, **extra)
            if state:
                args["state"] = state[tool] if isinstance(state, dict) else state
            args.update(more)
            tasks.append(dict(name="%s %s" % (tool, label), module=RESOLVE, args=args))

    snap("start")
    resolve("apply a", TOOLS, "a", create_table=True)
    snap("a")
    resolve("apply b", TOOLS, "b")
    snap("ab")
    resolve("unapply b", TOOLS, "b", state=UNAPPLY)
    snap("un")
    tasks.append(dict(name="write failed rows", shell="%s failed '%s'" % (me, plan_file)))
    snap("failed")
    resolve("rolled_back b", FAILABLE, "b", state="rolled_back")
    snap("rb")
    resolve("apply b again", FAILABLE, "b")
    snap("fixed")
    res = run_tasks(ansible, tasks)
    errors = ["%s: %s" % (name, (r.get("msg") or r.get("stderr") or "")[:500])
              for name, r in res.items() if r.get("failed")]
    assert not errors, "\n".join(errors)
    snaps = {tool: {} for tool in TOOLS}
    for p in snaps_dir.glob("*.json"):
        for tool, snap_ in json.loads(p.read_text()).items():
            snaps[tool][p.stem] = snap_
    check = Check(engine, snaps)
    for tool, fn in CHECKS.items():
        try:
            fn(check, engine, snaps[tool])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            check.errors.append("%s/%s: could not be checked (%r); snapshots: %s"
                                % (tool, engine, exc, json.dumps(snaps[tool])[:1500]))
    # The real tools, where they run here, read the same rows.
    oracle_dbmate(check, engine, dbs)
    oracle_rails(check, engine, dbs, tmp_path)
    assert not check.errors, "\n".join(check.errors)


# ------------------------------------------------------------------------------------ tool oracles
def _url(engine, db, scheme):
    if engine == LITE:
        return "sqlite:%s" % db.name
    i = db.server.info
    if engine == PG:
        return "postgres://%s:%s@%s:%s/%s?sslmode=disable" % (
            i["login_user"], i["login_password"], i["login_host"], i["login_port"], db.name)
    return "%s://%s:%s@%s:%s/%s" % (scheme, i["login_user"], i["login_password"], i["login_host"], i["login_port"],
                                    db.name)


def _cols(db, table):
    return snapshot(dict(db.params), table, "1")["columns"]


def oracle_dbmate(check, engine, dbs):
    """dbmate reads our rows (status: both applied after 'ab'... here after 'un': first applied, second
    pending), and the table dbmate creates itself has our catalog types."""
    if not DBMATE.exists():
        check.errors.append("dbmate/%s: dbmate is not installed (%s): run scripts/install-conformance-tools.sh"
                            % (engine, DBMATE))
        return
    mig = FIXTURES / "dbmate"
    for key, want_rc in (("dbmate", 1),):
        p = subprocess.run([str(DBMATE), "--url", _url(engine, dbs[key], "mysql"), "--migrations-dir", str(mig),
                            "--no-dump-schema", "status", "--exit-code"], capture_output=True, text=True, timeout=120,
                           check=False)
        check.eq("dbmate", "dbmate status exit code (one pending)", p.returncode, want_rc)
        check.true("dbmate", "dbmate status reads our rows", "[X] 20240101000001_init.sql" in p.stdout
                   and "[ ] 20240101000002_users.sql" in p.stdout, p.stdout + p.stderr)
    oracle = dbs["oracle-dbmate"]
    p = subprocess.run([str(DBMATE), "--url", _url(engine, oracle, "mysql"), "--migrations-dir", str(mig),
                        "--no-dump-schema", "up"], capture_output=True, text=True, timeout=120, check=False)
    check.eq("dbmate", "dbmate up on the oracle database", p.returncode, 0)
    check.eq("dbmate", "the table dbmate makes itself (catalog)", _cols(oracle, "schema_migrations"),
             _cols(dbs["dbmate"], "schema_migrations"))
    got = [r[0] for r in oracle.query("SELECT version FROM schema_migrations ORDER BY version")]
    check.eq("dbmate", "the rows dbmate writes itself", got, [TOOLS["dbmate"][1], TOOLS["dbmate"][2]])


RAILS = r'''
require 'active_record'
spec = JSON.parse(File.read(ARGV[0]))
ActiveRecord::Base.establish_connection(spec)
ActiveRecord::Migration.verbose = false
if ARGV[2] == 'create'
  ActiveRecord::SchemaMigration.create_table
  ActiveRecord::SchemaMigration.create!(version: '20240101000001')
end
ctx = ActiveRecord::MigrationContext.new(ARGV[1], ActiveRecord::SchemaMigration)
puts JSON.generate(ctx.migrations_status)
'''


def oracle_rails(check, engine, dbs, tmp_path):
    """Rails (Debian's ruby-activerecord 6.1, offline) reads our schema_migrations rows, and creates its own
    table with the same catalog types."""
    if not shutil.which("ruby"):
        check.errors.append("rails/%s: ruby is not installed (scripts/install-conformance-tools.sh installs "
                            "Debian's ruby-activerecord)" % engine)
        return
    script = tmp_path / "ar_oracle.rb"
    script.write_text("require 'json'\n" + RAILS)

    def spec_of(db):
        if engine == LITE:
            return {"adapter": "sqlite3", "database": db.name}
        i = db.server.info
        return {"adapter": "postgresql" if engine == PG else "mysql2", "host": i["login_host"],
                "port": i["login_port"], "username": i["login_user"], "password": i["login_password"],
                "database": db.name}

    for key, mode in (("rails", "read"), ("oracle-rails", "create")):
        spec = Path(str(script) + ".%s.json" % key)
        fd = os.open(spec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec_of(dbs[key]), f)
        try:
            p = subprocess.run(["ruby", str(script), str(spec), str(FIXTURES / "rails"), mode], capture_output=True,
                               text=True, timeout=180, check=False)
        finally:
            spec.unlink()
        if p.returncode != 0:
            check.errors.append("rails/%s: ruby activerecord failed (%s): %s" % (engine, mode, p.stderr[-1500:]))
            continue
        status = json.loads(p.stdout.strip().splitlines()[-1])
        # [status, version, name]: after 'un' the first is up, the second down
        check.eq("rails", "ActiveRecord migrations_status (%s)" % mode, [s[:2] for s in status],
                 [["up", "20240101000001"], ["down", "20240101000002"]])
    check.eq("rails", "the table Rails makes itself (catalog)", _cols(dbs["oracle-rails"], "schema_migrations"),
             _cols(dbs["rails"], "schema_migrations"))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
