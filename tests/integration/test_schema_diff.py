"""dbops.maintenance.schema_diff through ansible-playbook against real servers (issue 12).

Engines: PostgreSQL 15 and 16, MariaDB 10.11 (``db`` / ``pg_db`` / ``mysql_db``) and SQLite (``sqlite_db``).
Every comparison is checked entry by entry (kind, name, what, both values); the target's catalog is read before
and after each run to prove schema_diff wrote nothing, and the server's database list to prove the shadow
database is gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

MODULE = "dbops.maintenance.schema_diff"
APPLY = "dbops.maintenance.migration_apply"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "migrations"
# the SQL-file tools (replayed natively) and the fixture directory each one reads
SQL_TOOLS = {"prisma": "prisma", "dbmate": "dbmate", "golang-migrate": "golang-migrate", "goose": "goose",
             "sqlx": "sqlx", "flyway": "flyway"}
HOSTILE = 'we"ird`; DROP TABLE x; --'
MIXED = "MixedCase"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def qi(db, name):
    if db.engine == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def diff(ansible, db, fail=False, check=False, do_diff=False, **args):
    return ansible.run(MODULE, {**db.params, **args}, check=check, diff=do_diff, expect_failure=fail,
                       unsafe_args=True)


def apply(ansible, db, tool, path, **args):
    r = ansible.run(APPLY, {**db.params, "tool": tool, "migrations_path": str(path), "create_table": True,
                            "lint": False, **args}, unsafe_args=True)
    assert not r.get("failed"), r
    return r


def migrations_dir(tmp_path, files):
    """A dbmate migrations directory of the given {name: up SQL}."""
    d = tmp_path / "migrations"
    d.mkdir()
    for name, sql in files.items():
        (d / name).write_text("-- migrate:up\n%s\n\n-- migrate:down\n" % sql)
    return d


def gone(db, r):
    """The run's shadow database is not on the server any more (other tests' shadows may be, in parallel)."""
    return r["shadow"]["dropped"] is True and r["shadow"]["name"] not in shadows(db)


def shadows(db):
    """The dbops_scratch_ databases on the server."""
    if db.engine == "postgresql":
        return [r[0] for r in db.query("SELECT datname FROM pg_database WHERE datname LIKE 'dbops\\_scratch\\_%%'")]
    if db.engine == "mysql":
        return [r[0] for r in db.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                                       "WHERE SCHEMA_NAME LIKE 'dbops\\_scratch\\_%%'")]
    return []


def catalog(db):
    """The target's catalog, to prove it is identical before and after (xmin: any committed change)."""
    if db.engine == "postgresql":
        return (db.query("SELECT c.relname, c.relkind, c.xmin::text, c.relfilenode FROM pg_class c "
                         "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname !~ '^pg_' "
                         "AND n.nspname <> 'information_schema' ORDER BY 1"),
                db.query("SELECT conname, xmin::text, convalidated FROM pg_constraint WHERE conrelid >= 16384 "
                         "ORDER BY 1"),
                db.query("SELECT nspname, xmin::text FROM pg_namespace ORDER BY 1"),
                db.query("SELECT count(*) FROM pg_type WHERE oid >= 16384"))
    if db.engine == "mysql":
        return (db.query("SELECT TABLE_NAME, TABLE_TYPE, CREATE_TIME, TABLE_COLLATION FROM information_schema.TABLES "
                         "WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1"),
                db.query("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM "
                         "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2"),
                db.query("SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                         "WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 2, 3"))
    return (db.query("SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2"),
            db.query("PRAGMA schema_version"), os.stat(db.name).st_mtime_ns)


def entries(r):
    return [(d["kind"], d["name"], d["what"]) for d in r["drift"]]


# --------------------------------------------------------------------------
# in sync after a clean apply: every SQL-file tool's fixture directory, every engine
# --------------------------------------------------------------------------

def check_in_sync(ansible, db, tool):
    path = FIXTURES / SQL_TOOLS[tool]
    apply(ansible, db, tool, path)
    before = catalog(db)
    r = diff(ansible, db, reference="migrations", tool=tool, migrations_path=str(path))
    assert r["in_sync"] is True and r["drift"] == [] and r["sql"] == [], r
    assert r["summary"] == "in sync: no differences"
    assert r["changed"] is False
    assert r["shadow"]["created"] is True and r["shadow"]["dropped"] is True
    if db.engine == "sqlite":
        assert os.path.basename(os.path.dirname(r["shadow"]["name"])).startswith("dbops_scratch_")
        assert not os.path.exists(os.path.dirname(r["shadow"]["name"]))
    else:
        assert r["shadow"]["name"].startswith("dbops_scratch_diff_")
    assert len(r["shadow"]["applied"]) >= 1
    assert r["counts"]["actual"] == r["counts"]["reference"]
    assert catalog(db) == before
    assert gone(db, r)


@pytest.mark.parametrize("tool", sorted(t for t in SQL_TOOLS if t != "prisma"))
def test_in_sync_after_clean_apply(ansible, db, tool):
    check_in_sync(ansible, db, tool)


@pytest.mark.parametrize("tool", sorted(t for t in SQL_TOOLS if t != "prisma"))
def test_in_sync_after_clean_apply_sqlite(ansible, sqlite_db, tool):
    check_in_sync(ansible, sqlite_db, tool)


def test_in_sync_after_clean_apply_prisma_mariadb(ansible, mysql_db):
    # the prisma fixture is MySQL SQL (backticks, AUTO_INCREMENT, utf8mb4_unicode_ci)
    check_in_sync(ansible, mysql_db, "prisma")


# --------------------------------------------------------------------------
# each kind of difference, introduced by hand, reported exactly
# --------------------------------------------------------------------------

PG_SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name varchar(100) DEFAULT 'x',
                    nick text, mood mood, "MixedCase" int, note text);
COMMENT ON TABLE users IS 'people';
CREATE UNIQUE INDEX users_nick_key ON users (nick);
CREATE TABLE quotas (id int PRIMARY KEY, user_id int REFERENCES users (id) ON DELETE CASCADE,
                     amount numeric(10,2) CONSTRAINT quotas_amount_check CHECK (amount >= 0));
CREATE INDEX quotas_amount_idx ON quotas (amount DESC) WHERE amount > 0;
CREATE VIEW v_users AS SELECT id, email FROM users;
CREATE SEQUENCE counter START 5;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER quotas_touch BEFORE INSERT ON quotas FOR EACH ROW EXECUTE FUNCTION touch();
"""

PG_CHANGES = [
    "ALTER TABLE users ADD COLUMN extra int",
    "ALTER TABLE users DROP COLUMN name",
    'ALTER TABLE users ALTER COLUMN "MixedCase" TYPE bigint',
    "ALTER TABLE users ALTER COLUMN note SET NOT NULL",
    "DROP INDEX quotas_amount_idx",
    "ALTER TABLE quotas DROP CONSTRAINT quotas_user_id_fkey",
    "ALTER TABLE quotas DROP CONSTRAINT quotas_amount_check",
    "COMMENT ON TABLE users IS 'humans'",
    "CREATE OR REPLACE VIEW v_users AS SELECT id, email, 1 AS one FROM users",
    "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
    "DROP TRIGGER quotas_touch ON quotas",
    "ALTER SEQUENCE counter INCREMENT 2",
    "ALTER TYPE mood ADD VALUE 'meh' AFTER 'sad'",
    # an INVALID index, as a failed CREATE INDEX CONCURRENTLY leaves it
    "DROP INDEX users_nick_key",
    "INSERT INTO users (email, nick, note) VALUES ('a', 'same', ''), ('b', 'same', '')",
]

PG_EXPECTED = {
    ("column", "users.name", "missing"),
    ("column", "users.extra", "unexpected"),
    ("column", "users.MixedCase", "type"),
    ("column", "users.note", "nullable"),
    ("index", "quotas.quotas_amount_idx", "missing"),
    ("index", "users.users_nick_key", "valid"),
    ("foreign_key", "quotas.user_id", "missing"),
    ("check", "quotas.quotas_amount_check", "missing"),
    ("table", "users", "comment"),
    ("view", "v_users", "definition"),
    ("function", "touch()", "body_sha256"),
    ("trigger", "quotas.quotas_touch", "missing"),
    ("sequence", "counter", "increment"),
    ("enum", "mood", "values"),
}


def test_each_difference_postgresql(ansible, pg_db, tmp_path):
    db = pg_db
    mig = migrations_dir(tmp_path, {"20240101000001_schema.sql": PG_SCHEMA})
    apply(ansible, db, "dbmate", mig)
    for statement in PG_CHANGES:
        db.execute(statement)
    with pytest.raises(Exception, match="could not create unique index"):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY users_nick_key ON users (nick)")
    assert db.query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_nick_key'::regclass") == [(False,)]
    before = catalog(db)
    r = diff(ansible, db, reference="migrations", tool="dbmate", migrations_path=str(mig), do_diff=True)
    assert set(entries(r)) == PG_EXPECTED, entries(r)
    assert len(r["drift"]) == len(PG_EXPECTED)
    assert r["in_sync"] is False and r["changed"] is False
    by = {(d["kind"], d["name"], d["what"]): d for d in r["drift"]}
    assert by[("column", "users.MixedCase", "type")]["reference"] == "integer"
    assert by[("column", "users.MixedCase", "type")]["actual"] == "bigint"
    assert by[("column", "users.note", "nullable")]["reference"] is True
    assert by[("column", "users.note", "nullable")]["actual"] is False
    assert by[("column", "users.name", "missing")]["reference"] == {
        "type": "character varying(100)", "nullable": True, "default": "'x'::character varying"}
    assert by[("column", "users.name", "missing")]["actual"] is None
    assert by[("column", "users.extra", "unexpected")]["actual"] == {"type": "integer", "nullable": True}
    assert (by[("index", "users.users_nick_key", "valid")]["reference"],
            by[("index", "users.users_nick_key", "valid")]["actual"]) == (True, False)
    assert by[("table", "users", "comment")]["reference"] == "people"
    assert by[("table", "users", "comment")]["actual"] == "humans"
    assert by[("sequence", "counter", "increment")]["reference"] == 1
    assert by[("sequence", "counter", "increment")]["actual"] == 2
    assert by[("enum", "mood", "values")]["reference"] == ["sad", "ok", "happy"]
    assert by[("enum", "mood", "values")]["actual"] == ["sad", "meh", "ok", "happy"]
    fk = by[("foreign_key", "quotas.user_id", "missing")]["reference"]
    assert fk["name"] == "quotas_user_id_fkey" and fk["references"] == "public.users"
    assert fk["on_delete"] == "CASCADE" and fk["valid"] is True
    assert r["summary"].startswith("14 differences: ")
    statements = [s["statement"] for s in r["sql"]]
    assert statements == [
        'ALTER TABLE "public"."users" ADD COLUMN "name" character varying(100) DEFAULT \'x\'::character varying',
        'CREATE INDEX CONCURRENTLY quotas_amount_idx ON public.quotas USING btree (amount DESC) '
        'WHERE (amount > (0)::numeric)',
        'REINDEX INDEX CONCURRENTLY "public"."users_nick_key"',
        'ALTER TABLE "public"."quotas" ADD CONSTRAINT "quotas_user_id_fkey" FOREIGN KEY (user_id) '
        'REFERENCES public.users(id) ON DELETE CASCADE NOT VALID',
        'ALTER TABLE "public"."quotas" VALIDATE CONSTRAINT "quotas_user_id_fkey"',
        'ALTER TABLE "public"."quotas" ADD CONSTRAINT "quotas_amount_check" CHECK ((amount >= (0)::numeric)) '
        'NOT VALID',
        'ALTER TABLE "public"."quotas" VALIDATE CONSTRAINT "quotas_amount_check"',
    ], statements
    assert all(isinstance(s["findings"], list) for s in r["sql"])
    assert not any(s["drop"] or s["data_loss"] for s in r["sql"])
    # the unexpected column: reported, its DROP only with include_drops
    assert {(n["kind"], n["name"], n["what"]) for n in r["not_expressed"]} >= {
        ("column", "users.extra", "unexpected"), ("column", "users.MixedCase", "type")}
    assert "users.MixedCase: type=integer" in r["diff"]["before"]
    assert "users.MixedCase: type=bigint" in r["diff"]["after"]
    assert catalog(db) == before and gone(db, r)
    r = diff(ansible, db, reference="migrations", tool="dbmate", migrations_path=str(mig), include_drops=True)
    drops = [s for s in r["sql"] if s["drop"]]
    assert [(s["statement"], s["data_loss"]) for s in drops] == [
        ('ALTER TABLE "public"."users" DROP COLUMN "extra"', True)]
    # ignore leaves objects out (by kind:pattern and by dotted name)
    r = diff(ansible, db, reference="migrations", tool="dbmate", migrations_path=str(mig),
             ignore=["users.*", "view:v_*", "function:*", "trigger:*", "counter", "enum:mood", "table:users"])
    assert set(entries(r)) == {("index", "quotas.quotas_amount_idx", "missing"),
                               ("foreign_key", "quotas.user_id", "missing"),
                               ("check", "quotas.quotas_amount_check", "missing")}, entries(r)
    assert catalog(db) == before and gone(db, r)


MY_SCHEMA = """
CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, email varchar(191) NOT NULL, name varchar(100) DEFAULT 'x',
                    mood ENUM('sad','ok','happy'), MixedCase int, note varchar(10) COLLATE utf8mb4_bin,
                    UNIQUE KEY users_email_key (email)) ENGINE=InnoDB COMMENT='people';
