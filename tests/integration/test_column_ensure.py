"""dbops.maintenance.column_ensure through ansible-playbook against real servers.

Engines: PostgreSQL 15 and 16, MariaDB 10.11 (``db`` / ``pg_db`` / ``mysql_db``) and SQLite
(``sqlite_db``).  Every test checks the catalog itself (not only ``changed``), and every
refusal or check-mode run is checked against a snapshot of the catalog taken before it.
"""

from __future__ import annotations

import re

import pytest


MODULE = "dbops.maintenance.column_ensure"

HOSTILE_TABLE = 'we"ird; DROP TABLE x; --'
HOSTILE_COLUMN = "colonne é ü"
HOSTILE_COLUMN2 = 'Back`tick "quoted"; DROP TABLE x; --'
BACKTICK = "Back`tick"
HOSTILE_COMMENT = "l'été; DROP TABLE x; -- 100% \"sûr\""
INVALID_TYPE = "int); drop table t; --"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def is_pg(db):
    return db.engine == "postgresql"


def is_mysql(db):
    return db.engine == "mysql"


def qi(db, name):
    """Quote an identifier for the test's own SQL."""
    if is_mysql(db):
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def ensure(ansible, db, check=False, diff=False, fail=False, **args):
    """Run column_ensure on ``db``; ``fail``: True/False asserts the task failed/succeeded."""
    return ansible.run(MODULE, {**db.params, **args}, check=check, diff=diff,
                       expect_failure=fail, unsafe_args=True)


def columns(db, table):
    """{name: dict(type, nullable, default, comment)} of ``table`` as the catalog has it
    (names exact: compared in Python, whatever the server's collation)."""
    if is_pg(db):
        rows = db.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum) "
            "FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE n.nspname = 'public' AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum", (table,))
    elif is_mysql(db):
        rows = [r[1:] for r in db.query(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', COLUMN_DEFAULT, "
            "NULLIF(COLUMN_COMMENT, '') FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION") if r[0] == table]
        # MariaDB shows "no default" of a nullable column as the string NULL.
        rows = [(n, t, bool(nl), None if d == "NULL" else d, c) for n, t, nl, d, c in rows]
    else:
        rows = [(n, t, not nn, d, None) for n, t, nn, d in db.query(
            'SELECT name, type, "notnull", dflt_value FROM pragma_table_info(?)', (table,))]
    return {r[0]: dict(type=r[1], nullable=bool(r[2]), default=r[3], comment=r[4]) for r in rows}


