"""migration_lint through Ansible: every rule fires on a minimal bad example and stays silent on its
safe twin, for each dialect it applies to.

The examples of one engine are written as numbered files of one directory and linted with ONE
ansible-playbook run per engine (session fixture); each (rule, engine, direction) is its own test.
"""

from __future__ import annotations

import pytest

MOD = "dbops.maintenance.migration_lint"
PG, MY, SQ = "postgresql", "mysql", "sqlite"

# rule -> list of (engines, bad SQL, safe twin SQL, setup SQL written in a file just before, or None)
CASES = {
    "drop-table": [((PG, MY, SQ), "DROP TABLE users;", "DROP VIEW IF EXISTS report_v;", None)],
    "drop-column": [((PG, MY, SQ), "ALTER TABLE users DROP COLUMN legacy;",
                     "ALTER TABLE users ADD COLUMN note VARCHAR(20);", None)],
    "drop-schema": [((PG,), "DROP SCHEMA archive CASCADE;", "CREATE SCHEMA archive;", None),
                    ((MY,), "DROP DATABASE archive;", "CREATE DATABASE archive;", None)],
    "truncate": [((PG, MY), "TRUNCATE TABLE sessions;",
                  "DELETE FROM sessions WHERE expires_at < '2024-01-01';", None)],
    "delete-without-where": [((PG, MY, SQ), "DELETE FROM sessions;",
                              "DELETE FROM sessions WHERE expires_at < '2024-01-01';", None)],
    "update-without-where": [((PG, MY, SQ), "UPDATE users SET active = 1;",
                              "UPDATE users SET active = 1 WHERE id < 1000;", None)],
    "add-column-not-null-no-default": [((PG, MY, SQ), "ALTER TABLE users ADD COLUMN tier INT NOT NULL;",
                                        "ALTER TABLE users ADD COLUMN tier INT NOT NULL DEFAULT 0;", None)],
    "column-type-rewrite": [((PG,), "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
                             "ALTER TABLE users ADD COLUMN age_big bigint;", None),
                            ((MY,), "ALTER TABLE users MODIFY COLUMN age BIGINT;",
                             "ALTER TABLE users MODIFY COLUMN name VARCHAR(200), ALGORITHM=INPLACE, LOCK=NONE;", None)],
    "index-not-concurrently": [((PG,), "CREATE INDEX users_email ON users (email);",
                                "CREATE INDEX CONCURRENTLY users_email ON users (email);", None)],
    "concurrently-in-transaction": [((PG,), "BEGIN;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\nCOMMIT;",
                                     "CREATE INDEX CONCURRENTLY users_email ON users (email);", None)],
    "enum-value-in-transaction": [((PG,), "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT;",
                                   "ALTER TYPE mood ADD VALUE 'meh';", None)],
    "enum-change": [((PG,), "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy';", "ALTER TYPE mood ADD VALUE 'meh';",
                     None),
                    ((MY,), "ALTER TABLE orders MODIFY COLUMN status ENUM('new', 'refunded', 'paid') NOT NULL;",
                     "ALTER TABLE orders MODIFY COLUMN status ENUM('new', 'paid', 'refunded') NOT NULL;",
                     "CREATE TABLE orders (id INT PRIMARY KEY, status ENUM('new', 'paid') NOT NULL);"),
                    # a SET like an ENUM; appending past 8 members grows its storage (1 to 2 bytes): a copy
                    ((MY,), "ALTER TABLE posts MODIFY COLUMN flags SET(%s) NOT NULL;" % ", ".join(
                        "'f%d'" % i for i in range(9)),
                     "ALTER TABLE posts MODIFY COLUMN flags SET(%s) NOT NULL;" % ", ".join(
                         "'f%d'" % i for i in range(8)),
                     "CREATE TABLE posts (id INT PRIMARY KEY, flags SET('f0', 'f1', 'f2') NOT NULL);")],
    "set-too-many-members": [((MY,), "ALTER TABLE posts ADD COLUMN tags SET(%s);" % ", ".join(
        "'t%d'" % i for i in range(65)), "ALTER TABLE posts ADD COLUMN tags SET(%s);" % ", ".join(
            "'t%d'" % i for i in range(64)), None)],
    "rename-table": [((PG, MY, SQ), "ALTER TABLE users RENAME TO accounts;",
                      "CREATE VIEW accounts AS SELECT * FROM users;", None),
                     ((MY,), "RENAME TABLE users TO accounts;", "CREATE VIEW accounts AS SELECT * FROM users;", None)],
    "rename-column": [((PG, MY, SQ), "ALTER TABLE users RENAME COLUMN name TO full_name;",
                       "ALTER TABLE users ADD COLUMN full_name VARCHAR(100);", None),
                      ((MY,), "ALTER TABLE users CHANGE COLUMN name full_name VARCHAR(100);",
                       "ALTER TABLE users CHANGE COLUMN name name VARCHAR(100), ALGORITHM=INPLACE, LOCK=NONE;", None)],
    "constraint-not-valid": [
        ((PG,), "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
         "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
         None),
        ((PG,), "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0);",
         "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;", None)],
    "missing-lock-timeout": [((PG,), "ALTER TABLE users ADD COLUMN note text;",
                              "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN note text;", None)],
    # issue 13: squawk parity and beyond
    "add-column-volatile-default": [((PG,), "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
                                     "ALTER TABLE users ADD COLUMN active boolean DEFAULT true;", None)],
    "set-not-null": [((PG,), "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
                      "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n"
                      "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n"
                      "ALTER TABLE users ALTER COLUMN email SET NOT NULL;", None)],
    "add-unique-without-index": [((PG,), "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
                                  "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;",
                                  None)],
    "drop-index-not-concurrently": [((PG,), "DROP INDEX users_email_idx;",
                                     "DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;", None)],
    "reindex-not-concurrently": [((PG,), "REINDEX TABLE users;", "REINDEX TABLE CONCURRENTLY users;", None)],
    "detach-partition-not-concurrently": [((PG,), "ALTER TABLE events DETACH PARTITION events_2020;",
                                           "ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;", None)],
    "enum-value-ordering": [((PG,), "ALTER TYPE mood ADD VALUE 'meh';", "ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok';",
                             None)],
    "prefer-bigint": [((PG,), "CREATE TABLE widgets (id serial PRIMARY KEY);",
                       "CREATE TABLE widgets (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);", None)],
    "prefer-identity": [((PG,), "CREATE TABLE widgets (id bigserial PRIMARY KEY);",
                         "CREATE TABLE widgets (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);", None)],
    "char-column": [((PG,), "CREATE TABLE countries (code char(2) PRIMARY KEY);",
                     "CREATE TABLE countries (code text PRIMARY KEY);", None)],
    "prefer-text-field": [((PG,), "CREATE TABLE tags (label varchar(40));",
                           "CREATE TABLE tags (label text CHECK (length(label) <= 40));", None)],
    "timestamp-without-time-zone": [((PG,), "CREATE TABLE visits (seen_at timestamp);",
                                     "CREATE TABLE visits (seen_at timestamptz);", None)],
    "identifier-too-long": [((PG,), "CREATE INDEX CONCURRENTLY users_email_lower_case_unique_lookup_index_for_the_login_page_v2 "
                             "ON users (lower(email));",
                             "CREATE INDEX CONCURRENTLY users_email_lower_idx ON users (lower(email));", None)],
    "domain-constraint": [((PG,), "CREATE DOMAIN positive_int AS bigint CHECK (VALUE > 0);",
                           "CREATE DOMAIN email AS text;", None)],
    "vacuum-full": [((PG,), "VACUUM FULL orders;", "VACUUM (ANALYZE) orders;", None)],
    "cluster": [((PG,), "CLUSTER orders USING orders_pkey;", "ANALYZE orders;", None)],
    "drop-not-null": [((PG,), "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
                       "ALTER TABLE users ALTER COLUMN email SET DEFAULT '';", None)],
    "lock-table": [((PG,), "BEGIN;\nLOCK TABLE orders;\nCOMMIT;", "BEGIN;\nSELECT 1;\nCOMMIT;", None)],
    "duplicate-assignment": [((PG,), "UPDATE users SET a = 1, a = 2 WHERE id = 1;",
                              "UPDATE users SET a = 1, b = 2 WHERE id = 1;", None)],
    "uncommitted-transaction": [((PG,), "BEGIN;\nUPDATE users SET a = 1 WHERE id = 1;",
                                 "BEGIN;\nUPDATE users SET a = 1 WHERE id = 1;\nCOMMIT;", None)],
    "transaction-nesting": [((PG,), "BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;", "BEGIN;\nSELECT 1;\nCOMMIT;", None)],
    "missing-statement-timeout": [((PG,), "ALTER TABLE users ADD COLUMN note text;",
                                   "SET statement_timeout = '5min';\nALTER TABLE users ADD COLUMN note text;", None)],
    "prefer-robust-statements": [((PG,), "ALTER TABLE users ADD COLUMN note text;",
                                  "ALTER TABLE users ADD COLUMN IF NOT EXISTS note text;", None)],
    "drop-constraint": [((PG,), "ALTER TABLE orders DROP CONSTRAINT orders_total_positive;",
                         "ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;", None)],
    "mysql-algorithm-copy": [((MY,), "ALTER TABLE users ADD COLUMN note TEXT, ALGORITHM=COPY;",
                              "ALTER TABLE users ADD COLUMN note TEXT, ALGORITHM=INSTANT;", None)],
    "mysql-lock-option": [((MY,), "ALTER TABLE users ADD INDEX users_email (email), LOCK=EXCLUSIVE;",
                           "ALTER TABLE users ADD INDEX users_email (email), ALGORITHM=INPLACE, LOCK=NONE;", None)],
    "optimize-table": [((MY,), "OPTIMIZE TABLE sessions;", "ANALYZE TABLE sessions;", None)],
    "mysql-charset-convert": [((MY,), "ALTER TABLE users CONVERT TO CHARACTER SET utf8mb4;",
                               "ALTER TABLE users CHARACTER SET = utf8mb4;", None)],
    "sqlite-alter-unsupported": [((SQ,), "ALTER TABLE users ALTER COLUMN age TYPE BIGINT;",
                                  "ALTER TABLE users ADD COLUMN age_big BIGINT;", None)],
    "sqlite-table-rebuild": [((SQ,), "CREATE TABLE new_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n"
                              "INSERT INTO new_users (id, email) SELECT id, email FROM users;\nDROP TABLE users;\n"
                              "ALTER TABLE new_users RENAME TO users;",
                              "ALTER TABLE users ADD COLUMN email2 TEXT;", None)],
    "sqlite-foreign-keys-off": [((SQ,), "PRAGMA foreign_keys=OFF;\nDELETE FROM users WHERE id = 1;",
                                 "PRAGMA foreign_keys=OFF;\nDELETE FROM users WHERE id = 1;\nPRAGMA foreign_keys=ON;",
                                 None)],
    "parse-error": [((PG, MY, SQ), "CREATE TABLE (id int;", "CREATE TABLE t (id int);", None)],
    "unparsed-statement": [((MY, SQ), "ALTER TABLE t ADD x;", "ALTER TABLE t ADD COLUMN x INT;", None)],
}