CREATE TABLE quotas (id int PRIMARY KEY, user_id int, amount decimal(10,2),
                     CONSTRAINT quotas_amount_check CHECK (amount >= 0), KEY quotas_amount_idx (amount),
                     KEY quotas_user_id_idx (user_id),
                     CONSTRAINT quotas_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE);
CREATE VIEW v_users AS SELECT id, email FROM users;
"""

MY_CHANGES = [
    "ALTER TABLE users ADD COLUMN extra int",
    "ALTER TABLE users DROP COLUMN name",
    "ALTER TABLE users MODIFY MixedCase bigint",
    "ALTER TABLE users MODIFY note varchar(10) COLLATE utf8mb4_general_ci",
    "ALTER TABLE quotas DROP INDEX quotas_amount_idx",
    "ALTER TABLE quotas DROP FOREIGN KEY quotas_user_id_fkey",
    "ALTER TABLE quotas DROP CONSTRAINT quotas_amount_check",
    "ALTER TABLE users COMMENT = 'humans'",
    "CREATE OR REPLACE VIEW v_users AS SELECT id, email, 1 AS one FROM users",
    "ALTER TABLE users MODIFY mood ENUM('sad','ok')",
]

MY_EXPECTED = {
    ("column", "users.name", "missing"),
    ("column", "users.extra", "unexpected"),
    ("column", "users.MixedCase", "type"),
    ("column", "users.note", "collation"),
    ("column", "users.mood", "type"),
    ("index", "quotas.quotas_amount_idx", "missing"),
    ("foreign_key", "quotas.user_id", "missing"),
    ("check", "quotas.quotas_amount_check", "missing"),
    ("table", "users", "comment"),
    ("view", "v_users", "definition"),
}


def test_each_difference_mariadb(ansible, mysql_db, tmp_path):
    db = mysql_db
    mig = migrations_dir(tmp_path, {"20240101000001_schema.sql": MY_SCHEMA})
    apply(ansible, db, "dbmate", mig)
    for statement in MY_CHANGES:
        db.execute(statement)
    before = catalog(db)
    r = diff(ansible, db, reference="migrations", tool="dbmate", migrations_path=str(mig))
    assert set(entries(r)) == MY_EXPECTED, entries(r)
    assert len(r["drift"]) == len(MY_EXPECTED)
    by = {(d["kind"], d["name"], d["what"]): d for d in r["drift"]}
    assert (by[("column", "users.MixedCase", "type")]["reference"],
            by[("column", "users.MixedCase", "type")]["actual"]) == ("int(11)", "bigint(20)")
    assert (by[("column", "users.note", "collation")]["reference"],
            by[("column", "users.note", "collation")]["actual"]) == ("utf8mb4_bin", "utf8mb4_general_ci")
    assert (by[("column", "users.mood", "type")]["reference"],
            by[("column", "users.mood", "type")]["actual"]) == ("enum('sad','ok','happy')", "enum('sad','ok')")
    assert by[("foreign_key", "quotas.user_id", "missing")]["reference"]["on_delete"] == "CASCADE"
    statements = [s["statement"] for s in r["sql"]]
    assert statements == [
        "ALTER TABLE `users` MODIFY COLUMN `mood` enum('sad','ok','happy') COLLATE `utf8mb4_general_ci` NULL, "
        "ALGORITHM=INSTANT",
        "ALTER TABLE `users` ADD COLUMN `name` varchar(100) COLLATE `utf8mb4_general_ci` NULL DEFAULT 'x'",
        "ALTER TABLE `quotas` ADD INDEX `quotas_amount_idx` (`amount`), ALGORITHM=INPLACE, LOCK=NONE",
        "ALTER TABLE `quotas` ADD CONSTRAINT `quotas_user_id_fkey` FOREIGN KEY (`user_id`) REFERENCES `users` "
        "(`id`) ON DELETE CASCADE ON UPDATE RESTRICT",
        "ALTER TABLE `quotas` ADD CONSTRAINT `quotas_amount_check` CHECK (`amount` >= 0)",
    ], statements
    assert catalog(db) == before and gone(db, r)
    # the generated statements, applied by hand, remove what they cover
    for s in statements:
        db.execute(s)
    r = diff(ansible, db, reference="migrations", tool="dbmate", migrations_path=str(mig))
    assert set(entries(r)) == {("column", "users.extra", "unexpected"), ("column", "users.MixedCase", "type"),
                               ("column", "users.note", "collation"), ("table", "users", "comment"),
                               ("view", "v_users", "definition")}, entries(r)


def test_each_difference_sqlite(ansible, sqlite_db, tmp_path):
    db = sqlite_db
    mig = migrations_dir(tmp_path, {"20240101000001_schema.sql": """
CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL UNIQUE, name varchar(100) DEFAULT 'x');
CREATE TABLE quotas (id integer PRIMARY KEY, user_id int REFERENCES users (id) ON DELETE CASCADE, amount real);
CREATE INDEX quotas_amount_idx ON quotas (amount DESC) WHERE amount > 0;
CREATE VIEW v_users AS SELECT id, email FROM users;
CREATE TRIGGER quotas_touch AFTER INSERT ON quotas BEGIN SELECT 1; END;
"""})
    apply(ansible, db, "dbmate", mig)
    for statement in ["ALTER TABLE users ADD COLUMN extra int", "DROP INDEX quotas_amount_idx",
                      "DROP VIEW v_users", "CREATE VIEW v_users AS SELECT id FROM users", "DROP TRIGGER quotas_touch",
                      "ALTER TABLE users DROP COLUMN name"]:
        db.execute(statement)
    before = catalog(db)
    r = diff(ansible, db, reference="migrations", tool="dbmate", migrations_path=str(mig))
    assert set(entries(r)) == {("column", "users.extra", "unexpected"), ("column", "users.name", "missing"),
                               ("index", "quotas.quotas_amount_idx", "missing"),
                               ("view", "v_users", "definition"), ("trigger", "quotas.quotas_touch", "missing")}, r
    by = {(d["kind"], d["name"], d["what"]): d for d in r["drift"]}
    assert by[("index", "quotas.quotas_amount_idx", "missing")]["reference"]["predicate"] == "amount > 0"
    statements = [s["statement"] for s in r["sql"]]
    assert statements == [
        "ALTER TABLE \"users\" ADD COLUMN \"name\" VARCHAR(100) DEFAULT 'x'",
        "CREATE INDEX quotas_amount_idx ON quotas (amount DESC) WHERE amount > 0",
        "CREATE TRIGGER quotas_touch AFTER INSERT ON quotas BEGIN SELECT 1; END",
    ], statements
    assert catalog(db) == before
    for s in statements:
        db.execute(s)
    r = diff(ansible, db, reference="migrations", tool="dbmate", migrations_path=str(mig))
    assert set(entries(r)) == {("column", "users.extra", "unexpected"), ("view", "v_users", "definition")}


# --------------------------------------------------------------------------
# seed 004: three foreign keys to neon_auth.users_sync dropped by drift
# --------------------------------------------------------------------------

NEON = "CREATE SCHEMA neon_auth;\nCREATE TABLE neon_auth.users_sync (id text PRIMARY KEY);\n"
SEED004_INIT = """-- CreateTable
CREATE TABLE "quotas" (
    "id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "amount" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "quotas_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "resumes" (
    "id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "body" TEXT,

    CONSTRAINT "resumes_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "services" (
    "id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,

    CONSTRAINT "services_pkey" PRIMARY KEY ("id")
);

-- AddForeignKey
ALTER TABLE "quotas" ADD CONSTRAINT "quotas_user_id_fkey" FOREIGN KEY ("user_id")
    REFERENCES "neon_auth"."users_sync"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "resumes" ADD CONSTRAINT "resumes_user_id_fkey" FOREIGN KEY ("user_id")
    REFERENCES "neon_auth"."users_sync"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "services" ADD CONSTRAINT "services_user_id_fkey" FOREIGN KEY ("user_id")
    REFERENCES "neon_auth"."users_sync"("id") ON DELETE CASCADE ON UPDATE CASCADE;
"""


def prisma_dir(tmp_path, migrations):
    d = tmp_path / "prisma-migrations"
    d.mkdir()
    (d / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name, sql in migrations.items():
        (d / name).mkdir()
        (d / name / "migration.sql").write_text(sql)
    return d


def test_seed_004_foreign_keys_dropped(ansible, pg_db, tmp_path):
    db = pg_db
    for statement in NEON.strip().split("\n"):
        db.execute(statement)
    mig = prisma_dir(tmp_path, {"20250101000000_init": SEED004_INIT})
    apply(ansible, db, "prisma", mig)
    db.execute("INSERT INTO neon_auth.users_sync VALUES ('u1')")
    db.execute("INSERT INTO quotas VALUES ('q1', 'u1', 3)")
    for t in ("quotas", "resumes", "services"):
        db.execute('ALTER TABLE "%s" DROP CONSTRAINT "%s_user_id_fkey"' % (t, t))
    args = dict(reference="migrations", tool="prisma", migrations_path=str(mig), shadow_setup=NEON)
    # without shadow_setup the replay fails on the foreign key to a table no migration creates: named exactly
    r = diff(ansible, db, fail=True, reference="migrations", tool="prisma", migrations_path=str(mig))
    assert "20250101000000_init" in r["msg"] and "neon_auth" in r["msg"], r["msg"]
    assert gone(db, r)
    before = catalog(db)
    r = diff(ansible, db, **args)
    assert entries(r) == [("foreign_key", "quotas.user_id", "missing"), ("foreign_key", "resumes.user_id", "missing"),
                          ("foreign_key", "services.user_id", "missing")]
    assert r["summary"] == ("3 differences: 3 foreign keys missing (quotas.user_id, resumes.user_id, "
                            "services.user_id)")
    for d in r["drift"]:
        assert d["reference"] == {"name": d["name"].split(".")[0] + "_user_id_fkey", "references": "neon_auth.users_sync",
                                  "referenced_columns": ["id"], "on_update": "CASCADE", "on_delete": "CASCADE",
                                  "valid": True}
        assert d["actual"] is None
    statements = [s["statement"] for s in r["sql"]]
    expected = []
    for t in ("quotas", "resumes", "services"):
        expected += ['ALTER TABLE "public"."%s" ADD CONSTRAINT "%s_user_id_fkey" FOREIGN KEY (user_id) REFERENCES '
                     'neon_auth.users_sync(id) ON UPDATE CASCADE ON DELETE CASCADE NOT VALID' % (t, t),
                     'ALTER TABLE "public"."%s" VALIDATE CONSTRAINT "%s_user_id_fkey"' % (t, t)]
    assert statements == expected
    assert catalog(db) == before and gone(db, r)
    # applied by hand, the statements remove the drift
    for s in statements:
        db.execute(s)
    r = diff(ansible, db, **args)
    assert r["in_sync"] is True and r["drift"] == [], r["drift"]
    # fail_on_drift: a deploy gate
    db.execute('ALTER TABLE "quotas" DROP CONSTRAINT "quotas_user_id_fkey"')
    r = diff(ansible, db, fail=True, fail_on_drift=True, **args)
    assert "1 difference: 1 foreign key missing (quotas.user_id)" in r["msg"]
    assert r["in_sync"] is False and len(r["drift"]) == 1


# --------------------------------------------------------------------------
# the shadow: always dropped; a failing replay names the migration and the statement
# --------------------------------------------------------------------------

def test_failing_replay_names_migration_and_statement(ansible, db, tmp_path):
    mig = migrations_dir(tmp_path, {"20240101000001_ok.sql": "CREATE TABLE ok_t (id int);",
                                    "20240101000002_bad.sql": "CREATE TABLE bad_t (id int);\n"
                                                              "ALTER TABLE no_such_table ADD COLUMN c int;"})
    before = catalog(db)
    r = diff(ansible, db, fail=True, reference="migrations", tool="dbmate", migrations_path=str(mig))
    assert "Replaying the dbmate migrations into the shadow database failed at migration " \
           "20240101000002_bad.sql" in r["msg"], r["msg"]
    assert "no_such_table" in r["msg"]
    assert r["failed_migration"]["name"] == "20240101000002"
    assert r["shadow"]["created"] is True and r["shadow"]["dropped"] is True
    assert gone(db, r) and catalog(db) == before


def test_failing_replay_sqlite_temp_file_removed(ansible, sqlite_db, tmp_path):
    mig = migrations_dir(tmp_path, {"20240101000001_bad.sql": "CREATE TABLE t (id int);\nSELEC 1;"})
    r = diff(ansible, sqlite_db, fail=True, reference="migrations", tool="dbmate", migrations_path=str(mig))
    assert "20240101000001_bad.sql" in r["msg"] and "SELEC" in r["msg"], r["msg"]
    assert r["shadow"]["dropped"] is True
    assert not os.path.exists(os.path.dirname(r["shadow"]["name"]))


# --------------------------------------------------------------------------
# mixed-case and hostile names
# --------------------------------------------------------------------------

def test_hostile_and_mixed_case_names(ansible, db, tmp_path):
    t, c = qi(db, HOSTILE), qi(db, MIXED)
    mig = migrations_dir(tmp_path, {"20240101000001_init.sql": "CREATE TABLE %s (id int PRIMARY KEY, %s int);"
                                    % (t, c)})
    apply(ansible, db, "dbmate", mig)
    before = catalog(db)
    args = dict(reference="migrations", tool="dbmate", migrations_path=str(mig))
    r = diff(ansible, db, **args)
    assert r["in_sync"] is True, r["drift"]
    # "mixedcase" is another column than "MixedCase" (names as the server stores them; MySQL column names are
    # case-insensitive, so there it is the column's other spelling that differs)
    db.execute("ALTER TABLE %s ADD COLUMN %s int" % (t, qi(db, HOSTILE + "2")))
    db.execute("ALTER TABLE %s DROP COLUMN %s" % (t, c))
    before = catalog(db)
    r = diff(ansible, db, include_drops=True, **args)
    quoted = '"%s"' % HOSTILE.replace('"', '""')
    assert set(entries(r)) == {("column", "%s.%s" % (quoted, MIXED), "missing"),
                               ("column", '%s."%s"' % (quoted, HOSTILE.replace('"', '""') + "2"), "unexpected")}, r
    by = {d["what"]: d for d in r["drift"]}
    assert by["missing"]["path"][-2:] == [HOSTILE, MIXED]
    statements = [s["statement"] for s in r["sql"]]
    assert len(statements) == 2 and all(t in s for s in statements), statements
    assert catalog(db) == before and gone(db, r)
    for s in statements:  # the generated statements are quoted right: they run, and touch only these columns
        db.execute(s)
    r = diff(ansible, db, **args)
    assert r["in_sync"] is True, r["drift"]


# --------------------------------------------------------------------------
# snapshots: round trip, across databases and servers, check mode, the file's rules
# --------------------------------------------------------------------------

SIMPLE = ("CREATE TABLE users (id int PRIMARY KEY, email varchar(100) NOT NULL);\n"
          "CREATE INDEX users_email_idx ON users (email);\n"
          "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users (id));")


def test_snapshot_round_trip(ansible, db, tmp_path):
    mig = migrations_dir(tmp_path, {"20240101000001_init.sql": SIMPLE})
    apply(ansible, db, "dbmate", mig)
    dest = tmp_path / "snap.json"
    before = catalog(db)
    r = diff(ansible, db, check=True, snapshot_dest=str(dest))
    assert r["changed"] is True and not dest.exists()
    r = diff(ansible, db, snapshot_dest=str(dest))
    assert r["changed"] is True and dest.exists()
    assert (dest.stat().st_mode & 0o777) == 0o600
    data = json.loads(dest.read_text())
    assert data["format_version"] == 1 and data["engine"] == db.engine and data["version"]
    kinds = {(o["kind"], o["path"][-1]) for o in data["objects"]}
    assert ("table", "users") in kinds and ("index", "users_email_idx") in kinds
    assert not any(o["path"][-1] == "schema_migrations" for o in data["objects"])  # the history table: left out
    r = diff(ansible, db, snapshot_dest=str(dest))
    assert r["changed"] is False  # the same schema: the file is left as it is
    r = diff(ansible, db, reference="snapshot", snapshot=str(dest))
    assert r["in_sync"] is True and r["drift"] == []
    # another database of the same schema (on the same server) against the snapshot: in sync
    other = db.server.create_database()
    try:
        odb = type(db)(db.server, other)
        apply(ansible, odb, "dbmate", mig)
        r = diff(ansible, odb, reference="snapshot", snapshot=str(dest))
        assert r["in_sync"] is True, r["drift"]
        r = diff(ansible, db, reference="database", reference_database=other)
        assert r["in_sync"] is True, r["drift"]
        odb.execute("ALTER TABLE users ADD COLUMN extra int")
        r = diff(ansible, odb, reference="snapshot", snapshot=str(dest))
        assert entries(r) == [("column", "users.extra", "unexpected")]
        r = diff(ansible, db, reference="database", reference_database=other)
        assert entries(r) == [("column", "users.extra", "missing")]
        assert r["sql"][0]["statement"].endswith('ADD COLUMN %s int%s' % (
            qi(db, "extra"), "(11) NULL" if db.engine == "mysql" else "")) or "extra" in r["sql"][0]["statement"]
    finally:
        db.server.drop_database(other)
    assert catalog(db) == before


def test_snapshot_across_pg15_and_pg16(ansible, servers, tmp_path):
    from conftest import DB, _server  # pylint: disable=import-outside-toplevel
    pg15, pg16 = _server(servers, "pg15"), _server(servers, "pg16")
    mig = migrations_dir(tmp_path, {"20240101000001_init.sql": PG_SCHEMA})
    dbs = [DB(pg15, pg15.create_database()), DB(pg16, pg16.create_database())]
    try:
        for d in dbs:
            apply(ansible, d, "dbmate", mig)
        dest = tmp_path / "pg15.json"
        diff(ansible, dbs[0], snapshot_dest=str(dest))
        r = diff(ansible, dbs[1], reference="snapshot", snapshot=str(dest))
        assert r["in_sync"] is True, r["drift"]
        assert json.loads(dest.read_text())["version"].startswith("15.")
    finally:
        for d in dbs:
            d.server.drop_database(d.name)


def test_snapshot_in_sync_sqlite(ansible, sqlite_db, tmp_path):
    mig = migrations_dir(tmp_path, {"20240101000001_init.sql": SIMPLE})
    apply(ansible, sqlite_db, "dbmate", mig)
    dest = tmp_path / "snap.json"
    before = catalog(sqlite_db)
    diff(ansible, sqlite_db, snapshot_dest=str(dest))
    r = diff(ansible, sqlite_db, reference="snapshot", snapshot=str(dest))
    assert r["in_sync"] is True
    assert catalog(sqlite_db) == before


def test_snapshot_dest_symlink_refused(ansible, sqlite_db, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    r = diff(ansible, sqlite_db, fail=True, snapshot_dest=str(link))
    assert "symbolic link" in r["msg"]
    assert target.read_text() == "keep" and link.is_symlink()
    r = diff(ansible, sqlite_db, fail=True, reference="snapshot", snapshot=str(link))
    assert "symbolic link" in r["msg"]


HOSTILE_SNAPSHOTS = [
    ("not json {", "is not JSON"),
    ("[]", "a list, not an object"),
    ('{"format_version": 2, "engine": "sqlite", "objects": []}', "format_version"),
    ('{"format_version": 1, "engine": "oracle", "objects": []}', "'oracle' is not one of"),
    ('{"format_version": 1, "engine": "sqlite", "objects": {}}', "objects: must be a list"),
    ('{"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table; DROP", "path": ["t"], "attrs": {}}]}',
     "objects[0].kind"),
    ('{"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": [1], "attrs": {}}]}',
     "objects[0].path[0]"),
    ('{"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": ["t"], '
     '"attrs": {"comment": [[1]]}}]}', "nested list"),
    ('{"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": ["t"], '
     '"attrs": {"Bad Key": 1}}]}', "attribute name"),
    ('{"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": ["t"], "attrs": {}, '
     '"extra": 1}]}', "unknown key"),
    ("[" * 100000 + "]" * 100000, "too deeply"),
    ('{"format_version": 1, "engine": "postgresql", "objects": []}', "is of a postgresql database"),
]


def test_hostile_snapshot_files(ansible, sqlite_db, tmp_path):
    before = catalog(sqlite_db)
    for i, (text, message) in enumerate(HOSTILE_SNAPSHOTS):
        path = tmp_path / ("hostile-%d.json" % i)
        path.write_text(text)
        r = diff(ansible, sqlite_db, fail=True, reference="snapshot", snapshot=str(path))
        assert message in r["msg"], (i, r["msg"])
    assert catalog(sqlite_db) == before


def test_hostile_snapshot_definitions_not_returned_as_sql(ansible, pg_db, tmp_path):
    # a snapshot is input: an index definition that smuggles a second statement is reported, never returned as sql
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, a int)")
    dest = tmp_path / "snap.json"
    diff(ansible, pg_db, snapshot_dest=str(dest))
    data = json.loads(dest.read_text())
    data["objects"].append({"kind": "index", "path": ["public", "t", "t_a_idx"], "parent": ["public", "t"],
                            "attrs": {"columns": ["a"], "unique": False, "valid": True,
                                      "definition": "CREATE INDEX t_a_idx ON public.t (a); DROP TABLE t"}})
    data["objects"].append({"kind": "column", "path": ["public", "t", "b"], "parent": ["public", "t"],
                            "attrs": {"type": "int; DROP TABLE t; --", "nullable": True}})
    dest.write_text(json.dumps(data))
    r = diff(ansible, pg_db, reference="snapshot", snapshot=str(dest))
    assert set(entries(r)) == {("index", "t.t_a_idx", "missing"), ("column", "t.b", "missing")}
    assert r["sql"] == [], r["sql"]
    reasons = [n["reason"] for n in r["not_expressed"] if n["what"] == "sql"]
    assert len(reasons) == 2 and all("does not parse as exactly one" in x for x in reasons), r["not_expressed"]
    assert pg_db.query("SELECT count(*) FROM t") == [(0,)]


# --------------------------------------------------------------------------
# bad references and bad options: a clear error, nothing created
# --------------------------------------------------------------------------

def test_bad_references(ansible, db, tmp_path):
    before = catalog(db)
    cases = [
        (dict(reference="migrations", tool="dbmate", migrations_path=str(tmp_path / "nope")), "is not a directory"),
        (dict(reference="migrations", tool="dbmate"), "needs tool and migrations_path"),
        (dict(reference="migrations", tool="alembic", migrations_path=str(tmp_path)), "migrations are code"),
        (dict(reference="migrations", tool="alembic", migrations_path=str(tmp_path), command=["alembic", "upgrade"],
              environment={"DATABASE_URL": "postgresql://app:s3cr3t-env-pw@prod/app"}), "names no shadow token"),
        (dict(reference="migrations", tool="dbmate", migrations_path=str(tmp_path), command=["dbmate", "up"]),
         "command replays a code tool"),
        (dict(reference="migrations", tool="alembic", migrations_path=str(tmp_path), command=[""],
              environment={"U": "{shadow_url}"}), "non-empty argv"),
        (dict(reference="migrations", tool="alembic", migrations_path=str(tmp_path), command=["alembic"],
              environment={"U": "{shadow_url}"}, command_timeout=0), "command_timeout must be more"),
        (dict(reference="migrations", tool="dbmate", migrations_path=str(tmp_path),
              environment={"U": "{shadow_url}"}), "chdir and environment are for command"),
        (dict(reference="snapshot"), "needs snapshot"),
        (dict(reference="snapshot", snapshot=str(tmp_path / "missing.json")), "Cannot read the snapshot file"),
        (dict(reference="database"), "needs reference_database"),
        (dict(reference="database", reference_database="dbops_no_such_db"), "dbops_no_such_db"),
        (dict(), "Give reference"),
        (dict(reference="nonsense"), "value of reference must be one of"),
        (dict(reference="migrations", tool="dbmate", migrations_path=str(tmp_path), include_drops="maybe"),
         "include_drops"),
        (dict(reference="migrations", tool="dbmate", migrations_path=str(tmp_path), shadow_lock_timeout=-1),
         "shadow_lock_timeout"),
        (dict(reference="migrations", tool="dbmate", migrations_path=str(tmp_path), ignore=[""]),
         "non-empty"),
    ]
    if db.engine != "sqlite":
        cases.append((dict(reference="migrations", tool="dbmate", migrations_path=str(tmp_path),
                           shadow_login_user="dbops_no_such_user", shadow_login_password="s3cr3t-shadow-pw"),
                      "dbops_no_such_user"))
    names = shadows(db)
    for args, message in cases:
        r = diff(ansible, db, fail=True, **args)
        assert message in r["msg"], (args, r["msg"])
        assert "s3cr3t-shadow-pw" not in json.dumps(r) and "s3cr3t-env-pw" not in json.dumps(r)
    assert catalog(db) == before
    assert shadows(db) == names or db.engine == "sqlite"


# --------------------------------------------------------------------------
# code-migration tools: replayed with the application's own command (alembic), told the shadow
# --------------------------------------------------------------------------

ALEMBIC = Path(os.environ.get("DBOPS_CONFORMANCE_DIR", Path(__file__).resolve().parents[2] / "build" / "conformance")) \
    / "venv" / "bin" / "alembic"
ALEMBIC_ENV = """import os
from alembic import context
from sqlalchemy import create_engine, pool
# as applications do: the URL from the environment, with the driver this venv has
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1).replace("mysql://", "mysql+pymysql://", 1)
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""