def tables(db):
    if is_pg(db):
        return sorted(r[0] for r in db.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    if is_mysql(db):
        return sorted(r[0] for r in db.query(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"))
    return sorted(r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'"))


PG_SNAPSHOT = [
    # every relation outside the system schemas, temporary schemas included: a probe table left
    # behind would show here; relfilenode changes on a rewrite, xmin on any committed change
    "SELECT n.nspname, c.relname, c.relkind, c.relfilenode, c.relnatts, c.xmin::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    "SELECT nspname, xmin::text FROM pg_namespace ORDER BY 1",
    "SELECT a.attrelid::regclass::text, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), "
    "a.attnotnull, a.atthasdef, a.atthasmissing, a.attmissingval::text, a.attisdropped, a.xmin::text "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2",
    "SELECT adrelid::regclass::text, adnum, pg_get_expr(adbin, adrelid), xmin::text FROM pg_attrdef "
    "WHERE adrelid >= 16384 ORDER BY 1, 2",
    "SELECT objoid::regclass::text, objsubid, description FROM pg_description "
    "WHERE classoid = 'pg_class'::regclass AND objoid >= 16384 ORDER BY 1, 2",
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid >= 16384 ORDER BY 1, 2",
    "SELECT count(*) FROM pg_class WHERE oid >= 16384",
    "SELECT count(*) FROM pg_type WHERE oid >= 16384",
    "SELECT table_schema, table_name, column_name, ordinal_position, column_default, is_nullable, "
    "data_type, character_maximum_length, udt_name FROM information_schema.columns "
    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 4",
]


def _fetch_all(conn, sql):
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


def snapshot(db):
    """The database's schema as text: PostgreSQL catalogs (pg_class, pg_attribute, ...,
    information_schema.columns), MariaDB SHOW CREATE TABLE of every table + COLUMNS,
    SQLite sqlite_master + schema_version.  One connection, so it is cheap to take often."""
    conn = db.connect()
    try:
        if is_pg(db):
            parts = [_fetch_all(conn, q) for q in PG_SNAPSHOT]
        elif is_mysql(db):
            names = [r[0] for r in _fetch_all(
                conn, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                      "ORDER BY TABLE_NAME")]
            parts = [names] + [_fetch_all(conn, "SHOW CREATE TABLE " + qi(db, n)) for n in names]
            parts.append(_fetch_all(
                conn, "SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, "
                      "COLUMN_COMMENT, EXTRA, COLLATION_NAME FROM information_schema.COLUMNS "
                      "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION"))
        else:
            parts = [_fetch_all(conn, "PRAGMA schema_version"),
                     _fetch_all(conn, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")]
    finally:
        conn.close()
    text = "\n".join(repr(p) for p in parts)
    assert len(text) > 40, text
    return text


def pg_probe_leftovers(db):
    """Relations the PostgreSQL probe could leave behind, in any schema (temporary ones included)."""
    return db.query("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relname LIKE 'dbops%' OR n.nspname LIKE 'pg\\_temp%'")


def relfilenode(db, table):
    return db.query("SELECT relfilenode FROM pg_class WHERE oid = %s::regclass",
                    ("public." + qi(db, table),))[0][0]


def show_create(db, table):
    return db.query("SHOW CREATE TABLE " + qi(db, table))[0][1]


def assert_refused(result, *fragments):
    """A clean refusal: failed, nothing ran, no traceback-style 'Unexpected error'."""
    assert result.failed, result
    assert result.get("queries") == [], result
    msg = result["msg"]
    assert "Unexpected error" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# --------------------------------------------------------------------------
# add a missing column; second run changes nothing
# --------------------------------------------------------------------------

def test_missing_column_is_added_exactly_once(db, ansible):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    db.execute("INSERT INTO t (id) VALUES (1), (2), (3)")
    args = dict(table="t", column="status", type="varchar(191)", nullable=False,
                default="'pending'", comment="Shipment status")
    if is_pg(db):
        expected_queries = [
            """ALTER TABLE "public"."t" ADD COLUMN "status" varchar(191) NOT NULL DEFAULT 'pending'""",
            """COMMENT ON COLUMN "public"."t"."status" IS 'Shipment status'""",
        ]
        expected = dict(type="character varying(191)", nullable=False,
                        default="'pending'::character varying", comment="Shipment status")
        node = relfilenode(db, "t")
    else:
        expected_queries = ["ALTER TABLE `t` ADD COLUMN `status` varchar(191) NOT NULL DEFAULT 'pending' "
                            "COMMENT 'Shipment status', ALGORITHM=INSTANT"]
        expected = dict(type="varchar(191)", nullable=False, default="'pending'", comment="Shipment status")

    before = snapshot(db)
    check = ensure(ansible, db, check=True, **args)
    assert check["changed"] is True
    assert check["queries"] == expected_queries
    assert snapshot(db) == before, "check mode changed the catalog"
    assert "status" not in columns(db, "t")
    if is_pg(db):
        assert pg_probe_leftovers(db) == []

    first = ensure(ansible, db, **args)
    assert first["changed"] is True
    assert first["queries"] == expected_queries == check["queries"]
    cols = columns(db, "t")
    assert list(cols) == ["id", "status"]
    assert cols["status"] == expected
    assert first["column"]["type"] == expected["type"]
    assert first["column"]["nullable"] is False
    assert db.query("SELECT count(*) FROM t WHERE status = 'pending'") == [(3,)]
    if is_pg(db):
        # NOT NULL + constant default is metadata-only on PostgreSQL 11+: no rewrite
        assert relfilenode(db, "t") == node
        assert db.query("SELECT atthasmissing FROM pg_attribute WHERE attrelid = 'public.t'::regclass "
                        "AND attname = 'status'") == [(True,)]

    after_first = snapshot(db)
    second = ensure(ansible, db, **args)
    assert second["changed"] is False
    assert second["queries"] == []
    assert snapshot(db) == after_first


def test_missing_column_is_added_exactly_once_sqlite(sqlite_db, ansible):
    db = sqlite_db
    db.execute("CREATE TABLE t (id integer PRIMARY KEY)")
    db.execute("INSERT INTO t (id) VALUES (1), (2), (3)")
    args = dict(table="t", column="status", type="varchar(191)", nullable=False, default="'pending'")
    expected_queries = ["""ALTER TABLE "t" ADD COLUMN "status" varchar(191) NOT NULL DEFAULT 'pending'"""]

    before = snapshot(db)
    check = ensure(ansible, db, check=True, **args)
    assert check["changed"] is True
    assert check["queries"] == expected_queries
    assert snapshot(db) == before

    first = ensure(ansible, db, **args)
    assert first["changed"] is True
    assert first["queries"] == expected_queries
    assert columns(db, "t")["status"] == dict(
        type="varchar(191)", nullable=False, default="'pending'", comment=None)
    assert """"status" varchar(191) NOT NULL DEFAULT 'pending'""" in \
        db.query("SELECT sql FROM sqlite_master WHERE name = 't'")[0][0]
    assert db.query("SELECT count(*) FROM t WHERE status = 'pending'") == [(3,)]

    after_first = snapshot(db)
    second = ensure(ansible, db, **args)
    assert second["changed"] is False
    assert second["queries"] == []
    assert snapshot(db) == after_first


# --------------------------------------------------------------------------
# comparison after the server's own normalisation
# --------------------------------------------------------------------------

def _assert_all_unchanged(ansible, db, cases):
    before = snapshot(db)
    for args in cases:
        res = ensure(ansible, db, **args)
        assert res["changed"] is False, args
        assert res["queries"] == [], args
        assert "differences" not in res, (args, res.get("differences"))
    assert snapshot(db) == before


def test_normalisation_postgresql(pg_db, ansible):
    # (varchar(191) asked against the stored "character varying(191)": second run of the add test)
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, a int4 NOT NULL DEFAULT 0, b integer)")
    _assert_all_unchanged(ansible, pg_db, [
        dict(table="t", column="a", type="int", nullable=False, default="0"),
        dict(table="t", column="b", type="int4"),
    ])
    assert columns(pg_db, "t")["a"]["type"] == columns(pg_db, "t")["b"]["type"] == "integer"


def test_normalisation_mariadb(mysql_db, ansible):
    mysql_db.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL DEFAULT 0)")
    assert columns(mysql_db, "t")["a"]["type"] == "int(11)"
    _assert_all_unchanged(ansible, mysql_db, [
        dict(table="t", column="a", type="INT(11)", nullable=False, default="'0'"),
    ])


def test_normalisation_sqlite(sqlite_db, ansible):
    sqlite_db.execute("CREATE TABLE t (id integer PRIMARY KEY, a VARCHAR( 191 ) NOT NULL DEFAULT 0)")
    _assert_all_unchanged(ansible, sqlite_db, [
        dict(table="t", column="a", type="  varchar(191) ", nullable=False, default=" 0 "),
    ])


# --------------------------------------------------------------------------
# the seed case: a migration already added shipmentFile
# --------------------------------------------------------------------------

def test_seed_shipment_file_already_added_by_migration(mysql_db, ansible):
    db = mysql_db
    db.execute("CREATE TABLE shipment_records (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, "
               "status varchar(32) NOT NULL DEFAULT 'new')")
    db.execute("INSERT INTO shipment_records (status) VALUES ('new'), ('sent')")
    db.execute("ALTER TABLE shipment_records ADD COLUMN shipmentFile varchar(191) NULL")
    create = show_create(db, "shipment_records")

    same = ensure(ansible, db, table="shipment_records", column="shipmentFile", type="varchar(191)",
                  nullable=True)
    assert same["changed"] is False
    assert same["queries"] == []
    assert same["column"]["type"] == "varchar(191)"

    other = ensure(ansible, db, fail=True, table="shipment_records", column="shipmentFile",
                   type="varchar(255)", nullable=True)
    msg = assert_refused(other, "`shipment_records`.`shipmentFile`", "exists with another definition",
                         "alter: true")
    assert re.search(r"current:\s+varchar\(191\) NULL", msg), msg
    assert re.search(r"wanted:\s+varchar\(255\) NULL", msg), msg
    assert other["differences"] == ["type"]
    assert show_create(db, "shipment_records") == create
    assert db.query("SELECT count(*) FROM shipment_records") == [(2,)]


# --------------------------------------------------------------------------
# alter: true
# --------------------------------------------------------------------------

def test_alter_type_default_comment_then_nullability(db, ansible):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, code varchar(10) NULL)")
    db.execute("INSERT INTO t (id, code) VALUES (1, 'a'), (2, 'b')")
    if is_pg(db):
        t10, t20, default_z = "character varying(10)", "character varying(20)", "'z'::character varying"
        change_queries = [
            """ALTER TABLE "public"."t" ALTER COLUMN "code" TYPE varchar(20), ALTER COLUMN "code" SET DEFAULT 'z'""",
            """COMMENT ON COLUMN "public"."t"."code" IS 'Code'""",
        ]
        node = relfilenode(db, "t")
    else:
        t10, t20, default_z = "varchar(10)", "varchar(20)", "'z'"
        change_queries = ["ALTER TABLE `t` MODIFY COLUMN `code` varchar(20) NULL DEFAULT 'z' COMMENT 'Code', "
                          "ALGORITHM=INSTANT"]
    before = snapshot(db)

    # without alter: refused with the difference, nothing changed
    refused = ensure(ansible, db, fail=True, table="t", column="code", type="varchar(20)", nullable=False,
                     default="'z'", comment="Code")
    msg = assert_refused(refused, "exists with another definition", "alter: true")
    assert refused["differences"] == ["type", "nullable", "default", "comment"]
    assert re.search(r"current:\s+%s NULL" % re.escape(t10), msg), msg
    assert re.search(r"wanted:\s+%s NOT NULL" % re.escape(t20), msg), msg
    assert snapshot(db) == before

    # type + default + comment: check mode, then the real run with --diff
    args = dict(table="t", column="code", type="varchar(20)", default="'z'", comment="Code", alter=True)
    check = ensure(ansible, db, check=True, **args)
    assert check["changed"] is True
    assert check["differences"] == ["type", "default", "comment"]
    assert check["queries"] == change_queries
    assert snapshot(db) == before

    real = ensure(ansible, db, diff=True, **args)
    assert real["changed"] is True
    assert real["queries"] == change_queries
    assert columns(db, "t")["code"] == dict(type=t20, nullable=True, default=default_z, comment="Code")
    diff = real["diff"]
    assert diff["before"]["type"] == t10 and diff["after"]["type"] == t20
    assert diff["before"]["comment"] is None and diff["after"]["comment"] == "Code"
    assert diff["before"]["default"] is None and diff["after"]["default"] is not None
    assert diff["before"]["nullable"] is True and diff["after"]["nullable"] is True
    if is_pg(db):
        assert diff["after"]["default"] == default_z
        # varchar(10) -> varchar(20) needs no rewrite, and no allow_rewrite
        assert relfilenode(db, "t") == node
    assert db.query("SELECT code FROM t ORDER BY id") == [("a",), ("b",)]

    # nullability; default and comment are not given: left as they are
    args = dict(table="t", column="code", type="varchar(20)", nullable=False, alter=True)
    nn = ensure(ansible, db, diff=True, **args)
    assert nn["changed"] is True
    assert nn["differences"] == ["nullable"]
    if is_pg(db):
        # PostgreSQL 12+: the online NOT NULL sequence (online_ddl/not_null.py; tests/integration/test_online_not_null.py)
        assert nn["queries"][2:] == ["""ALTER TABLE "public"."t" ALTER COLUMN "code" SET NOT NULL""",
                                     nn["queries"][0].split(" CHECK ")[0].replace("ADD", "DROP")], nn["queries"]
        assert nn["queries"][1].startswith('ALTER TABLE "public"."t" VALIDATE CONSTRAINT "dbops_not_null_')
    else:
        assert len(nn["queries"]) == 1
        assert nn["queries"][0].startswith(
            "ALTER TABLE `t` MODIFY COLUMN `code` varchar(20) NOT NULL DEFAULT 'z' COMMENT 'Code', ALGORITHM=")
    assert nn["diff"]["before"]["nullable"] is True and nn["diff"]["after"]["nullable"] is False
    assert columns(db, "t")["code"] == dict(type=t20, nullable=False, default=default_z, comment="Code")


# --------------------------------------------------------------------------
# guards: each refusal leaves the schema exactly as it was
# --------------------------------------------------------------------------

def test_guards_refuse_and_change_nothing(db, ansible):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v int NULL)")
    db.execute("INSERT INTO t (id, v) VALUES (1, 10), (2, NULL), (3, 30)")
    db.execute("CREATE TABLE shipment_records (id int PRIMARY KEY)")
    before = snapshot(db)

    res = ensure(ansible, db, fail=True, table="t", column="n", type="int", nullable=False)
    assert_refused(res, "NOT NULL without a default", "has 3 row(s)")
    assert res["row_count"] == 3
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="t", column="v", type="int", nullable=False, alter=True)
    assert_refused(res, "Cannot make", "1 row(s) have NULL")
    assert res["null_count"] == 1
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="t", column="v", state="absent")
    assert_refused(res, "allow_drop: true", "Nothing was changed")
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="shipment_record", column="v", type="int")
    assert_refused(res, "does not exist", "Similar names found: shipment_records")
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="t", column="evil", type=INVALID_TYPE)
    msg = assert_refused(res)
    assert "syntax" in msg.lower(), msg
    assert snapshot(db) == before
    assert tables(db) == ["shipment_records", "t"]
    assert db.query("SELECT count(*) FROM t") == [(3,)]


