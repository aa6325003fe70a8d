"""The other linters' rule ids in migration_lint's rule table (docs/lint/README.md) exist in those linters'
source (issue 13): Atlas's codes as ariga/atlas defines them (sql/sqlcheck/*, sql/mysql/mysqlcheck, and the
analyzer table doc/md/lint/analyzers.mdx before the docs left the repository, October 2024); Bytebase's rule
types as bytebase/bytebase backend/plugin/advisor defines them. Copied here as lists of ids, so that a wrong id
in the table fails."""

from __future__ import annotations

import re

from ansible_collections.dbops.maintenance.plugins.module_utils.lint.rules import RULES_BY_ID

ATLAS = {"BC101", "BC102", "CD101", "DS101", "DS102", "DS103", "MF101", "MF102", "MF103", "MF104", "PG110",
         "PG101", "PG102", "PG103", "PG104", "PG105", "PG301", "PG302", "PG303", "PG304", "PG305", "PG306",
         "MY101", "MY102", "MY110", "MY111", "MY112", "MY113", "MY120", "MY121", "MY122", "MY123", "NM101",
         "NM102", "NM103", "NM104", "NM105", "NM106", "LT101", "AR101"}
BYTEBASE = {"column.auto-increment-must-integer", "column.disallow-change-type", "column.maximum-varchar-length",
            "column.add-not-null-require-default", "column.type-disallow-list", "column.default-disallow-volatile",
            "column.disallow-drop", "database.drop-empty-database", "index.create-concurrently",
            "schema.backward-compatibility", "statement.add-check-not-valid", "statement.add-foreign-key-not-valid",
            "statement.disallow-add-not-null", "statement.disallow-commit", "statement.disallow-offline-ddl",
            "statement.disallow-truncate", "statement.where.require.update-delete"}


def ids(linter):
    out = {}
    for rule in RULES_BY_ID.values():
        for who, rid in rule.also:
            if who == linter:
                out.setdefault(rule.id, []).append(rid)
    return out


def test_atlas_ids_exist():
    for rule, names in ids("atlas").items():
        for name in names:
            code = re.match(r"([A-Z]{2})(\d{3})(?:-([A-Z]{2})?(\d{3}))?", name)
            assert code, (rule, name)
            first = int(code.group(2))
            last = int(code.group(4) or first)
            for n in range(first, last + 1):
                assert "%s%d" % (code.group(1), n) in ATLAS, (rule, name)


def test_bytebase_ids_exist():
    for rule, names in ids("bytebase").items():
        for name in names:
            for part in name.split(" / "):
                assert part in BYTEBASE, (rule, part)


def test_corrected_ids():
    atlas, bytebase = ids("atlas"), ids("bytebase")
    assert "enum-value-in-transaction" not in atlas          # PG105 is ADD UNIQUE's lock, not ADD VALUE
    assert atlas["column-type-rewrite"] == ["PG301"]          # PG303 is SET NOT NULL's scan
    assert "PG303" in atlas["set-not-null"]
    assert bytebase["delete-without-where"] == ["statement.where.require.update-delete"]
    assert "uncommitted-transaction" not in bytebase and "statement.disallow-commit" in bytebase["transaction-nesting"]