def alembic_project(tmp_path, revisions):
    proj = tmp_path / "alembic_proj"
    versions = proj / "alembic" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (proj / "alembic.ini").write_text("[alembic]\nscript_location = alembic\n")
    (proj / "alembic" / "env.py").write_text(ALEMBIC_ENV)
    (proj / "alembic" / "script.py.mako").write_text("")
    down = None
    for rev, table in revisions:
        (versions / ("%s.py" % rev)).write_text(
            "from alembic import op\nimport sqlalchemy as sa\nrevision = %r\ndown_revision = %r\n"
            "branch_labels = None\ndepends_on = None\n"
            "def upgrade():\n    op.create_table(%r, sa.Column('id', sa.Integer, primary_key=True), "
            "sa.Column('name', sa.String(40), nullable=False))\n"
            "def downgrade():\n    op.drop_table(%r)\n" % (rev, down, table, table))
        down = rev
    return proj, versions


def url_of(db):
    from urllib.parse import quote  # pylint: disable=import-outside-toplevel
    p = db.params
    if db.engine == "sqlite":
        return "sqlite:///" + p["database"]
    scheme = "postgresql" if db.engine == "postgresql" else "mysql"
    return "%s://%s:%s@%s:%s/%s" % (scheme, quote(p["login_user"], safe=""), quote(p["login_password"], safe=""),
                                    p["login_host"], p["login_port"], p["database"])