def test_guards_refuse_and_change_nothing_sqlite(sqlite_db, ansible):
    db = sqlite_db
    db.execute("CREATE TABLE t (id integer PRIMARY KEY, v int NULL)")
    db.execute("INSERT INTO t (id, v) VALUES (1, 10), (2, NULL), (3, 30)")
    db.execute("CREATE TABLE shipment_records (id integer PRIMARY KEY)")
    before = snapshot(db)

    # SQLite refuses NOT NULL without default whatever the row count: no count in the message
    res = ensure(ansible, db, fail=True, table="t", column="n", type="int", nullable=False)
    assert_refused(res, "NOT NULL without a default")
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="t", column="v", type="int", nullable=False, alter=True)
    assert_refused(res, "SQLite cannot change an existing column", "nullable", "rebuilding the table")
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="t", column="v", type="int", comment="hello")
    assert_refused(res, "SQLite has no column comments")
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="t", column="v", state="absent")
    assert_refused(res, "allow_drop: true", "Nothing was changed")
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="shipment_record", column="v", type="int")
    assert_refused(res, "does not exist", "Similar names found: shipment_records")
    assert snapshot(db) == before

    res = ensure(ansible, db, fail=True, table="t", column="evil", type=INVALID_TYPE)
    msg = assert_refused(res)
    assert "syntax" in msg.lower(), msg
    assert snapshot(db) == before
    assert tables(db) == ["shipment_records", "t"]
    assert db.query("SELECT count(*) FROM t") == [(3,)]


