"""backup/manifest.py: a manifest is hostile input; every field db_restore uses is validated before use."""

from __future__ import annotations

import copy
import json
import os

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import manifest as mf
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

GOOD = dict(kind=c.MANIFEST_KIND, manifest_version=1, engine="mysql", format="plain", compression="gzip",
            layout="file", file="shop-20250101T020000Z.sql.gz", size=1234, sha256="ab" * 32, database="shop",
            finished_at="2025-01-01T02:00:00.000000Z", schema_only=False, jobs=1,
            tables=[dict(name="orders", rows_estimate=10)], row_counts={"orders": 10},
            database_facts=dict(charset="utf8mb4", collation="utf8mb4_general_ci"),
            tools=dict(dump=dict(path="/usr/bin/mariadb-dump", version="mariadb-dump 10.11")))


def check(tmp_path, m):
    return mf.validate_manifest(m, str(tmp_path / (GOOD["file"] + c.MANIFEST_SUFFIX)))


def changed(**kw):
    m = copy.deepcopy(GOOD)
    for k, v in kw.items():
        if "." in k:
            outer, inner = k.split(".")
            m[outer][inner] = v
        else:
            m[k] = v
    return m


def test_a_good_manifest_passes(tmp_path):
    assert check(tmp_path, copy.deepcopy(GOOD)) == GOOD


@pytest.mark.parametrize("field,value,words", [
    ("engine", "oracle", "engine"),
    ("format", "custom", "format"),
    ("compression", "brotli", "compression"),
    ("compression", None, "compression"),
    ("layout", "directory", "layout"),
    ("file", "../secret", "file"),
    ("file", "/etc/shadow", "file"),
    ("file", "..", "file"),
    ("file", "a\nb", "file"),
    ("file", 7, "file"),
    ("size", "1234", "size"),
    ("size", True, "size"),
    ("size", -1, "size"),
    ("sha256", "AB" * 32, "sha256"),
    ("sha256", "ab" * 31, "sha256"),
    ("database", "", "database"),
    ("tables", ["orders"], "tables"),
    ("tables", [dict(name="orders", rows_estimate="many")], "tables"),
    ("tables", "orders", "tables"),
    ("row_counts", {"orders": "10"}, "row_counts"),
    ("row_counts", {"orders": -1}, "row_counts"),
    ("schema_only", "no", "schema_only"),
    ("jobs", 0, "jobs"),
    ("finished_at", "yesterday", "finished_at"),
    ("tools", [], "tools"),
    ("database_facts.charset", "utf8mb4 COMMENT 'x'", "database_facts.charset"),
    ("database_facts.collation", "utf8mb4_bin; DROP DATABASE mysql", "database_facts.collation"),
    ("database_facts.encoding", "UTF8", "database_facts.encoding"),  # not a MySQL fact
    ("files", {"../x": "ab" * 32}, "files"),
])
def test_each_bad_field_is_refused_by_name(tmp_path, field, value, words):
    with pytest.raises(DbopsError) as e:
        check(tmp_path, changed(**{field: value}))
    assert words in str(e.value) and "Nothing was read or changed" in str(e.value)


def test_unknown_compression_is_a_clear_error_not_a_key_error(tmp_path):
    with pytest.raises(DbopsError, match="compression 'brotli' is not one of none, gzip, lz4, zstd"):
        check(tmp_path, changed(compression="brotli"))


def test_a_symlinked_backup_file_is_refused_without_reading_it(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root-only\n")
    os.symlink(str(secret), str(tmp_path / GOOD["file"]))
    with pytest.raises(DbopsError, match="symbolic link"):
        check(tmp_path, copy.deepcopy(GOOD))


def test_postgresql_facts(tmp_path):
    m = changed(engine="postgresql", format="custom", compression="none",
                database_facts=dict(encoding="UTF8", collate="en_US.UTF-8", ctype="C.UTF-8"))
    assert check(tmp_path, m)
    m["database_facts"]["collate"] = "C' TEMPLATE template1"
    with pytest.raises(DbopsError, match="database_facts.collate"):
        check(tmp_path, m)


def test_read_manifest_and_re_exports(tmp_path):
    assert mf.read_manifest is mf.read_manifest and mf.list_backups is mf.list_backups
    p = tmp_path / "x.manifest.json"
    p.write_text(json.dumps(GOOD))
    assert mf.read_manifest(str(p))["file"] == GOOD["file"]
