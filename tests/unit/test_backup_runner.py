"""The db_backup flow (runner.Backup) without servers: a fake engine whose "dump tool" is a real small process
(printf, sh, false), so atomicity, the manifest, size, reuse, retention and check mode are tested for real
on the file system."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import files as fl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import manifest as mf
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import pipeline as pl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import runner
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import tools as tl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import Tooling
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.postgresql import PgTooling
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

SECRET = "s3cret-pw"


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = dict(engine="postgresql", database="shop", dest=None, label=None, format=None,
                           compression="gzip", compression_level=None, jobs=1, schema_only=False, tables=None,
                           exclude_tables=None, verify="checksum", scratch_prefix="dbops_scratch_", keep_last=None,
                           keep_days=None, reuse_within=None, tool_path=None, login_password=SECRET)
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings = []
        self._name = "db_backup"

    def warn(self, msg):
        self.warnings.append(msg)


class FakeDb:
    redact = staticmethod(lambda s: s.replace(SECRET, "********"))

    @staticmethod
    def server_info():
        return dict(engine="postgresql", version="15.18")


class FakeTools(Tooling):
    """A PostgreSQL-like engine whose dump is `argv` (a file format) or writes a directory (format directory)."""

    engine = "postgresql"
    default_port = 5432
    check_mode_tools = PgTooling.check_mode_tools  # the real hook, on the fake bin_dir below

    def __init__(self, argv=None, dir_script=None):  # pylint: disable=super-init-not-called
        self.argv = argv or ["printf", "CREATE TABLE t;\\n-- dump complete\\n"]
        self.dir_script = dir_script or 'mkdir "$0" && printf abc > "$0/toc.dat" && printf 12345 > "$0/3001.dat.gz"'
        self.calls = []

    def bind(self, module, db):
        """The module and adapter a real Tooling gets at construction."""
        Tooling.__init__(self, module, db)
        return self

    @staticmethod
    def default_format():
        return "custom"

    @staticmethod
    def layout(fmt):
        return "directory" if fmt == "directory" else "file"

    @staticmethod
    def extension(fmt, _compression):
        return ".dir" if fmt == "directory" else ".dump"

    @staticmethod
    def select_tables(_tables, _exclude):
        t = [dict(name="public.t", schema="public", table="t", rows_estimate=42)]
        return dict(tables=t, include=[], exclude=[])

    @staticmethod
    def database_facts():
        return dict(encoding="UTF8")

    def dump_plan(self, opts, out_path, _selection, snapshot=None):
        self.calls.append(("dump", opts["format"], out_path))
        tools = dict(pg_dump=dict(path="/usr/bin/pg_dump", version="pg_dump (PostgreSQL) 15.18"))
        if opts["format"] == "directory":
            return dict(stages=[pl.Stage("pg_dump", ["sh", "-c", self.dir_script, out_path])], writes_dir=True,
                        tools=tools)
        return dict(stages=[pl.Stage("pg_dump", list(self.argv), env=dict(os.environ, PGPASSWORD=SECRET))],
                    writes_dir=False, tools=tools)

    def verify_list(self, path, _manifest):
        self.calls.append(("list", path))
        return dict(method="fake list")

    @staticmethod
    def bin_dir():
        return "/usr/bin", 15, "pg_dump (PostgreSQL) 15.18"


def backup(dest, tools=None, check_mode=False, **params):
    module = FakeModule(check_mode=check_mode, dest=str(dest), **params)
    job = runner.Backup(module, FakeDb())
    job.tools = (tools or FakeTools()).bind(module, job.db)
    return job, job.run()


def listing(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


# --------------------------------------------------------------------------
# success: the file, its size and sha256, the manifest
# --------------------------------------------------------------------------

def test_file_backup_is_renamed_into_place_with_its_manifest(tmp_path):
    dest = tmp_path / "bk"
    _job, r = backup(dest)
    data = open(r["path"], "rb").read()
    assert r["changed"] and not r["reused"]
    assert r["size"] == len(data) == os.path.getsize(r["path"])
    assert r["sha256"] == hashlib.sha256(data).hexdigest()
    assert listing(dest) == sorted([os.path.basename(r["path"]), os.path.basename(r["path"]) + c.MANIFEST_SUFFIX])
    m = json.load(open(r["manifest_path"]))
    assert m == json.loads(json.dumps(r["manifest"], default=str))
    for key in ("engine", "server", "database", "format", "compression", "size", "sha256", "started_at",
                "finished_at", "tools", "tables", "verification", "label", "file", "kind"):
        assert key in m, key
    assert m["engine"] == "postgresql" and m["server"]["version"] == "15.18" and m["database"] == "shop"
    assert m["format"] == "custom" and m["compression"] == "gzip" and m["label"] == "shop"
    assert m["tables"] == [dict(name="public.t", rows_estimate=42)]
    assert m["tools"]["pg_dump"]["version"].startswith("pg_dump (PostgreSQL) 15")
    assert m["verification"]["level"] == "checksum" and r["verified"] == "checksum"
    assert c.parse_iso(m["started_at"]) <= c.parse_iso(m["finished_at"])
    assert SECRET not in json.dumps(m) and SECRET not in json.dumps(r, default=str)


def test_directory_backup_size_is_the_total_of_its_files(tmp_path):
    dest = tmp_path / "bk"
    _job, r = backup(dest, format="directory", verify="list")
    assert os.path.isdir(r["path"])
    assert r["size"] == r["manifest"]["size"] == 8 == c.current_size(r["path"])
    assert set(r["manifest"]["files"]) == {"toc.dat", "3001.dat.gz"}
    assert r["sha256"] == pl.sha256_tree(r["path"])[0]
    assert r["verified"] == "list"


def test_verify_list_runs_on_the_temporary_name_before_the_rename(tmp_path):
    tools = FakeTools()
    _job, r = backup(tmp_path, tools=tools, verify="list")
    listed = [call[1] for call in tools.calls if call[0] == "list"]
    # the temporary name is inside the run's private directory in dest (<dest>/.dbops-tmp-<pid>.<host>-<random>/)
    workdir = os.path.dirname(listed[0])
    assert len(listed) == 1 and os.path.basename(workdir).startswith(fl.TMP_PREFIX)
    assert os.path.dirname(workdir) == str(tmp_path) and listed[0] != r["path"]


# --------------------------------------------------------------------------
# failures leave nothing behind
# --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["false"], "pg_dump exit code 1"),
    (["sh", "-c", "printf partial; kill -9 $$"], "pg_dump killed by signal SIGKILL"),
    (["sh", "-c", "printf partial; echo 'FATAL: password s3cret-pw rejected' >&2; exit 1"], "********"),
    (["true"], "is empty (0 bytes)"),
])
def test_a_failed_dump_leaves_no_temp_file_no_backup_and_no_manifest(tmp_path, argv, message):
    dest = tmp_path / "bk"
    dest.mkdir()
    (dest / "unrelated.txt").write_text("x")
    with pytest.raises(DbopsError) as e:
        backup(dest, tools=FakeTools(argv=argv), keep_last=1)
    assert message in str(e.value) and SECRET not in str(e.value)
    assert listing(dest) == ["unrelated.txt"]


def test_a_failed_directory_dump_removes_the_partial_directory(tmp_path):
    dest = tmp_path / "bk"
    script = 'mkdir "$0" && printf abc > "$0/toc.dat" && exit 3'
    with pytest.raises(DbopsError, match="pg_dump exit code 3"):
        backup(dest, tools=FakeTools(dir_script=script), format="directory")
    assert listing(dest) == []


def test_a_failed_verification_keeps_nothing(tmp_path):
    class BadList(FakeTools):
        def verify_list(self, path, _manifest):
            raise DbopsError("The archive %s is truncated" % path)
    with pytest.raises(DbopsError, match="truncated"):
        backup(tmp_path, tools=BadList(), verify="list")
    assert listing(tmp_path) == []


def test_no_backup_is_kept_without_its_manifest(tmp_path, monkeypatch):
    def no_manifest(path, _data, **_kw):
        raise DbopsError("Cannot write the manifest %s: disk full" % path)
    monkeypatch.setattr(fl, "write_json_atomic", no_manifest)
    with pytest.raises(DbopsError, match="Cannot write the manifest"):
        backup(tmp_path)
    assert listing(tmp_path) == []


def test_stale_temp_files_of_dead_runs_are_removed_before_a_backup(tmp_path):
    stale = tmp_path / ("%s%d-shop-20200101T000000Z.dump" % (fl.TMP_PREFIX, 2 ** 22 + 4321))
    stale.write_text("half a dump")
    _job, r = backup(tmp_path)
    assert not stale.exists() and os.path.exists(r["path"])


# --------------------------------------------------------------------------
# check mode, reuse, retention
# --------------------------------------------------------------------------

def test_check_mode_writes_nothing(tmp_path):
    dest = tmp_path / "bk"
    tools = FakeTools()
    _job, r = backup(dest, tools=tools, check_mode=True, keep_last=1)
    assert r["changed"] and r["path"].startswith(str(dest)) and "(check mode" in r["msg"]
    assert not dest.exists() and tools.calls == []


def test_check_mode_reports_what_retention_would_prune_without_pruning(tmp_path):
    _job, first = backup(tmp_path)
    before = listing(tmp_path)
    _job, r = backup(tmp_path, check_mode=True, keep_last=1)
    assert r["pruned"] == [first["path"]]
    assert listing(tmp_path) == before


def test_reuse_within_returns_the_recent_backup_unchanged(tmp_path):
    _job, first = backup(tmp_path, reuse_within="1h")
    tools = FakeTools()
    _job, second = backup(tmp_path, tools=tools, reuse_within="1h")
    assert not second["changed"] and second["reused"] and second["path"] == first["path"]
    assert second["sha256"] == first["sha256"] and second["size"] == first["size"]
    assert tools.calls == [] and len(listing(tmp_path)) == 2
    # another format, or a stronger verification, is not satisfied by it
    _job, third = backup(tmp_path, reuse_within="1h", verify="list")
    assert third["changed"] and third["path"] != first["path"]


def test_reuse_within_does_not_reuse_a_damaged_backup(tmp_path):
    _job, first = backup(tmp_path, reuse_within="1h")
    with open(first["path"], "ab") as f:
        f.write(b"x")
    job, second = backup(tmp_path, reuse_within="1h")
    assert second["changed"] and second["path"] != first["path"]
    assert any("Not reusing" in w for w in job.module.warnings)


def test_bad_reuse_within_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(DbopsError, match="reuse_within='soon' is not a duration"):
        backup(tmp_path / "bk", reuse_within="soon")
    assert not (tmp_path / "bk").exists()


@pytest.mark.parametrize("params, message", [
    (dict(keep_last=0), "keep_last must be 1 or more"),
    (dict(keep_days=0), "keep_days must be more than 0"),
    (dict(keep_days=-1.5), "keep_days must be more than 0"),
    (dict(jobs=2), "jobs > 1 needs format directory"),
    (dict(format="sqlite"), "format sqlite is not available for postgresql"),
    (dict(compression_level=30), "compression_level must be between 1 and 19"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, params, message):
    with pytest.raises(DbopsError, match=message):
        backup(tmp_path / "bk", **params)
    assert not (tmp_path / "bk").exists()


def test_retention_prunes_only_own_backups_of_the_same_label(tmp_path):
    foreign = ["notes.txt", "shop-20200101T000000Z.dump", "shop-20200101T000000Z.dump.manifest.json"]
    for name in foreign:
        (tmp_path / name).write_text('{"kind": "someone-else"}')
    _job, other = backup(tmp_path, label="other")
    runs = [backup(tmp_path, keep_last=2)[1] for _i in range(4)]
    paths = [r["path"] for r in runs]
    # oldest first, one at a time (the newest, just taken, always counts as kept)
    assert [r["pruned"] for r in runs] == [[], [], [paths[0]], [paths[1]]]
    shop = [m["file"] for _mp, m in mf.list_backups(str(tmp_path)) if m["label"] == "shop"]
    assert shop == [os.path.basename(paths[2]), os.path.basename(paths[3])]
    present = set(listing(tmp_path))
    for p in (paths[2], paths[3], other["path"]):
        assert os.path.basename(p) in present and os.path.basename(p) + c.MANIFEST_SUFFIX in present
    assert set(foreign) <= present


# --------------------------------------------------------------------------
# the module's result keys (AnsibleModule.add_path_info must not replace `size`)
# --------------------------------------------------------------------------

def test_module_result_size_of_a_directory_backup_is_not_replaced_by_st_size(tmp_path, monkeypatch, capsys):
    try:
        from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel
    except ImportError:  # ansible-core < 2.19 (the core-2.16 stage): the module reads basic._ANSIBLE_ARGS
        from ansible.module_utils import basic  # pylint: disable=import-outside-toplevel

        @contextlib.contextmanager
        def patch_module_args(args):
            monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
            yield
    from ansible_collections.dbops.maintenance.plugins.modules import db_backup  # pylint: disable=import-outside-toplevel
    from ansible_collections.dbops.maintenance.plugins.module_utils import connection  # pylint: disable=import-outside-toplevel
    backup_dir = tmp_path / "shop.dir"
    backup_dir.mkdir()
    (backup_dir / "toc.dat").write_bytes(b"x" * 10000)

    class StubBackup:
        def __init__(self, module, _db):
            self.tools = Tooling(module, None)  # nothing to clean up

        @staticmethod
        def run():
            return dict(changed=True, path=str(backup_dir), dest=str(tmp_path), size=10000)

    @contextlib.contextmanager
    def no_database(_module, **_kw):
        yield FakeDb()

    from ansible_collections.dbops.maintenance.plugins.module_utils.backup import runner  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(runner, "Backup", StubBackup)
    # db_backup goes through run_module(), which opens the database with connection.open_database
    monkeypatch.setattr(connection, "open_database", no_database)
    with patch_module_args(dict(engine="sqlite", database=str(tmp_path / "x.db"), dest=str(tmp_path))):
        with pytest.raises(SystemExit):
            db_backup.main()
    result = json.loads(capsys.readouterr().out)
    assert result["size"] == 10000, "size was replaced by the directory's st_size"
    assert "state" not in result and "mode" not in result


# --------------------------------------------------------------------------
# streaming mechanisms as the backup sees them
# --------------------------------------------------------------------------

class FailingHash:
    def update(self, _chunk):
        raise MemoryError("simulated hashing failure")


def test_a_failed_hashing_thread_fails_the_backup_and_keeps_nothing(tmp_path, monkeypatch):
    real = pl.StreamHasher
    monkeypatch.setattr(pl, "StreamHasher", lambda: real(factory=FailingHash))
    dest = tmp_path / "bk"
    with pytest.raises(DbopsError, match="sha256 of the backup failed.*simulated hashing failure"):
        backup(dest, tools=FakeTools(argv=["head", "-c", "3000000", "/dev/urandom"]), keep_last=1)
    assert listing(dest) == []


def test_a_large_backup_has_hashlibs_sha256_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(pl, "SYNC_EVERY", pl.CHUNK)  # background fdatasync several times on the way
    _job, r = backup(tmp_path / "bk", tools=FakeTools(argv=["head", "-c", str(5 * pl.CHUNK + 3), "/dev/urandom"]))
    data = open(r["path"], "rb").read()
    assert len(data) == r["size"] == 5 * pl.CHUNK + 3
    assert r["sha256"] == hashlib.sha256(data).hexdigest() == pl.sha256_file(r["path"])


def test_tool_versions_probed_during_the_dump_are_plain_strings_in_the_manifest(tmp_path):
    tool = tmp_path / "faketool"
    tool.write_text("#!/bin/sh\necho 'faketool 1.2.3'\n")
    tool.chmod(0o755)

    class Probed(FakeTools):
        def dump_plan(self, opts, out_path, selection, snapshot=None):
            plan = super().dump_plan(opts, out_path, selection, snapshot)
            plan["tools"]["zstd"] = dict(path=str(tool), version=tl.VersionProbe(str(tool)))
            return plan
    _job, r = backup(tmp_path / "bk", tools=Probed())
    assert r["manifest"]["tools"]["zstd"] == dict(path=str(tool), version="faketool 1.2.3")
    assert json.load(open(r["manifest_path"]))["tools"]["zstd"]["version"] == "faketool 1.2.3"


# --------------------------------------------------------------------------
# check mode refuses what the real run refuses
# --------------------------------------------------------------------------

def test_check_mode_refuses_what_the_dump_would_refuse(tmp_path):
    class Refusing(FakeTools):
        def check_options(self, opts):
            self.calls.append(("check", opts["compression"]))
            raise DbopsError("pg_dump 15 cannot compress the custom format with zstd")
    tools = Refusing()
    with pytest.raises(DbopsError, match="cannot compress the custom format with zstd"):
        backup(tmp_path / "bk", tools=tools, check_mode=True, compression="zstd")
    assert tools.calls == [("check", "zstd")] and not (tmp_path / "bk").exists()


class PgAdapterStub:
    server_version = 150018

    @staticmethod
    def server_info():
        return dict(engine="postgresql", version="15.18")

    @staticmethod
    def conninfo():
        return dict(host="127.0.0.1", port=5432, user="u", password=SECRET)


def fake_pg_bin(directory, version, sleep=0):
    directory.mkdir(parents=True)
    for name in ("pg_dump", "pg_restore", "psql"):
        p = directory / name
        p.write_text("#!/bin/sh\nsleep %s\necho 'pg_dump (PostgreSQL) %s'\n" % (sleep, version))
        p.chmod(0o755)
    return str(directory)


@pytest.mark.parametrize("fmt", ["custom", "directory"])
@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_pg_check_options_refuses_lz4_zstd_before_16_with_the_dump_time_message(tmp_path, fmt, compression):
    tools = PgTooling(FakeModule(tool_path=fake_pg_bin(tmp_path / "bin", "15.18")), PgAdapterStub())
    opts = dict(format=fmt, compression=compression, compression_level=None, jobs=1, schema_only=False)
    with pytest.raises(DbopsError) as at_check:
        tools.check_options(opts)
    with pytest.raises(DbopsError) as at_dump:
        tools.dump_plan(opts, str(tmp_path / "out"), dict(include=[], exclude=[], tables=[]))
    assert str(at_check.value) == str(at_dump.value)
    assert "before PostgreSQL 16" in str(at_check.value) and compression in str(at_check.value)
    tools.check_options(dict(opts, compression="gzip"))  # gzip is fine
    tools.check_options(dict(opts, format="plain"))       # plain is compressed by the tool


def test_pg_client_choice_skips_debians_pg_wrapper_and_keeps_the_search_order(tmp_path, monkeypatch):
    from ansible_collections.dbops.maintenance.plugins.module_utils.backup import postgresql  # pylint: disable=import-outside-toplevel
    wrapper_target = tmp_path / "share" / "pg_wrapper"
    wrapper_target.parent.mkdir()
    wrapper_target.write_text("#!/bin/sh\nsleep 0.6\necho 'pg_dump (PostgreSQL) 15.18'\n")
    wrapper_target.chmod(0o755)
    usr_bin = tmp_path / "a_usr_bin"
    usr_bin.mkdir()
    os.symlink(str(wrapper_target), str(usr_bin / "pg_dump"))
    second = fake_pg_bin(tmp_path / "z_second15", "15.18", sleep=0.6)
    first = fake_pg_bin(tmp_path / "y_first15", "15.18", sleep=0.6)
    newer = fake_pg_bin(tmp_path / "b_16", "16.2", sleep=0.6)
    older = fake_pg_bin(tmp_path / "c_14", "14.9", sleep=0.6)
    monkeypatch.setattr(postgresql, "candidate_bin_dirs", lambda: [str(usr_bin), newer, older, second, first])
    tools = postgresql.PgTooling(FakeModule(), PgAdapterStub())
    import time  # pylint: disable=import-outside-toplevel
    t = time.monotonic()
    d, major, line = tools.bin_dir()
    elapsed = time.monotonic() - t
    # the smallest suitable major; of the two 15s the first in the search order; never the wrapper
    assert (d, major) == (second, 15) and line == "pg_dump (PostgreSQL) 15.18"
    # the five probes ran at once: against one probe measured here, now (a ratio, not a wall-clock limit:
    # one after the other they take 5 times a probe, at once about one)
    t = time.monotonic()
    postgresql.tool_version(os.path.join(first, "pg_dump"))
    one = time.monotonic() - t
    assert elapsed < 3 * one, "the --version probes ran one after the other (%.2fs, one probe %.2fs)" % (elapsed, one)
    # the wrapper alone is still used
    monkeypatch.setattr(postgresql, "candidate_bin_dirs", lambda: [str(usr_bin)])
    assert postgresql.PgTooling(FakeModule(), PgAdapterStub()).bin_dir()[0] == str(usr_bin)


# --------------------------------------------------------------------------
# a shared dest: symlinks planted at the names of earlier versions (issue 10 item 9)
# --------------------------------------------------------------------------

class SqliteDbStub:
    def __init__(self, path):
        import sqlite3  # pylint: disable=import-outside-toplevel
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
    redact = staticmethod(lambda s: s)

    @staticmethod
    def server_info():
        return dict(engine="sqlite", version="3")


def test_symlinks_planted_at_every_predictable_name_are_never_followed(tmp_path, monkeypatch):
    """Earlier versions used <dest>/.dbops-tmp-<pid>.<host>-<name> (+ .raw, .progress.json, .progress.json.new, and
    the manifest's temporary name): known in advance from the pid and the time. Plant a symlink at each, to a file
    the run must not touch; the backup works and no target changes."""
    import sqlite3  # pylint: disable=import-outside-toplevel
    src = str(tmp_path / "app.sqlite3")
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, "v%d" % i) for i in range(500)])
    conn.commit()
    conn.close()
    dest = tmp_path / "shared"
    dest.mkdir()
    os.chmod(str(dest), 0o1777)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    when = c.utcnow().replace(microsecond=0)
    monkeypatch.setattr(c, "utcnow", lambda: when)
    name = "app-%s.sqlite3.gz" % c.timestamp_name(when)
    old_tmp = str(dest / ("%s%d.%s-%s" % (fl.TMP_PREFIX, os.getpid(), fl.host_tag(), name)))
    planted = [old_tmp + ".raw", old_tmp + ".progress.json", old_tmp + ".progress.json.new",
               str(dest / ("%s%d.%s-%s.manifest.json" % (fl.TMP_PREFIX, os.getpid(), fl.host_tag(), name)))]
    for path in planted:
        os.symlink(str(victim), path)
    module = FakeModule(engine="sqlite", database=src, dest=str(dest), label="app", verify="restore")
    job = runner.Backup(module, SqliteDbStub(src))
    r = job.run()
    assert victim.read_text() == "precious"
    assert all(os.path.islink(p) and os.readlink(p) == str(victim) for p in planted)
    st = os.lstat(r["path"])
    assert r["path"] == str(dest / name) and stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert sorted(n for n in listing(dest) if not os.path.islink(str(dest / n))) == sorted(
        [name, name + c.MANIFEST_SUFFIX])


def test_an_entry_appearing_at_the_final_name_fails_the_run_and_is_not_replaced(tmp_path, monkeypatch):
    dest = tmp_path / "bk"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    real = fl.take_final_name

    def racing(src, dst):
        if not os.path.lexists(dst):
            os.symlink(str(victim), dst)  # planted between the choice of the name and the rename
        return real(src, dst)
    monkeypatch.setattr(fl, "take_final_name", racing)
    with pytest.raises(DbopsError, match="appeared at .*Nothing was overwritten"):
        backup(dest)
    assert victim.read_text() == "precious"
    assert [n for n in listing(dest) if not os.path.islink(str(dest / n))] == []