# --------------------------------------------------------------------------
# state: absent
# --------------------------------------------------------------------------

def _drop_flow(ansible, db, expected_queries):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v int NULL)")
    db.execute("INSERT INTO t (id, v) VALUES (1, 10), (2, 20)")
    args = dict(table="t", column="v", state="absent", allow_drop=True)
    before = snapshot(db)

    check = ensure(ansible, db, check=True, **args)
    assert check["changed"] is True
    assert check["queries"] == expected_queries
    assert snapshot(db) == before
    assert "v" in columns(db, "t")

    real = ensure(ansible, db, **args)
    assert real["changed"] is True
    assert real["queries"] == expected_queries == check["queries"]
    assert real["column"] is None
    assert list(columns(db, "t")) == ["id"]
    assert db.query("SELECT id FROM t ORDER BY id") == [(1,), (2,)]

    dropped = snapshot(db)
    again = ensure(ansible, db, **args)
    assert again["changed"] is False
    assert again["queries"] == []
    assert snapshot(db) == dropped


def test_drop_column(db, ansible):
    if is_pg(db):
        expected = ['ALTER TABLE "public"."t" DROP COLUMN "v"']
    else:
        expected = ["ALTER TABLE `t` DROP COLUMN `v`, ALGORITHM=INSTANT"]
    _drop_flow(ansible, db, expected)


