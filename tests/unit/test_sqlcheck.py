"""sqlcheck: SQL-valued options are exactly one expression / one reading query, per engine (no server needed;
the integration tests in tests/integration/test_adversarial_sql.py run the same cases through Ansible)."""

from __future__ import annotations

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.sqlcheck import SqlRefused

ENGINES = ["postgresql", "mysql", "sqlite"]
DEEP = "(" * 100000 + "1" + ")" * 100000


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", ["0", "'pending'", "42.5", "-1", "CURRENT_TIMESTAMP", "lower('A')", "(1 + 2)",
                                  "'it''s; -- not a comment'"])
def test_expressions_accepted(engine, text):
    assert sqlcheck.expression(text, engine, "default") == text


@pytest.mark.parametrize("engine", ["postgresql"])
@pytest.mark.parametrize("text", ["now()", "amount::numeric(12,2)", "$$x; y$$", "gen_random_uuid()"])
def test_pg_expressions_accepted(engine, text):
    assert sqlcheck.expression(text, engine, "default") == text


HOSTILE = ["0, DROP COLUMN IF EXISTS keep", "v::bigint, ADD COLUMN evil int", "0; DROP TABLE t", "0 -- ", "0 /* x */", "1, 2", "1 AS x", "1 FROM t",
           "1 WHERE false", "(SELECT 1) UNION SELECT 2", "", "   ", "1)", "'unterminated"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", HOSTILE)
def test_expressions_refused(engine, text):
    with pytest.raises(SqlRefused) as e:
        sqlcheck.expression(text, engine, "default")
    assert "Nothing was run" in str(e.value)


def test_dollar_quotes():
    # PostgreSQL reads $$...$$ as one string literal (harmless as a default); the others see a ';' outside a string
    text = "$$\n; DROP TABLE t; -- $$"
    assert sqlcheck.expression(text, "postgresql", "default") == text
    for engine in ("mysql", "sqlite"):
        with pytest.raises(SqlRefused):
            sqlcheck.expression(text, engine, "default")


@pytest.mark.parametrize("text", ["0 # comment", "0 /*!50000 , DROP COLUMN x */", "'a\\' ; DROP TABLE t; -- '"])
def test_mysql_specific_hostile_expressions(text):
    # '#' comments and executable comments are MySQL's; a backslash-escaped quote keeps the string open
    if text.startswith("'a"):
        assert sqlcheck.expression(text, "mysql", "default") == text   # one string literal, as MySQL reads it
        return
    with pytest.raises(SqlRefused):
        sqlcheck.expression(text, "mysql", "default")


@pytest.mark.parametrize("engine", ENGINES)
def test_deep_nesting_is_a_clear_refusal(engine):
    with pytest.raises(SqlRefused) as e:
        sqlcheck.expression(DEEP[:100000], engine, "default")
    with pytest.raises(SqlRefused) as e:
        sqlcheck.readonly_query("SELECT " + "(" * 30000 + "1" + ")" * 30000, engine)
    assert "nested too deeply" in str(e.value)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", ["SELECT count(*) = 3 FROM users", "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
                                  "SELECT 1 UNION SELECT 2", "SELECT email FROM users ORDER BY id",
                                  "SELECT coalesce(max(age), 0) > 1 FROM users WHERE email LIKE '%x'"])
def test_reading_queries_accepted(engine, text):
    sqlcheck.readonly_query(text, engine)


COMMON_WRITES = ["DELETE FROM users", "UPDATE users SET age = 0", "INSERT INTO users (email) VALUES ('z')",
                 "SELECT 1; DELETE FROM users", "DROP TABLE orders", "CREATE TABLE x (id int)",
                 "SELECT * FROM users FOR UPDATE"]