def test_code_tool_replay_alembic(ansible, db, tmp_path):
    """The real alembic replays its migrations into the shadow (told by {shadow_url}): in sync after a clean
    upgrade, a column added by hand is drift, the shadow is gone, the target untouched; a command that migrates
    the target instead (its environment names production) fails loudly."""
    alembic_replay(ansible, db, tmp_path)


def test_code_tool_replay_alembic_sqlite(ansible, sqlite_db, tmp_path):
    alembic_replay(ansible, sqlite_db, tmp_path)


def test_code_tool_replay_killed_after_command_timeout_drops_the_shadow(ansible, db, tmp_path):
    """A fault mid-way: the command hangs, command_timeout kills it, the run fails naming it, the shadow is gone."""
    names = shadows(db)
    versions = tmp_path / "versions"
    versions.mkdir()
    r = diff(ansible, db, fail=True, reference="migrations", tool="alembic", migrations_path=str(versions),
             command=["sleep", "60"], command_timeout=1, environment={"DATABASE_URL": "{shadow_url}"})
    assert "did not finish within command_timeout=1" in r["msg"] and "shadow database is dropped" in r["msg"], r["msg"]
    assert r["shadow"]["dropped"] is True and shadows(db) == names
    assert db.params["login_password"] not in json.dumps(r)