def test_drop_column_sqlite(sqlite_db, ansible):
    _drop_flow(ansible, sqlite_db, ['ALTER TABLE "t" DROP COLUMN "v"'])


# --------------------------------------------------------------------------
# rewrites (PostgreSQL) and table copies (MariaDB)
# --------------------------------------------------------------------------

def test_pg_rewrites_need_allow_rewrite(pg_db, ansible):
    db = pg_db
    db.execute("CREATE TABLE t (id int PRIMARY KEY, n int, s text)")
    db.execute("INSERT INTO t VALUES (1, 1, '10'), (2, 2, '20'), (3, 3, '30')")
    before = snapshot(db)

    # refused, each leaving the catalog exactly as it was
    res = ensure(ansible, db, fail=True, table="t", column="ts", type="timestamptz", nullable=False,
                 default="clock_timestamp()")
    assert_refused(res, "volatile", "allow_rewrite: true")
    assert snapshot(db) == before

    to_text = dict(table="t", column="n", type="text", alter=True)
    res = ensure(ansible, db, fail=True, **to_text)
    assert_refused(res, "rewrites the whole table", "from integer to text", "allow_rewrite: true")
    assert snapshot(db) == before

    to_int = dict(table="t", column="s", type="int", using="s::integer", alter=True)
    res = ensure(ansible, db, fail=True, **to_int)
    assert_refused(res, "rewrites the whole table", "from text to integer", "allow_rewrite: true")
    assert snapshot(db) == before

    # allowed
    node = relfilenode(db, "t")
    res = ensure(ansible, db, allow_rewrite=True, table="t", column="r", type="float8", nullable=False,
                 default="random()")
    assert res["changed"] is True
    assert res["queries"] == ['ALTER TABLE "public"."t" ADD COLUMN "r" float8 NOT NULL DEFAULT random()']
    assert columns(db, "t")["r"] == dict(type="double precision", nullable=False, default="random()",
                                         comment=None)
    assert relfilenode(db, "t") != node, "a volatile default rewrites the table"
    # evaluated once per row (clock_timestamp() would do too, but rows can share a microsecond)
    assert db.query("SELECT count(DISTINCT r) FROM t") == [(3,)]

    node = relfilenode(db, "t")
    res = ensure(ansible, db, allow_rewrite=True, **to_text)
    assert res["changed"] is True
    assert res["queries"] == ['ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE text']
    assert columns(db, "t")["n"]["type"] == "text"
    assert relfilenode(db, "t") != node
    assert db.query("SELECT n FROM t ORDER BY id") == [("1",), ("2",), ("3",)]

    node = relfilenode(db, "t")
    res = ensure(ansible, db, allow_rewrite=True, **to_int)
    assert res["changed"] is True
    assert res["queries"] == ['ALTER TABLE "public"."t" ALTER COLUMN "s" TYPE int USING s::integer']
    assert columns(db, "t")["s"]["type"] == "integer"
    assert relfilenode(db, "t") != node
    assert db.query("SELECT s FROM t ORDER BY id") == [(10,), (20,), (30,)]