ENGINE_WRITES = {
    "postgresql": ["COPY (select 1) TO PROGRAM 'touch /tmp/x'", "COPY users TO '/tmp/f'",
                   "select pg_read_file('/etc/passwd')", "select set_config('work_mem', '1MB', false)",
                   "WITH gone AS (DELETE FROM users RETURNING 1) SELECT count(*) FROM gone",
                   "SELECT * INTO newtable FROM users", "EXPLAIN ANALYZE SELECT 1", "SET work_mem = '1MB'",
                   "DO $$ BEGIN END $$", "CALL p()", "VACUUM", "select pg_catalog.pg_sleep(1)",
                   "select * from dblink('x', 'y') as t(a int)", "select pg_advisory_lock(1)",
                   "select lo_export(1, '/tmp/x')", "select pg_terminate_backend(1)", "SELECT 1 FOR SHARE",
                   "select query_to_xml('delete from users', true, true, '')"],
    "mysql": ["SET GLOBAL max_connections = 10", "SELECT 1 INTO OUTFILE '/tmp/x'", "SELECT 1 INTO DUMPFILE '/tmp/x'",
              "SELECT GET_LOCK('a', 1)", "SELECT SLEEP(5)", "SELECT BENCHMARK(1000000, md5('a'))",
              "SELECT LOAD_FILE('/etc/passwd')", "SELECT sys_exec('touch /tmp/x')", "SELECT otherdb.f(1)",
              "SELECT 1 INTO @a", "SELECT * FROM users LOCK IN SHARE MODE", "DO SLEEP(1)", "CALL p()",
              "EXPLAIN SELECT 1", "SELECT my_stored_function(1)", "SELECT 1 /*!, SLEEP(1) */",
              "HANDLER users OPEN", "LOAD DATA INFILE '/etc/passwd' INTO TABLE users"],
    "sqlite": ["PRAGMA journal_mode=WAL", "ATTACH DATABASE '/tmp/x.db' AS x", "VACUUM INTO '/tmp/x.db'", "VACUUM",
               "SELECT load_extension('x')", "REINDEX", "ANALYZE"],
}


@pytest.mark.parametrize("engine", ENGINES)
def test_writes_and_actions_refused(engine):
    for text in COMMON_WRITES + ENGINE_WRITES[engine]:
        with pytest.raises(SqlRefused, match="Nothing was run"):
            sqlcheck.readonly_query(text, engine)
            pytest.fail("accepted: %s" % text)


def test_mysql_show_is_allowed():
    sqlcheck.readonly_query("SHOW TABLES", "mysql")


def test_pg_functions_and_operators_are_reported_for_the_catalog_check():
    out = sqlcheck.readonly_query("SELECT lower(x) || public.f(1) FROM t WHERE a OPERATOR(myschema.@@@) 1",
                                  "postgresql")
    assert (None, "lower") in out["functions"] and ("public", "f") in out["functions"]
    assert (None, "||") in out["operators"] and ("myschema", "@@@") in out["operators"]


@pytest.mark.parametrize("engine", ENGINES)
def test_single_statement(engine):
    sqlcheck.single_statement("ALTER TABLE t ADD COLUMN c int DEFAULT 0", engine)
    with pytest.raises(SqlRefused):
        sqlcheck.single_statement("ALTER TABLE t ADD COLUMN c int DEFAULT 0; DROP TABLE t", engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_column_types(engine):
    for good in ["int", "varchar(191)", "numeric(12, 2)", "text"]:
        assert sqlcheck.column_type(good, engine) == good
    for bad in ["int); drop table t; --", "int, DROP COLUMN IF EXISTS keep", "int -- x", "int)", "numeric(1"]:
        with pytest.raises(SqlRefused, match="syntax"):
            sqlcheck.column_type(bad, engine)


def test_pg_column_type_is_only_a_type():
    assert sqlcheck.column_type('"CredentialType"[]', "postgresql")
    assert sqlcheck.column_type("timestamp(3) with time zone", "postgresql")
    with pytest.raises(SqlRefused):
        sqlcheck.column_type("int REFERENCES other", "postgresql")
