"""backup/common.py without servers: durations, retention planning, manifests on disk, and the Pipeline
run with real small processes (printf, cat, false, sh)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import files as fl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import manifest as mf
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import pipeline as pl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import tools as tl
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

NOW = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.timezone.utc)


# --------------------------------------------------------------------------
# durations
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("90", 90), (90, 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
    ("1.5h", 5400), (" 7 D ", 604800), ("0", 0), (0.5, 0.5),
])
def test_parse_duration_formats(text, seconds):
    assert c.parse_duration(text, "reuse_within") == seconds


def test_parse_duration_none_is_none():
    assert c.parse_duration(None, "reuse_within") is None


@pytest.mark.parametrize("text", ["", "abc", "-5m", "5 minutes", "1e3", "7dd", "h", "1h30m", "5y", "True"])
def test_parse_duration_rejects_bad_input_with_the_option_and_the_formats(text):
    with pytest.raises(DbopsError) as e:
        c.parse_duration(text, "reuse_within")
    msg = str(e.value)
    assert "reuse_within=%r" % text in msg
    assert "is not a duration" in msg and "12h" in msg and "7d" in msg


def test_parse_duration_names_the_option_it_was_given():
    with pytest.raises(DbopsError, match=r"^keep_days='x' is not a duration"):
        c.parse_duration("x", "keep_days")


# --------------------------------------------------------------------------
# retention
# --------------------------------------------------------------------------

def iso_ago(**delta):
    return c.iso(NOW - datetime.timedelta(**delta))


def group(*ages_in_days):
    """(manifest path, manifest) pairs, oldest first, finished the given number of days before NOW."""
    out = []
    for i, days in enumerate(sorted(ages_in_days, reverse=True)):
        out.append(("/bk/b%d.manifest.json" % i, dict(file="b%d" % i, finished_at=iso_ago(days=days))))
    return out


def names(plan):
    return [m["file"] for _mp, m in plan]


def test_retention_without_keep_options_deletes_nothing():
    assert c.plan_retention(group(30, 20, 10, 0), None, None, NOW) == []


def test_retention_keep_last_deletes_the_oldest_first():
    # b0 is the oldest (30 days), b4 the newest
    assert names(c.plan_retention(group(30, 20, 10, 5, 0), 2, None, NOW)) == ["b0", "b1", "b2"]


def test_retention_keep_last_larger_than_the_group_deletes_nothing():
    assert c.plan_retention(group(3, 2, 1), 5, None, NOW) == []


def test_retention_keep_days_alone():
    assert names(c.plan_retention(group(30, 20, 10, 5, 0), None, 7, NOW)) == ["b0", "b1", "b2"]


def test_retention_keep_days_is_a_strict_age_limit():
    backups = [("/bk/a.manifest.json", dict(file="a", finished_at=iso_ago(days=7))),
               ("/bk/b.manifest.json", dict(file="b", finished_at=iso_ago(days=7, seconds=-1)))]
    # exactly 7 days old is not younger than 7 days; one second younger is kept
    assert names(c.plan_retention(backups, None, 7, NOW)) == ["a"]


def test_retention_keep_last_and_keep_days_combined_keep_what_either_keeps():
    backups = group(30, 20, 6, 5, 4, 3)
    # keep_days=7 keeps the four young ones; keep_last=5 additionally keeps the 20-day-old one
    assert names(c.plan_retention(backups, 5, 7, NOW)) == ["b0"]
    # keep_last=1 keeps only the newest, keep_days=7 still keeps the young ones
    assert names(c.plan_retention(backups, 1, 7, NOW)) == ["b0", "b1"]
    # keep_days=1: only keep_last decides
    assert names(c.plan_retention(backups, 2, 1, NOW)) == ["b0", "b1", "b2", "b3"]


def test_retention_fractional_keep_days():
    assert names(c.plan_retention(group(1, 0.25, 0.1), None, 0.5, NOW)) == ["b0"]


def test_retention_never_deletes_a_protected_backup():
    backups = group(30, 20, 10)
    plan = c.plan_retention(backups, 1, None, NOW, protect={"/bk/b0.manifest.json"})
    assert names(plan) == ["b1"]


def write_backup(directory, name, finished_at, label="mydb", kind=c.MANIFEST_KIND, content=b"data"):
    (directory / name).write_bytes(content)
    m = dict(kind=kind, file=name, label=label, finished_at=finished_at,
             sha256=hashlib.sha256(content).hexdigest(), size=len(content))
    (directory / (name + c.MANIFEST_SUFFIX)).write_text(json.dumps(m))
    return m


def test_list_backups_returns_only_this_collections_manifests_oldest_first(tmp_path):
    write_backup(tmp_path, "mydb-2.sql.gz", iso_ago(days=1))
    write_backup(tmp_path, "mydb-1.sql.gz", iso_ago(days=3))
    write_backup(tmp_path, "other-1.sql.gz", iso_ago(days=2), label="other")
    # not ours: another tool's manifest, a broken manifest, no manifest, a manifest naming another file,
    # a manifest whose file is in another directory, a manifest without a valid finished_at, a temp file
    write_backup(tmp_path, "foreign.sql.gz", iso_ago(days=9), kind="someone.else/backup")
    (tmp_path / "broken.sql.gz").write_text("x")
    (tmp_path / ("broken.sql.gz" + c.MANIFEST_SUFFIX)).write_text("{not json")
    (tmp_path / "lonely.sql.gz").write_text("x")
    (tmp_path / ("renamed.sql.gz" + c.MANIFEST_SUFFIX)).write_text(json.dumps(
        dict(kind=c.MANIFEST_KIND, file="mydb-1.sql.gz", label="mydb", finished_at=iso_ago(days=9))))
    (tmp_path / ("escape" + c.MANIFEST_SUFFIX)).write_text(json.dumps(
        dict(kind=c.MANIFEST_KIND, file="../escape", label="mydb", finished_at=iso_ago(days=9))))
    (tmp_path / ("notime.sql" + c.MANIFEST_SUFFIX)).write_text(json.dumps(
        dict(kind=c.MANIFEST_KIND, file="notime.sql", label="mydb", finished_at="yesterday")))
    (tmp_path / (".dbops-tmp-1-x.sql" + c.MANIFEST_SUFFIX)).write_text(json.dumps(
        dict(kind=c.MANIFEST_KIND, file=".dbops-tmp-1-x.sql", label="mydb", finished_at=iso_ago(days=9))))
    found = mf.list_backups(str(tmp_path))
    assert [m["file"] for _mp, m in found] == ["mydb-1.sql.gz", "other-1.sql.gz", "mydb-2.sql.gz"]


def test_retention_end_to_end_removes_only_own_backups_of_the_label(tmp_path):
    for days in (5, 4, 3, 2, 1):
        write_backup(tmp_path, "mydb-%d.sql.gz" % days, iso_ago(days=days))
    write_backup(tmp_path, "other-9.sql.gz", iso_ago(days=9), label="other")
    (tmp_path / "mydb-0.sql.gz").write_text("a file of the same name pattern without a manifest")
    grp = [(mp, m) for mp, m in mf.list_backups(str(tmp_path)) if m["label"] == "mydb"]
    removed = c.apply_retention(str(tmp_path), c.plan_retention(grp, 2, None, NOW))
    assert [os.path.basename(p) for p in removed] == ["mydb-5.sql.gz", "mydb-4.sql.gz", "mydb-3.sql.gz"]
    assert sorted(os.listdir(tmp_path)) == sorted([
        "mydb-0.sql.gz", "mydb-1.sql.gz", "mydb-1.sql.gz.manifest.json", "mydb-2.sql.gz",
        "mydb-2.sql.gz.manifest.json", "other-9.sql.gz", "other-9.sql.gz.manifest.json"])


def test_apply_retention_removes_directory_backups(tmp_path):
    d = tmp_path / "mydb-1.dir"
    d.mkdir()
    (d / "toc.dat").write_text("x")
    (tmp_path / ("mydb-1.dir" + c.MANIFEST_SUFFIX)).write_text("{}")
    c.apply_retention(str(tmp_path), [(str(tmp_path / ("mydb-1.dir" + c.MANIFEST_SUFFIX)), dict(file="mydb-1.dir"))])
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------
# the pipeline, with real processes
# --------------------------------------------------------------------------

def run_to_tmp(tmp_path, stages, **kw):
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        pipe = pl.Pipeline(stages, **kw)
        ok = pipe.run_to_file(fd, str(tmp_path))
    finally:
        os.close(fd)
    return pipe, ok, out


def test_pipeline_sha256_while_streaming_equals_hashlib_of_the_file(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 * pl.CHUNK + 12345))  # more than one chunk, not a multiple of it
    pipe, ok, out = run_to_tmp(tmp_path, [pl.Stage("cat", ["cat", str(src)]), pl.Stage("gzip", ["gzip", "-c", "-1"])])
    assert ok and pipe.ok
    data = out.read_bytes()
    assert pipe.sha256.hexdigest() == hashlib.sha256(data).hexdigest() == pl.sha256_file(str(out))
    assert pipe.bytes == len(data) == os.path.getsize(out)
    assert [p["rc"] for p in pipe.report()] == [0, 0]


def test_pipeline_of_printf_and_cat(tmp_path):
    pipe, ok, out = run_to_tmp(tmp_path, [pl.Stage("printf", ["printf", "a%sb\\n", "-x-"]), pl.Stage("cat", ["cat"]),
                                          pl.Stage("cat2", ["cat"])])
    assert ok and out.read_bytes() == b"a-x-b\n"
    assert pipe.sha256.hexdigest() == hashlib.sha256(b"a-x-b\n").hexdigest()


@pytest.mark.parametrize("position", [0, 1, 2])
def test_pipeline_any_failing_stage_fails_the_whole(tmp_path, position):
    stages = [pl.Stage("printf", ["printf", "hello"]), pl.Stage("cat", ["cat"]), pl.Stage("cat2", ["cat"])]
    # `false` exits 1 at once; a stage after it sees EOF, a stage before it may see EPIPE/SIGPIPE
    stages[position] = pl.Stage("false", ["sh", "-c", "cat >/dev/null; exit 1"] if position else ["false"])
    pipe, ok, _out = run_to_tmp(tmp_path, stages)
    assert ok is False and pipe.ok is False
    rcs = {p["name"]: p["rc"] for p in pipe.report()}
    assert rcs["false"] == 1
    assert "false exit code 1" in str(pipe.failure("The dump"))


def test_pipeline_last_stage_zero_does_not_hide_a_failed_first_stage(tmp_path):
    # the classic `dump | gzip` trap: gzip exits 0 on a truncated input
    pipe, ok, out = run_to_tmp(tmp_path, [pl.Stage("dump", ["sh", "-c", "printf partial; exit 2"]),
                                          pl.Stage("gzip", ["gzip", "-c"])])
    assert not ok and [p["rc"] for p in pipe.report()] == [2, 0]
    assert out.stat().st_size > 0  # output was produced: only the exit codes tell


def test_pipeline_killed_stage_is_reported_by_signal(tmp_path):
    pipe, ok, _out = run_to_tmp(tmp_path, [pl.Stage("pg_dump", ["sh", "-c", "printf some; kill -9 $$"]),
                                           pl.Stage("cat", ["cat"])])
    assert not ok
    assert pipe.report()[0]["status"] == "killed by signal SIGKILL"
    err = pipe.failure("The dump of x")
    assert isinstance(err, pl.PipelineFailed) and "pg_dump killed by signal SIGKILL" in str(err)
    assert err.details["processes"][0]["rc"] == -9


def test_pipeline_keeps_the_end_of_stderr_and_redacts_it(tmp_path):
    script = "i=0; while [ $i -lt 2000 ]; do echo noise $i >&2; i=$((i+1)); done; echo 'password s3cret bad' >&2; exit 4"
    pipe, ok, _out = run_to_tmp(tmp_path, [pl.Stage("tool", ["sh", "-c", script])],
                                redact=lambda s: s.replace("s3cret", "********"))
    assert not ok
    st = pipe.report()[0]
    # the last STDERR_KEEP bytes, redacted afterwards (******** is 2 longer than s3cret)
    assert len(st["stderr"]) <= pl.STDERR_KEEP + 2 and st["stderr"].endswith("password ******** bad")
    assert "s3cret" not in str(pipe.failure("x"))


def test_pipeline_cannot_start_a_missing_tool(tmp_path):
    with pytest.raises(DbopsError, match="Cannot start /nonexistent/tool"):
        run_to_tmp(tmp_path, [pl.Stage("cat", ["cat"]), pl.Stage("tool", ["/nonexistent/tool"])])


def test_pipeline_stdin_path_and_consumer(tmp_path):
    src = tmp_path / "in"
    src.write_bytes(b"line1\nline2\n")
    got = bytearray()
    pipe = pl.Pipeline([pl.Stage("cat", ["cat"])], stdin_path=str(src))
    assert pipe.run_to_file(None, str(tmp_path), consumer=got.extend)
    assert bytes(got) == b"line1\nline2\n" and pipe.bytes == 12


def test_pipeline_run_without_capture_checks_every_exit_code():
    assert pl.Pipeline([pl.Stage("printf", ["printf", "x"]), pl.Stage("cat", ["sh", "-c", "cat >/dev/null"])]).run()
    p = pl.Pipeline([pl.Stage("false", ["false"]), pl.Stage("cat", ["sh", "-c", "cat >/dev/null"])])
    assert p.run() is False and [s["rc"] for s in p.report()] == [1, 0]


def test_pipeline_write_error_kills_every_stage_and_raises(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x" * (2 * pl.CHUNK))
    fd = os.open(str(tmp_path / "ro"), os.O_RDONLY | os.O_CREAT, 0o600)  # a descriptor that cannot be written
    try:
        pipe = pl.Pipeline([pl.Stage("cat", ["cat", str(src)]), pl.Stage("cat2", ["cat"])])
        with pytest.raises(DbopsError, match="Writing into"):
            pipe.run_to_file(fd, str(tmp_path))
    finally:
        os.close(fd)
    assert all(st.proc.poll() is not None for st in pipe.stages)


# --------------------------------------------------------------------------
# atomic files
# --------------------------------------------------------------------------

def test_write_json_atomic_writes_complete_json_0600_and_no_temp(tmp_path):
    path = tmp_path / "b.sql.gz.manifest.json"
    fl.write_json_atomic(str(path), dict(kind=c.MANIFEST_KIND, b=2, a=1, when=NOW))
    data = json.loads(path.read_text())
    assert data["a"] == 1 and data["kind"] == c.MANIFEST_KIND and data["when"].startswith("2026-11-24")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == [path.name]


def test_write_json_atomic_replaces_the_old_file_or_leaves_it_untouched(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    fl.write_json_atomic(str(path), {"v": 1})
    fl.write_json_atomic(str(path), {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}

    def broken_rename(_src, _dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(c.os, "rename", broken_rename)
    with pytest.raises(DbopsError, match="Cannot write the manifest .*No space left"):
        fl.write_json_atomic(str(path), {"v": 3})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 2}
    assert os.listdir(tmp_path) == ["m.json"], "the temporary file was not removed"


def test_write_json_atomic_removes_its_temp_file_on_any_error(tmp_path):
    class Unencodable:
        def __str__(self):
            raise RuntimeError("cannot encode")
    with pytest.raises(RuntimeError):
        fl.write_json_atomic(str(tmp_path / "m.json"), {"x": Unencodable()})
    assert os.listdir(tmp_path) == []


def test_write_json_atomic_into_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DbopsError, match="Cannot write the manifest"):
        fl.write_json_atomic(str(tmp_path / "missing" / "m.json"), {})


def test_read_manifest_refuses_other_json(tmp_path):
    p = tmp_path / "x.manifest.json"
    p.write_text(json.dumps({"kind": "other"}))
    with pytest.raises(DbopsError, match="not a dbops.maintenance backup manifest"):
        mf.read_manifest(str(p))


def test_tmp_names_are_in_the_destination_and_stale_ones_are_cleaned(tmp_path):
    tmp = fl.tmp_name(str(tmp_path), "b.sql.gz")
    assert os.path.dirname(tmp) == str(tmp_path) and os.path.basename(tmp).startswith(fl.TMP_PREFIX)
    # a temp file of a process that is gone, one of a live process (ours), and a foreign file
    dead = tmp_path / ("%s%d-old.sql.gz" % (fl.TMP_PREFIX, 2 ** 22 + 12345))
    dead.write_text("x")
    open(tmp, "w").close()
    (tmp_path / "keep.txt").write_text("x")
    # another host's temporary file in a shared dest: its pid means nothing here, it is left alone
    other_tag = "0" * 8 if fl.host_tag() != "0" * 8 else "1" * 8
    other_host = tmp_path / ("%s%d.%s-b.sql.gz" % (fl.TMP_PREFIX, 2 ** 22 + 12345, other_tag))
    other_host.write_text("x")
    dead_here = tmp_path / ("%s%d.%s-b.sql.gz" % (fl.TMP_PREFIX, 2 ** 22 + 12346, fl.host_tag()))
    dead_here.write_text("x")
    assert sorted(fl.cleanup_stale_tmp(str(tmp_path))) == sorted([dead.name, dead_here.name])
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(tmp), "keep.txt", other_host.name])


def test_sha256_tree_and_integrity_check(tmp_path):
    d = tmp_path / "b.dir"
    (d / "sub").mkdir(parents=True)
    (d / "toc.dat").write_bytes(b"t" * 10)
    (d / "sub" / "1.dat.gz").write_bytes(b"z" * 25)
    digest, files, size = pl.sha256_tree(str(d))
    assert size == 35 == c.current_size(str(d))
    assert set(files) == {"toc.dat", os.path.join("sub", "1.dat.gz")}
    m = dict(layout="directory", sha256=digest, files=files)
    assert mf.check_backup_integrity(str(d), m) == digest
    (d / "toc.dat").write_bytes(b"T" * 10)
    with pytest.raises(DbopsError, match=r"does not match its manifest.*toc\.dat"):
        mf.check_backup_integrity(str(d), m)


def test_check_backup_integrity_of_a_file(tmp_path):
    f = tmp_path / "b.sql"
    f.write_bytes(b"abc")
    m = dict(sha256=hashlib.sha256(b"abc").hexdigest(), size=3)
    mf.check_backup_integrity(str(f), m)
    f.write_bytes(b"abd")
    with pytest.raises(DbopsError, match="does not match its manifest"):
        mf.check_backup_integrity(str(f), m)
    with pytest.raises(DbopsError, match="does not exist"):
        mf.check_backup_integrity(str(tmp_path / "missing"), m)


# --------------------------------------------------------------------------
# streaming: the hashing thread, background fdatasync, wide pipes
# --------------------------------------------------------------------------

def test_stream_hasher_gives_hashlibs_sha256_of_the_chunks_in_order():
    chunks = [os.urandom(n) for n in (0, 1, 2047, 2048, pl.CHUNK, 65536, 3, pl.CHUNK + 17)] * 3
    h = pl.StreamHasher(maxsize=2)  # a small queue: the feeder has to wait for the thread
    for chunk in chunks:
        h.update(chunk)
    assert h.finish().hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    h.close()  # idempotent


class FailingHash:
    """A hash object that fails on its third chunk (as a MemoryError or a broken hashlib would)."""

    def __init__(self):
        self.n = 0

    def update(self, _chunk):
        self.n += 1
        if self.n == 3:
            raise MemoryError("simulated hashing failure")


def test_stream_hasher_failure_is_raised_and_never_blocks_the_feeder():
    h = pl.StreamHasher(factory=FailingHash, maxsize=1)
    # after the failure the thread keeps taking chunks, so update() never blocks on a full queue
    with pytest.raises(DbopsError, match="sha256 .*failed.*simulated hashing failure"):
        for _chunk in range(1000):
            h.update(b"x" * 4096)
    with pytest.raises(DbopsError, match="simulated hashing failure"):
        h.finish()


def test_pipeline_a_failing_hashing_thread_fails_the_run_and_kills_every_stage(tmp_path, monkeypatch):
    real = pl.StreamHasher
    monkeypatch.setattr(pl, "StreamHasher", lambda: real(factory=FailingHash))
    src = tmp_path / "src"
    src.write_bytes(os.urandom(4 * pl.CHUNK))
    pipes = []
    real_start = pl.Pipeline._start
    monkeypatch.setattr(pl.Pipeline, "_start", lambda self, capture_last: (pipes.append(self),
                                                                           real_start(self, capture_last))[1])
    with pytest.raises(DbopsError, match="simulated hashing failure"):
        run_to_tmp(tmp_path, [pl.Stage("cat", ["cat", str(src)]), pl.Stage("cat2", ["cat"])])
    assert all(st.proc.poll() is not None for st in pipes[0].stages)


def test_pipeline_a_failing_hashing_thread_at_the_last_chunk_still_fails(tmp_path, monkeypatch):
    class FailsAtTheEnd:
        def __init__(self):
            self.h = hashlib.sha256()

        def update(self, chunk):
            self.h.update(chunk)

        def hexdigest(self):
            return self.h.hexdigest()

    class LateFailure(pl.StreamHasher):
        def finish(self):
            self.error = IOError("failed after the last chunk")
            return super().finish()

    monkeypatch.setattr(pl, "StreamHasher", lambda: LateFailure(factory=FailsAtTheEnd))
    with pytest.raises(DbopsError, match="failed after the last chunk"):
        run_to_tmp(tmp_path, [pl.Stage("printf", ["printf", "abc"])])


def test_pipeline_background_fdatasync_runs_while_streaming_and_the_hash_is_unchanged(tmp_path, monkeypatch):
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(c.os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    src = tmp_path / "src"
    src.write_bytes(os.urandom(5 * pl.CHUNK + 99))
    out = tmp_path / "out"
    fd = os.open(str(out), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        pipe = pl.Pipeline([pl.Stage("cat", ["cat", str(src)])])
        assert pipe.run_to_file(fd, str(tmp_path), sync_every=pl.CHUNK)
    finally:
        os.close(fd)
    assert synced and set(synced) == {fd}
    assert out.read_bytes() == src.read_bytes()
    assert pipe.sha256.hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()


def test_pipeline_a_failed_background_fdatasync_fails_the_run(tmp_path, monkeypatch):
    import errno  # pylint: disable=import-outside-toplevel

    def eio(_fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(c.os, "fdatasync", eio)
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 * pl.CHUNK))
    fd = os.open(str(tmp_path / "out"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        pipe = pl.Pipeline([pl.Stage("cat", ["cat", str(src)])])
        with pytest.raises(DbopsError, match="Input/output error"):
            pipe.run_to_file(fd, str(tmp_path), sync_every=pl.CHUNK)
    finally:
        os.close(fd)
    assert all(st.proc.poll() is not None for st in pipe.stages)


def test_background_sync_requested_right_before_close_still_runs_and_raises(tmp_path, monkeypatch):
    """close() right after a request must not stop the thread before the sync (CI run of stop 22 lost it)."""
    import errno  # pylint: disable=import-outside-toplevel
    calls = []

    def eio(fd):
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(c.os, "fdatasync", eio)
    fd = os.open(str(tmp_path / "out"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _round in range(50):
            calls.clear()
            syncer = pl.BackgroundSync(fd, every=10)
            syncer.written(10)
            with pytest.raises(OSError, match="Input/output error"):
                syncer.close()
            assert calls == [fd]
    finally:
        os.close(fd)


@pytest.mark.skipif(pl.F_SETPIPE_SZ is None, reason="F_SETPIPE_SZ is Linux only")
def test_pipes_between_stages_are_widened():
    import fcntl  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    p = subprocess.Popen(["true"], stdout=subprocess.PIPE)
    try:
        pl.widen_pipe(p.stdout)
        assert fcntl.fcntl(p.stdout.fileno(), 1032) >= pl.PIPE_SIZE  # F_GETPIPE_SZ
    finally:
        p.stdout.close()
        p.wait()


def test_version_probe_runs_in_the_background_and_resolves():
    tools = dict(cat=dict(path="/bin/sh", version=tl.VersionProbe("/bin/sh")), other=dict(version="fixed"))
    got = tl.resolve_versions(tools)
    assert got["other"] == dict(version="fixed")
    assert isinstance(got["cat"]["version"], str) and got["cat"]["path"] == "/bin/sh"
    with pytest.raises(DbopsError, match="Cannot run /nonexistent/tool"):
        tl.resolve_versions(dict(x=dict(version=tl.VersionProbe("/nonexistent/tool"))))


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_sha256_tree_in_threads_is_the_documented_digest(tmp_path, workers):
    d = tmp_path / "b.dir"
    (d / "sub").mkdir(parents=True)
    contents = {"toc.dat": b"toc", "3001.dat.gz": os.urandom(3 * pl.CHUNK + 5), "3002.dat.gz": b"",
                "sub/blob_1.dat": os.urandom(1000)}
    for name, data in contents.items():
        (d / name).write_bytes(data)
    digest, files, size = pl.sha256_tree(str(d), workers=workers)
    want = {k: hashlib.sha256(v).hexdigest() for k, v in contents.items()}
    assert files == want and size == sum(len(v) for v in contents.values())
    text = "".join("%s  %s\n" % (want[k], k) for k in sorted(want))
    assert digest == hashlib.sha256(text.encode()).hexdigest()


def test_map_threads_keeps_the_order_and_raises_the_first_error():
    assert pl.map_threads(lambda x: x * 2, range(50), 4) == [x * 2 for x in range(50)]
    assert pl.map_threads(lambda x: x, [], 4) == []

    def boom(x):
        if x == 7:
            raise ValueError("item 7")
        return x
    with pytest.raises(ValueError, match="item 7"):
        pl.map_threads(boom, range(20), 3)


# --------------------------------------------------------------------------
# the stall watchdog (issue 10 item 11)
# --------------------------------------------------------------------------

def _alive(marker):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if marker.encode() in f.read():
                        return True
            except OSError:
                pass
    return False


def test_watchdog_stops_a_silent_pipeline_with_its_grandchildren_and_names_tool_server_and_phase(tmp_path):
    marker = "1000.%d" % os.getpid()
    # the stage is a wrapper whose child does the waiting: both must be stopped
    pipe = pl.Pipeline([pl.Stage("pg_dump", ["sh", "-c", "printf x; sleep %s & wait" % marker]),
                       pl.Stage("gzip", ["cat"])],
                       stall_timeout=0.5, where="server db1 port 5432, phase dump")
    out = tmp_path / "out"
    fd = os.open(str(out), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(pl.PipelineStalled) as e:
            pipe.run_to_file(fd, str(tmp_path))
    finally:
        os.close(fd)
    msg = str(e.value)
    assert "pg_dump made no progress for" in msg and "server db1 port 5432, phase dump" in msg
    assert [p["status"] for p in e.value.details["processes"]][0] == "killed by signal SIGKILL"
    assert not _alive(marker), "the wrapper's child survived the stop"


def test_watchdog_of_run_watches_the_directory_and_stops_a_silent_one(tmp_path):
    marker = "1001.%d" % os.getpid()
    d = tmp_path / "dir"
    pipe = pl.Pipeline([pl.Stage("pg_dump", ["sh", "-c", 'mkdir "$0"; printf a > "$0/toc.dat"; exec sleep %s' % marker,
                                             str(d)])], stall_timeout=0.5, where="phase dump", watch_path=str(d))
    with pytest.raises(pl.PipelineStalled, match="did not grow"):
        pipe.run()
    assert not _alive(marker)


def test_watchdog_lets_a_slow_but_steady_pipeline_finish(tmp_path):
    # a byte every 0.1 s for 1 s, watched with 20 times that interval: progress all the time, never a stall
    pipe = pl.Pipeline([pl.Stage("pg_dump", ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do printf x; sleep 0.1; done"])],
                       stall_timeout=2.0, where="phase dump")
    out = tmp_path / "out"
    fd = os.open(str(out), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert pipe.run_to_file(fd, str(tmp_path))
    finally:
        os.close(fd)
    assert out.read_bytes() == b"x" * 10


def test_failure_message_gives_the_error_line_not_only_the_last_one():
    pipe = pl.Pipeline([pl.Stage("pg_restore", ["sh", "-c", "echo 'pg_restore: error: could not execute query: ERROR:  "
                                                      "permission denied to create extension' >&2; "
                                                      "echo 'Command was: CREATE EXTENSION x;' >&2; exit 1"])])
    pipe.run()
    msg = str(pipe.failure("verify=restore"))
    assert "permission denied to create extension" in msg and "Command was" in msg


# --------------------------------------------------------------------------
# the file rules (issue 10 items 9, 10)
# --------------------------------------------------------------------------

def test_create_private_is_0600_and_never_follows_or_reuses(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link"
    os.symlink(str(victim), str(link))
    with pytest.raises(FileExistsError):
        fl.create_private(str(link))
    with pytest.raises(FileExistsError):
        fl.create_private(str(victim))
    old = os.umask(0)
    try:
        fd = fl.create_private(str(tmp_path / "new"))
    finally:
        os.umask(old)
    os.close(fd)
    assert stat.S_IMODE(os.stat(str(tmp_path / "new")).st_mode) == 0o600
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("kind", ["symlink", "file", "dangling"])
def test_rename_noreplace_never_replaces_nor_follows(tmp_path, kind):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    src = tmp_path / "src"
    src.write_text("backup")
    dst = tmp_path / "dst"
    if kind == "symlink":
        os.symlink(str(victim), str(dst))
    elif kind == "dangling":
        os.symlink(str(tmp_path / "nothing"), str(dst))
    else:
        dst.write_text("someone else's")
    with pytest.raises(c.DbopsError, match="appeared at"):
        fl.take_final_name(str(src), str(dst))
    assert victim.read_text() == "precious" and src.read_text() == "backup" and not (tmp_path / "nothing").exists()
    os.unlink(str(dst))
    fl.take_final_name(str(src), str(dst))
    assert dst.read_text() == "backup" and not src.exists()


def test_check_dest_refuses_unsafe_dests_and_creates_a_missing_one_0700(tmp_path):
    ww = tmp_path / "ww"
    ww.mkdir()
    os.chmod(str(ww), 0o777)
    with pytest.raises(c.DbopsError, match="no sticky bit"):
        fl.check_dest(str(ww))
    os.chmod(str(ww), 0o1777)
    assert fl.check_dest(str(ww)) == (True, None)
    other = tmp_path / "other"
    other.mkdir()
    os.chown(str(other), 65534, 65534)
    with pytest.raises(c.DbopsError, match="owned by"):
        fl.check_dest(str(other))
    dangling = tmp_path / "dangling"
    os.symlink(str(tmp_path / "gone"), str(dangling))
    with pytest.raises(c.DbopsError, match="which does not exist"):
        fl.check_dest(str(dangling))
    assert fl.check_dest(str(tmp_path / "new"), create=False) == (False, None) and not (tmp_path / "new").exists()
    assert fl.check_dest(str(tmp_path / "new")) == (True, None)
    assert stat.S_IMODE(os.stat(str(tmp_path / "new")).st_mode) == 0o700


def test_check_dest_when_another_run_creates_the_same_directories_at_once(tmp_path, monkeypatch):
    """The hosts of one play back up into <dir>/<host> at the same moment: the shared parent (or dest itself)
    made by another run between this run's look and its mkdir is accepted and checked like an existing dest
    (seen in a fleet run: [Errno 17] File exists on the parent). A link put there instead is still refused."""
    real_mkdir = os.mkdir

    def other_run_first(path, mode=0o777, **kw):
        real_mkdir(path, 0o700)  # the other host's run wins the race
        return real_mkdir(path, mode, **kw)  # FileExistsError for this one

    monkeypatch.setattr(os, "mkdir", other_run_first)
    dest = tmp_path / "backups" / "host1"
    assert fl.check_dest(str(dest)) == (True, None)
    assert dest.is_dir() and stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert fl.check_dest(str(dest), mode=0o750) == (True, "0700")  # an existing dest: its mode is reported
    monkeypatch.setattr(os, "mkdir", real_mkdir)

    target = tmp_path / "elsewhere"
    target.mkdir()

    def link_first(path, mode=0o777, **kw):
        os.symlink(str(target), path)
        return real_mkdir(path, mode, **kw)

    monkeypatch.setattr(os, "mkdir", link_first)
    with pytest.raises(c.DbopsError, match="Cannot create dest"):
        fl.check_dest(str(tmp_path / "backups" / "host2"))


def test_dest_mode_creates_sets_and_is_judged_in_check_mode_by_the_mode_it_would_set(tmp_path):
    mode = fl.parse_dest_mode("0750")
    # created with its mode (and missing parents 0700): a new directory is not a mode change
    new = tmp_path / "a" / "b"
    assert fl.check_dest(str(new), mode=mode) == (True, None)
    assert stat.S_IMODE(new.stat().st_mode) == 0o750 and stat.S_IMODE(new.parent.stat().st_mode) == 0o700
    # an existing directory with another mode: reported, left alone in check mode, set otherwise
    os.chmod(str(new), 0o755)
    assert fl.check_dest(str(new), create=False, mode=mode) == (True, "0755")
    assert stat.S_IMODE(new.stat().st_mode) == 0o755
    assert fl.check_dest(str(new), mode=mode) == (True, "0755")
    assert stat.S_IMODE(new.stat().st_mode) == 0o750
    assert fl.check_dest(str(new), mode=mode) == (True, None)
    # a world-writable dest is refused without dest_mode, fixed with one (check mode judges the mode it would set)
    os.chmod(str(new), 0o777)
    with pytest.raises(c.DbopsError, match="no sticky bit"):
        fl.check_dest(str(new), create=False)
    assert fl.check_dest(str(new), create=False, mode=0o700) == (True, "0777")
    assert fl.check_dest(str(new), mode=0o700) == (True, "0777") and stat.S_IMODE(new.stat().st_mode) == 0o700
    # a symlink to a directory: its target's mode (as ansible.builtin.file follows it)
    link = tmp_path / "link"
    os.symlink(str(new), str(link))
    assert fl.check_dest(str(link), mode=0o750) == (True, "0700") and stat.S_IMODE(new.stat().st_mode) == 0o750


@pytest.mark.parametrize("bad, why", [
    ("", "not a mode"), ("rwx", "not a mode"), ("0o700", "not a mode"), ("07000", "not a mode"), ("0800", "not a mode"),
    (" 700; chmod 777 /", "not a mode"), ("0500", "u\\+rwx"), ("0600", "u\\+rwx"), ("0702", "o\\+w"), ("0777", "o\\+w"),
])
def test_dest_mode_refuses_what_is_not_a_safe_mode(bad, why):
    with pytest.raises(c.DbopsError, match=why):
        fl.parse_dest_mode(bad)


def test_workdir_is_private_unpredictable_and_removed(tmp_path):
    a, b = fl.WorkDir(str(tmp_path)), fl.WorkDir(str(tmp_path))
    assert a.path != b.path and os.path.basename(a.path).startswith(fl.TMP_PREFIX)
    assert stat.S_IMODE(os.stat(a.path).st_mode) == 0o700
    a.cleanup()
    b.cleanup()
    assert os.listdir(str(tmp_path)) == []


def test_stale_cleanup_leaves_other_users_entries_alone(tmp_path):
    dead = 2 ** 22 + 4321
    mine = tmp_path / ("%s%d.%s-x" % (fl.TMP_PREFIX, dead, fl.host_tag()))
    theirs = tmp_path / ("%s%d.%s-y" % (fl.TMP_PREFIX, dead, fl.host_tag()))
    mine.mkdir()
    theirs.write_text("not ours")
    os.chown(str(theirs), 65534, 65534)
    assert fl.cleanup_stale_tmp(str(tmp_path)) == [mine.name]
    assert theirs.exists()


@pytest.mark.parametrize("busy", [True, False])
def test_watchdog_counts_a_busy_server_as_progress(busy):
    # a restore waiting for a long statement (an index build) sends nothing: the server says it is working
    asked = []
    pipe = pl.Pipeline([pl.Stage("pg_restore", ["sleep", "1.5"])], stall_timeout=0.3, where="phase verify=restore",
                       server_busy=lambda: asked.append(1) or busy)
    pipe.CHECK_EVERY = 0.1  # look often: the stage is silent for 5 times the stall_timeout, at least
    if busy:
        assert pipe.run() and asked
    else:
        with pytest.raises(pl.PipelineStalled, match="pg_restore made no progress"):
            pipe.run()