def test_mariadb_copy_needs_allow_rewrite(mysql_db, ansible):
    db = mysql_db
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v int NULL)")
    db.execute("INSERT INTO t VALUES (1, 10), (2, 20)")
    before = snapshot(db)
    args = dict(table="t", column="v", type="bigint", alter=True)

    res = ensure(ansible, db, fail=True, **args)
    assert_refused(res, "cannot do this change in place", "allow_rewrite: true", "Nothing was changed")
    assert snapshot(db) == before

    res = ensure(ansible, db, allow_rewrite=True, **args)
    assert res["changed"] is True
    assert res["queries"] == ["ALTER TABLE `t` MODIFY COLUMN `v` bigint NULL, ALGORITHM=COPY"]
    assert columns(db, "t")["v"] == dict(type="bigint(20)", nullable=True, default=None, comment=None)
    assert db.query("SELECT v FROM t ORDER BY id") == [(10,), (20,)]


# --------------------------------------------------------------------------
# names are names
# --------------------------------------------------------------------------

def _names_flow(ansible, db):
    """Hostile names and Prisma's mixed case are names: created exactly as written, nothing else touched."""
    for name in (HOSTILE_TABLE, BACKTICK, "x", "ExternalCredential"):
        db.execute("CREATE TABLE %s (id int PRIMARY KEY)" % qi(db, name))
    twin = db.engine != "sqlite"  # SQLite table names are case-insensitive: no twin possible there
    if twin:  # a lowercase twin the module must not touch
        db.execute("CREATE TABLE externalcredential (id int PRIMARY KEY)")
    db.execute("INSERT INTO x (id) VALUES (1)")
    comment = None if db.engine == "sqlite" else HOSTILE_COMMENT

    args = dict(table=HOSTILE_TABLE, column=HOSTILE_COLUMN, type="int", nullable=False, default="0")
    if comment:
        args["comment"] = comment
    assert ensure(ansible, db, **args)["changed"] is True
    assert ensure(ansible, db, table=BACKTICK, column=HOSTILE_COLUMN2, type="text")["changed"] is True
    if is_pg(db):
        prisma = dict(type="timestamp(3)", nullable=False, default="CURRENT_TIMESTAMP")
    elif is_mysql(db):
        prisma = dict(type="datetime(3)", nullable=False, default="CURRENT_TIMESTAMP(3)")
    else:
        prisma = dict(type="DATETIME")
    assert ensure(ansible, db, table="ExternalCredential", column="createdAt", **prisma)["changed"] is True

    expected_tables = [BACKTICK, "ExternalCredential", HOSTILE_TABLE, "x"] + (["externalcredential"] if twin else [])
    assert tables(db) == sorted(expected_tables)
    assert db.query("SELECT id FROM x") == [(1,)]
    cols = columns(db, HOSTILE_TABLE)
    assert list(cols) == ["id", HOSTILE_COLUMN]
    assert cols[HOSTILE_COLUMN]["nullable"] is False
    assert cols[HOSTILE_COLUMN]["comment"] == comment
    assert list(columns(db, BACKTICK)) == ["id", HOSTILE_COLUMN2]
    assert list(columns(db, "ExternalCredential")) == ["id", "createdAt"]
    if twin:
        assert list(columns(db, "externalcredential")) == ["id"]
    return columns(db, "ExternalCredential")["createdAt"]