def _layout(engine):
    """[(file name, text, rule, direction)] for one engine; setup files have direction None."""
    files = []
    n = 0
    for rule, cases in CASES.items():
        for i, (engines, bad, good, setup) in enumerate(cases):
            if engine not in engines:
                continue
            for direction, text in (("bad", bad), ("good", good)):
                if setup:
                    n += 1
                    files.append(("%04d_setup_%s_%d_%s.sql" % (n, rule, i, direction), setup, rule, None))
                n += 1
                files.append(("%04d_%s_%d_%s.sql" % (n, rule, i, direction), text, rule, direction))
    return files


def _params():
    out = []
    for rule, cases in CASES.items():
        for i, (engines, _bad, _good, _setup) in enumerate(cases):
            for engine in engines:
                for direction in ("bad", "good"):
                    out.append(pytest.param(engine, rule, i, direction, id="%s-%s-%d-%s" % (engine, rule, i, direction)))
    return out


_RESULTS = {}


@pytest.fixture(scope="module")
def linted(ansible, tmp_path_factory):
    def get(engine):
        if engine not in _RESULTS:
            d = tmp_path_factory.mktemp("lint-%s" % engine)
            for name, text, _rule, _direction in _layout(engine):
                (d / name).write_text(text + "\n")
            r = ansible.run(MOD, dict(engine=engine, path=[str(d)], fail_on="never", max_info_findings=-1),
                            expect_failure=False)
            by_file = {}
            for f in r["findings"]:
                by_file.setdefault(f["file"].rsplit("/", 1)[-1], []).append(f)
            _RESULTS[engine] = (r, by_file)
        return _RESULTS[engine]
    return get


@pytest.mark.parametrize("engine,rule,index,direction", _params())
def test_rule(linted, engine, rule, index, direction):
    r, by_file = linted(engine)
    name = "_%s_%d_%s.sql" % (rule, index, direction)
    files = [f for f, _t, _r, d in _layout(engine) if f.endswith(name) and "_setup_" not in f]
    assert len(files) == 1
    found = [f for f in by_file.get(files[0], []) if f["rule"] == rule]
    if direction == "bad":
        assert found, "%s did not fire on %s: %s" % (rule, files[0], by_file.get(files[0]))
        f = found[0]
        assert f["severity"] in ("error", "warning", "info")
        assert f["line"] >= 1 and f["statement"] and f["message"]
        texts = r["rules"][rule]     # once per rule, not in each finding
        assert texts["why"] and texts["alternative"] and texts["title"] and "why" not in f
        assert f["ignored"] is False
    else:
        assert not found, "%s fired on its safe twin %s: %s" % (rule, files[0], found)
