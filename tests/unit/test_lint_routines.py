"""Unit tests of migration_lint's statement splitting around routine bodies (issue 13): SQLite's
CREATE TRIGGER ... BEGIN ...; END; and MySQL/MariaDB triggers, procedures, functions and events, with or
without the mysql client's DELIMITER command. A body's ';' does not end the statement; the statements
around it keep their findings and lines."""

from __future__ import annotations

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.lint import runner, sources
from ansible_collections.dbops.maintenance.plugins.module_utils.lint.sqlglot_parser import parse

NOISE = ["prefer-bigint", "prefer-identity", "char-column", "prefer-text-field", "timestamp-without-time-zone",
         "prefer-robust-statements", "missing-statement-timeout", "enum-value-ordering"]


def lint(sql, engine):
    return [(f["line"], f["rule"]) for f in runner.lint([sources.Source("m.sql", sql)], engine,
                                                        ignore=NOISE)["findings"]]


def shape(sql, engine):
    return [(s.line, s.error, [e.kind for e in s.events]) for s in parse(sql, engine)]


SQLITE_TRIGGER = """CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
CREATE TRIGGER trg AFTER UPDATE ON t BEGIN
  UPDATE t SET v = CASE WHEN new.v IS NULL THEN 'x' ELSE new.v END WHERE id = new.id;
  DELETE FROM t;
END;
DROP TABLE u;
"""


def test_sqlite_trigger_body_is_one_statement():
    assert shape(SQLITE_TRIGGER, "sqlite") == [(1, None, ["create_table"]), (2, None, ["create_routine"]),
                                               (6, None, ["drop_table"])]
    # the DELETE without WHERE runs per row later, not now: not reported; the DROP after the trigger is
    assert lint(SQLITE_TRIGGER, "sqlite") == [(6, "drop-table")]


def test_sqlite_temp_trigger_if_not_exists_with_when_clause():
    sql = ("CREATE TEMP TRIGGER IF NOT EXISTS trg BEFORE INSERT ON t WHEN (CASE WHEN 1 THEN 1 END) BEGIN\n"
           "  SELECT RAISE(ABORT, 'no;'); SELECT 1;\nEND;\nDELETE FROM t;\n")
    assert shape(sql, "sqlite") == [(1, None, ["create_routine"]), (4, None, ["delete_all"])]


def test_sqlite_unclosed_trigger_does_not_swallow_the_file():
    sql = "CREATE TRIGGER trg AFTER INSERT ON t BEGIN\n  SELECT 1;\nDROP TABLE t;\n"
    out = shape(sql, "sqlite")
    assert [line for line, _e, _k in out] == [1, 3]
    assert "does not close" in out[0][1]
    assert out[1] == (3, None, ["drop_table"])


MYSQL_DELIMITER = """DELIMITER //
CREATE DEFINER=`root`@`%` TRIGGER trg BEFORE INSERT ON t FOR EACH ROW
BEGIN
  IF NEW.v IS NULL THEN SET NEW.v = 'a//b;'; END IF;
  WHILE NEW.n < 3 DO SET NEW.n = NEW.n + 1; END WHILE;
END//
CREATE PROCEDURE p() BEGIN DELETE FROM t; END //
DELIMITER ;
DROP TABLE t;
DELIMITER $$
CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC
BEGIN
  DECLARE y INT;
  SET y = CASE WHEN x > 0 THEN 1 ELSE 0 END;
  lbl: LOOP LEAVE lbl; END LOOP lbl;
  RETURN IF(y, 1, 2);
END$$
DELIMITER ;
TRUNCATE TABLE u;
"""


def test_mysql_delimiter_blocks():
    assert shape(MYSQL_DELIMITER, "mysql") == [(2, None, ["create_routine"]), (7, None, ["create_routine"]),
                                               (9, None, ["drop_table"]), (11, None, ["create_routine"]),
                                               (19, None, ["truncate"])]
    assert lint(MYSQL_DELIMITER, "mysql") == [(9, "drop-table"), (19, "truncate")]


def test_mysql_routines_without_delimiter():
    # Flyway, goose (StatementBegin/End) and migration_apply send such a file statement by statement.
    sql = ("CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW\nBEGIN\n"
           "  IF NEW.a > 1 THEN SET NEW.b = 1; ELSEIF NEW.a < 0 THEN SET NEW.b = 2; ELSE SET NEW.b = 3; END IF;\n"
           "  CASE NEW.a WHEN 1 THEN SET NEW.c = 1; ELSE BEGIN END; END CASE;\n"
           "  REPEAT SET NEW.a = NEW.a - 1; UNTIL NEW.a < 0 END REPEAT;\nEND;\n"
           "CREATE TRIGGER t2 BEFORE INSERT ON t FOR EACH ROW SET NEW.v = REPEAT('x', 2);\n"
           "CREATE TRIGGER t3 BEFORE INSERT ON t FOR EACH ROW IF NEW.v IS NULL THEN SET NEW.v = 'y'; END IF;\n"
           "ALTER TABLE t DROP COLUMN v;\n")
    assert shape(sql, "mysql") == [(1, None, ["create_routine"]), (7, None, ["create_routine"]),
                                   (8, None, ["create_routine"]), (9, None, ["exclusive_lock", "drop_column"])]