def test_hostile_and_mixed_case_names(db, ansible):
    created_at = _names_flow(ansible, db)
    if is_pg(db):
        assert created_at == dict(type="timestamp(3) without time zone", nullable=False,
                                  default="CURRENT_TIMESTAMP", comment=None)
    else:
        assert created_at == dict(type="datetime(3)", nullable=False, default="current_timestamp(3)",
                                  comment=None)


def test_hostile_and_mixed_case_names_sqlite(sqlite_db, ansible):
    created_at = _names_flow(ansible, sqlite_db)
    assert created_at == dict(type="DATETIME", nullable=True, default=None, comment=None)


# --------------------------------------------------------------------------
# bugs found by these tests, now fixed
# --------------------------------------------------------------------------

def test_pg_empty_comment_means_no_comment(pg_db, ansible):
    db = pg_db
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    args = dict(table="t", column="c", type="text", comment="")
    assert ensure(ansible, db, **args)["changed"] is True
    assert columns(db, "t")["c"] == dict(type="text", nullable=True, default=None, comment=None)
    again = ensure(ansible, db, **args)
    assert again["changed"] is False
    assert again["queries"] == []


def test_default_null_matches_a_column_without_default(db, ansible, request):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, code varchar(10) NULL)")
    before = snapshot(db)
    res = ensure(ansible, db, table="t", column="code", type="varchar(10)", default="NULL")
    assert res["changed"] is False
    assert res["queries"] == []
    assert snapshot(db) == before


