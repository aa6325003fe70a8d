"""schema_diff's pure parts without servers: the snapshot file's validation and round trip, the comparison and
its summary, ignore patterns, and the SQL generator's refusal of text that is not one statement."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import compare, snapshot, sqlgen


def pg_snap(fks=True):
    s = snapshot.Snapshot("postgresql", version="16.2", database="app", default_schema="public")
    s.add("schema", ("public",), {})
    for t in ("quotas", "resumes", "services"):
        s.add("table", ("public", t), dict(comment=None, partitioned=False))
        s.add("column", ("public", t, "user_id"), dict(type="text", nullable=False, default=None, position=2),
              parent=("public", t))
        if fks:
            s.add("foreign_key", ("public", t, "user_id"), dict(
                name="%s_user_id_fkey" % t, columns=["user_id"], references="neon_auth.users_sync",
                referenced_columns=["id"], on_update="CASCADE", on_delete="CASCADE", valid=True, deferrable=None,
                definition="FOREIGN KEY (user_id) REFERENCES neon_auth.users_sync(id) ON UPDATE CASCADE ON DELETE "
                           "CASCADE"), parent=("public", t))
    return s


def test_seed_004_three_entries_and_summary():
    drift = compare.diff(pg_snap(), pg_snap(fks=False))
    assert [(d["kind"], d["name"], d["what"]) for d in drift] == [
        ("foreign_key", "quotas.user_id", "missing"), ("foreign_key", "resumes.user_id", "missing"),
        ("foreign_key", "services.user_id", "missing")]
    assert compare.summary(drift) == ("3 differences: 3 foreign keys missing (quotas.user_id, resumes.user_id, "
                                      "services.user_id)")
    statements, skipped = sqlgen.Generator(pg_snap(), pg_snap(fks=False), False).run(drift)
    assert skipped == []
    assert [s["statement"] for s in statements][:2] == [
        'ALTER TABLE "public"."quotas" ADD CONSTRAINT "quotas_user_id_fkey" FOREIGN KEY (user_id) REFERENCES '
        'neon_auth.users_sync(id) ON UPDATE CASCADE ON DELETE CASCADE NOT VALID',
        'ALTER TABLE "public"."quotas" VALIDATE CONSTRAINT "quotas_user_id_fkey"']


def test_missing_table_covers_its_children():
    ref, act = pg_snap(), pg_snap()
    act = act.without(lambda kind, path: kind == "table" and path[-1] == "quotas")
    drift = compare.diff(ref, act)
    assert [(d["kind"], d["name"], d["what"]) for d in drift] == [("table", "quotas", "missing")]


def test_attribute_difference_has_both_values():
    ref, act = pg_snap(), pg_snap()
    act.objects[("column", ("public", "quotas", "user_id"))] = dict(type="integer", nullable=False, default=None)
    (d,) = compare.diff(ref, act)
    assert (d["what"], d["reference"], d["actual"], d["table"]) == ("type", "text", "integer", "quotas")
    assert compare.summary([d]) == "1 difference: 1 column different (quotas.user_id: type)"


def test_ignore_patterns_and_history_tables():
    m = compare.ignore_matcher(["foreign_key:resumes.*", "services"], {"_prisma_migrations"})
    assert m("foreign_key", ("public", "resumes", "user_id"))
    assert not m("column", ("public", "resumes", "user_id"))
    assert m("table", ("public", "services")) and m("table", ("public", "_prisma_migrations"))
    with pytest.raises(DbopsError, match="non-empty"):
        compare.ignore_matcher([""], set())


def test_snapshot_file_round_trip(tmp_path):
    path = tmp_path / "s.json"
    snapshot.write(str(path), pg_snap())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    back = snapshot.load(str(path))
    assert back.objects == pg_snap().objects and back.parents == pg_snap().parents
    assert compare.diff(back, pg_snap()) == []
    assert os.listdir(tmp_path) == ["s.json"]  # no temporary file left


def test_snapshot_write_refuses_symlink(tmp_path):
    (tmp_path / "real").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(DbopsError, match="symbolic link"):
        snapshot.write(str(tmp_path / "link"), pg_snap())
    assert (tmp_path / "real").read_text() == "x"


@pytest.mark.parametrize("data,message", [
    ({"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": ["t"], "attrs": {"x": 1.5}}]},
     "a float"),
    ({"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": ["t\x00"], "attrs": {}}]},
     "NUL"),
    ({"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": [], "attrs": {}}]},
     "1 to 4 names"),
    ({"format_version": 1, "engine": "sqlite", "objects": [{"kind": "table", "path": ["t"], "attrs": {}},
                                                           {"kind": "table", "path": ["t"], "attrs": {}}]},
     "a second table"),
    ({"format_version": 1, "engine": "sqlite", "version": {"x": 1}, "objects": []}, "version"),
])
def test_snapshot_validation(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(snapshot.SnapshotInvalid, match=message):
        snapshot.load(str(path))


def test_generated_text_that_is_not_one_statement_is_dropped():
    out = sqlgen.lint_statements([dict(statement="CREATE INDEX i ON t (a); DROP TABLE t", object="index t.i",
                                       why="", data_loss=False, drop=False)], skipped := [], "postgresql",
                                 dict(version_num=160002))
    assert out == [] and skipped[0]["what"] == "sql" and "exactly one" in skipped[0]["reason"]
    out = sqlgen.lint_statements([dict(statement="CREATE INDEX CONCURRENTLY i ON t (a)", object="index t.i",
                                       why="", data_loss=False, drop=False)], [], "postgresql",
                                 dict(version_num=160002))
    assert len(out) == 1 and isinstance(out[0]["findings"], list)