def alembic_replay(ansible, d, tmp_path):
    if not ALEMBIC.exists():
        pytest.skip("alembic is not installed (%s): run scripts/install-conformance-tools.sh" % ALEMBIC)
    proj, versions = alembic_project(tmp_path, [("001_users", "users"), ("002_orders", "orders")])
    up = [str(ALEMBIC), "upgrade", "head"]
    apply(ansible, d, "alembic", versions, command=up, chdir=str(proj), environment={"DATABASE_URL": url_of(d)},
          create_table=False)
    replay = dict(reference="migrations", tool="alembic", migrations_path=str(versions), command=up,
                  chdir=str(proj), environment={"DATABASE_URL": "{shadow_url}"})
    before = catalog(d)
    r = diff(ansible, d, **replay)
    assert r["in_sync"] is True, (r["summary"], r.get("drift"))
    assert r["shadow"]["applied"] == ["001_users", "002_orders"] and r["shadow"]["command"]["rc"] == 0, r["shadow"]
    assert d.engine == "sqlite" or gone(d, r)
    assert catalog(d) == before
    if d.engine != "sqlite":
        assert d.params["login_password"] not in json.dumps(r)
    d.execute("ALTER TABLE users ADD COLUMN note varchar(20)")
    r = diff(ansible, d, **replay)
    assert r["in_sync"] is False and [(x["kind"], x["name"], x["what"]) for x in r["drift"]] == [
        ("column", "users.note", "unexpected")], r["drift"]
    # the command's environment names the target: it migrates it, and schema_diff says so loudly
    alembic_project(tmp_path, [("001_users", "users"), ("002_orders", "orders"), ("003_items", "items")])
    wrong = {**replay, "environment": {"DATABASE_URL": url_of(d), "DBOPS_UNUSED": "{shadow_database}"}}
    r = diff(ansible, d, fail=True, **wrong)
    assert "command changed the database" in r["msg"] and "1 table unexpected (items)" in r["msg"], r["msg"]
    if d.engine != "sqlite":
        assert d.params["login_password"] not in json.dumps(r)


# --------------------------------------------------------------------------
# migration_status drift: true
# --------------------------------------------------------------------------

def test_migration_status_drift(ansible, db, tmp_path):
    mig = migrations_dir(tmp_path, {"20240101000001_init.sql": SIMPLE})
    apply(ansible, db, "dbmate", mig)
    args = {**db.params, "tool": "dbmate", "migrations_path": str(mig), "drift": True}
    r = ansible.run("dbops.maintenance.migration_status", args, unsafe_args=True)
    assert r["drift"]["in_sync"] is True and r["drift_summary"] == "schema: in sync: no differences"
    assert r["summary"].endswith("; schema: in sync: no differences"), r["summary"]
    db.execute("ALTER TABLE users ADD COLUMN note varchar(10)")
    r = ansible.run("dbops.maintenance.migration_status", args, unsafe_args=True)
    assert r["drift_summary"] == "schema: 1 difference: 1 column unexpected (users.note)"
    assert r["clean"] is True  # the history is clean; the schema is not
    assert gone(db, r["drift"])
    r = ansible.run("dbops.maintenance.migration_status", {**args, "migrations_path": None}, unsafe_args=True,
                    expect_failure=True)
    assert "drift: true needs migrations_path" in r["msg"]