def test_default_null_removes_the_default(db, ansible, request):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO t (id, n) VALUES (1, 5)")
    res = ensure(ansible, db, table="t", column="n", type="int", nullable=False, default="NULL", alter=True)
    assert res["changed"] is True
    assert res["differences"] == ["default"]
    assert columns(db, "t")["n"]["default"] is None
    assert columns(db, "t")["n"]["nullable"] is False


def test_pg_incompatible_type_without_alter_is_refused_with_difference(pg_db, ansible):
    db = pg_db
    db.execute("CREATE TABLE t (id int PRIMARY KEY, code varchar(191) NULL)")
    db.execute("INSERT INTO t (id, code) VALUES (1, 'abc')")
    before = snapshot(db)
    res = ensure(ansible, db, fail=True, table="t", column="code", type="int")
    assert snapshot(db) == before
    msg = assert_refused(res)
    assert res.get("differences") == ["type"], msg
    assert "exists with another definition" in msg
    assert re.search(r"current:\s+character varying\(191\) NULL", msg), msg
    assert re.search(r"wanted:\s+integer NULL", msg), msg


def test_mariadb_check_mode_reports_the_not_null_statement_that_runs(mysql_db, ansible):
    """Only the server knows which ALGORITHM it accepts: check mode lists the first choice in queries and
    the fallbacks in alternatives; the statement the real run executes is one of them."""
    db = mysql_db
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v int NULL)")
    db.execute("INSERT INTO t VALUES (1, 10), (2, 20)")
    args = dict(table="t", column="v", type="int", nullable=False, alter=True)
    before = snapshot(db)
    check = ensure(ansible, db, check=True, **args)
    assert check["changed"] is True
    assert snapshot(db) == before
    real = ensure(ansible, db, **args)
    assert real["changed"] is True
    assert columns(db, "t")["v"]["nullable"] is False
    assert check["queries"][0].endswith("ALGORITHM=INSTANT")
    planned = check["queries"] + [a["statement"] for a in check["alternatives"]]
    assert [a["statement"] for a in check["alternatives"]] == [
        check["queries"][0].replace("ALGORITHM=INSTANT", "ALGORITHM=INPLACE, LOCK=NONE"),
        check["queries"][0].replace("ALGORITHM=INSTANT", "ALGORITHM=COPY")]
    assert check["alternatives"][1]["requires"] == "allow_rewrite"
    assert len(real["queries"]) == 1 and real["queries"][0] in planned


def test_mariadb_alter_keeps_auto_increment(mysql_db, ansible):
    db = mysql_db
    db.execute("CREATE TABLE t (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, v int NULL)")
    ensure(ansible, db, table="t", column="id", type="int", nullable=False, comment="pk", alter=True)
    line = [ln for ln in show_create(db, "t").splitlines() if ln.strip().startswith("`id`")][0]
    assert "COMMENT 'pk'" in line
    assert "AUTO_INCREMENT" in line, line


def test_mariadb_alter_keeps_collation(mysql_db, ansible):
    db = mysql_db
    db.execute("CREATE TABLE t (id int PRIMARY KEY, status varchar(20) COLLATE utf8mb4_bin NOT NULL "
               "DEFAULT 'new')")
    ensure(ansible, db, table="t", column="status", type="varchar(20)", nullable=False, comment="st",
           alter=True)
    assert db.query("SELECT COLUMN_COMMENT, COLLATION_NAME FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' AND COLUMN_NAME = 'status'") \
        == [("st", "utf8mb4_bin")]