def test_mysql_delimiter_run_of_plain_statements_and_ignores():
    sql = ("DELIMITER //\nDELETE FROM a; -- dbops:ignore delete-without-where reviewed\nDROP TABLE b//\n"
           "DELIMITER ;\nSELECT 1;\n")
    out = runner.lint([sources.Source("m.sql", sql)], "mysql", ignore=NOISE)["findings"]
    assert [(f["line"], f["rule"], f["ignored"]) for f in out] == [(2, "delete-without-where", True),
                                                                   (3, "drop-table", False)]


@pytest.mark.parametrize("name", ["trigger_log", "`trigger`"])
def test_a_table_named_like_a_routine_is_a_table(name):
    sql = "CREATE TABLE %s (id INT);\nDROP TABLE %s;\n" % (name, name)
    assert [k for _l, _e, k in shape(sql, "mysql")] == [["create_table"], ["drop_table"]]


# --- MySQL SET columns, modelled like ENUM (issue 13) ---------------------------------------------

SET_TABLE = "CREATE TABLE posts (id INT PRIMARY KEY, flags SET('a', 'b', 'c') NOT NULL);\n"


@pytest.mark.parametrize("new, rule, words", [
    ("SET('a', 'b', 'c', 'd')", None, None),                              # appended, same 1 byte
    ("SET('a', 'c')", "enum-change", "removes 'b'"),
    ("SET('b', 'a', 'c')", "enum-change", "inserts or reorders"),
    ("SET('a', 'x', 'b', 'c')", "enum-change", "inserts or reorders"),
    ("SET('a', 'b', 'c', %s)" % ", ".join("'m%d'" % i for i in range(6)), "enum-change", "1 to 2 bytes"),
    ("SET(%s)" % ", ".join("'m%d'" % i for i in range(65)), "set-too-many-members", "at most 64"),
])
def test_set_column_changes(new, rule, words):
    srcs = [sources.Source("1.sql", SET_TABLE),
            sources.Source("2.sql", "ALTER TABLE posts MODIFY COLUMN flags %s NOT NULL;\n" % new)]
    out = [f for f in runner.lint(srcs, "mysql", ignore=NOISE)["findings"] if f["file"] == "2.sql"]
    if rule is None:
        assert out == []
        return
    found = [f for f in out if f["rule"] == rule]
    assert len(found) == 1 and words in found[0]["message"], out
    if rule == "enum-change":
        assert found[0]["message"].startswith("Redefining SET column")
    if "removes" in words:
        assert "lose the removed members" in found[0]["message"]


def test_enum_past_255_values_still_a_copy_and_set_of_64_is_fine():
    enum = ", ".join("'v%d'" % i for i in range(256))
    srcs = [sources.Source("1.sql", "CREATE TABLE o (s ENUM(%s));\n" % ", ".join("'v%d'" % i for i in range(255))),
            sources.Source("2.sql", "ALTER TABLE o MODIFY COLUMN s ENUM(%s);\n" % enum),
            sources.Source("3.sql", "ALTER TABLE o ADD COLUMN f SET(%s);\n" % ", ".join("'f%d'" % i for i in range(64)))]
    out = runner.lint(srcs, "mysql", ignore=NOISE)["findings"]
    assert [(f["file"], f["rule"]) for f in out] == [("2.sql", "enum-change")]
    assert "past 255 values" in out[0]["message"]


# --- max_info: info findings beyond the cap are counted, not built (issue 13 benchmark) ------------

def test_info_findings_beyond_the_cap_are_counted_not_listed():
    sql = "CREATE TABLE a (id serial PRIMARY KEY, at timestamp);\nDROP TABLE b;\n"
    srcs = [sources.Source("%d.sql" % i, sql) for i in range(30)]
    full = runner.lint(srcs, "postgresql")
    info = [f for f in full["findings"] if f["severity"] == "info"]
    assert len(info) > 10 and full["unlisted_info"] == 0
    capped = runner.lint(srcs, "postgresql", max_info=5)
    assert [f for f in capped["findings"] if f["severity"] == "info"] == info[:5]
    assert capped["unlisted_info"] == len(info) - 5
    # errors and warnings all listed, counts the same as without the cap
    assert [f for f in capped["findings"] if f["severity"] != "info"] == \
        [f for f in full["findings"] if f["severity"] != "info"]
    assert runner.counts(capped["findings"], capped["unlisted_info"]) == runner.counts(full["findings"])
    assert "%d more info finding(s) counted but not listed" % (len(info) - 5) in runner.summary(capped, "error")
    none = runner.lint(srcs, "postgresql", max_info=0)
    assert none["unlisted_info"] == len(info) and not [f for f in none["findings"] if f["severity"] == "info"]


def test_an_ignored_info_finding_beyond_the_cap_is_listed():
    srcs = [sources.Source("1.sql", "CREATE TABLE a (at timestamp);\n"),
            sources.Source("2.sql", "-- dbops:ignore timestamp-without-time-zone legacy column\n"
                                    "CREATE TABLE b (at timestamp);\n")]
    out = runner.lint(srcs, "postgresql", select=["timestamp-without-time-zone"], max_info=0)
    assert [(f["file"], f["ignored"]) for f in out["findings"]] == [("2.sql", True)]
    assert out["unlisted_info"] == 1
