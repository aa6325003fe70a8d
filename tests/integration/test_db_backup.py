"""db_backup / db_restore / db_clone through ansible-playbook against the real servers of the harness."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import threading
import time

import pytest

BACKUP = "dbops.maintenance.db_backup"
RESTORE = "dbops.maintenance.db_restore"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def _one_db(servers, names):
    from conftest import DB  # pylint: disable=import-outside-toplevel
    for name in names:
        if name in servers:
            server = servers[name]
            db = DB(server, server.create_database())
            return db
    pytest.skip("none of %s started" % ", ".join(names))
    return None


@pytest.fixture
def one_pg_db(servers):
    """A fresh database on one PostgreSQL server (16, else 15): for tests where the version does not matter."""
    db = _one_db(servers, ["pg16", "pg15"])
    yield db
    db.server.drop_database(db.name)


@pytest.fixture
def engine_db(request, servers, tmp_path):
    """A fresh database of the engine named by the test's `engine` parameter."""
    engine = request.node.callspec.params["engine"]
    if engine == "sqlite":
        yield request.getfixturevalue("sqlite_db")
        return
    db = _one_db(servers, ["pg16", "pg15"] if engine == "postgresql" else ["mariadb"])
    yield db
    db.server.drop_database(db.name)


def seed(db, rows=200):
    """Two tables (one mixed-case) with text, unicode, binary, decimal, time and JSON values."""
    if db.engine == "postgresql":
        db.execute('CREATE TABLE "Orders" (id int PRIMARY KEY, note text, raw bytea, amount numeric(12,2), '
                   'at timestamptz, doc jsonb)')
        db.execute('INSERT INTO "Orders" SELECT g, \'ünï ✓ \' || g, decode(md5(g::text), \'hex\'), g * 1.25, '
                   'timestamptz \'2024-01-01 00:00:00+00\' + g * interval \'1 minute\', '
                   'jsonb_build_object(\'k\', g) FROM generate_series(1, %d) g' % rows)
        db.execute("CREATE TABLE items (id int PRIMARY KEY, order_id int REFERENCES \"Orders\"(id), qty int)")
        db.execute("INSERT INTO items SELECT g, g, mod(g, 7) FROM generate_series(1, %d) g" % rows)
        return ["Orders", "items"]
    if db.engine == "mysql":
        db.execute("CREATE TABLE `Orders` (id int PRIMARY KEY, note varchar(100) CHARACTER SET utf8mb4, raw blob, "
                   "amount decimal(12,2), at datetime, doc json)")
        db.execute("INSERT INTO `Orders` SELECT seq, CONCAT('ünï ✓ ', seq), UNHEX(MD5(seq)), seq * 1.25, "
                   "'2024-01-01' + INTERVAL seq MINUTE, JSON_OBJECT('k', seq) FROM seq_1_to_%d" % rows)
        db.execute("CREATE TABLE items (id int PRIMARY KEY, order_id int, qty int)")
        db.execute("INSERT INTO items SELECT seq, seq, MOD(seq, 7) FROM seq_1_to_%d" % rows)
        return ["Orders", "items"]
    db.execute('CREATE TABLE "Orders" (id INTEGER PRIMARY KEY, note TEXT, raw BLOB, amount REAL)')
    conn = db.connect()
    conn.executemany('INSERT INTO "Orders" VALUES (?, ?, ?, ?)',
                     [(i, "ünï ✓ %d" % i, hashlib.md5(str(i).encode()).digest(), i * 1.25) for i in range(1, rows + 1)])
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER, qty INTEGER)")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, i, i % 7) for i in range(1, rows + 1)])
    conn.close()
    return ["Orders", "items"]


def quote(engine, name):
    return "`%s`" % name if engine == "mysql" else '"%s"' % name


def fingerprint(db, tables, database=None):
    """{table: (row count, sha256 of every row in id order)}."""
    out = {}
    for t in tables:
        q = "SELECT * FROM %s ORDER BY id" % quote(db.engine, t)
        rows = db.server.query(database, q) if database else db.query(q)
        h = hashlib.sha256()
        for r in rows:
            h.update(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)).encode())
        out[t] = (len(rows), h.hexdigest())
    return out


def files_in(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def assert_nothing_left(dest):
    left = files_in(dest)
    assert left == [], "the failed backup left files behind: %s" % left


def password_of(db):
    return db.params.get("login_password")


# --------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------

def test_round_trip_with_verify_restore(ansible, db, tmp_path):
    tables = seed(db)
    before = fingerprint(db, tables)
    dest = tmp_path / "bk"
    r = ansible.run(BACKUP, dict(db.params, dest=str(dest), verify="restore", keep_last=3),
                    expect_failure=False)
    assert r.changed and r["verified"] == "restore"
    m = r["manifest"]
    assert os.path.exists(r["path"]) and os.path.exists(r["manifest_path"])
    assert m["sha256"] == hashlib.sha256(open(r["path"], "rb").read()).hexdigest()
    assert m["size"] == os.path.getsize(r["path"]) == r["size"]
    assert sorted(t["name"].split(".")[-1] for t in m["tables"]) == sorted(tables)
    assert m["row_counts"] and all(v == 200 for v in m["row_counts"].values())
    assert m["server"]["version"] and m["tools"]
    if db.engine == "postgresql":
        assert r["path"].endswith(".dump")
        major = int(db.server.version.split(".")[0])
        assert "(PostgreSQL) %d" % major in m["tools"]["pg_dump"]["version"]
    else:
        assert r["path"].endswith(".sql.gz")
    assert password_of(db) not in json.dumps(m) and password_of(db) not in json.dumps(dict(r))
    # the scratch database of verify=restore is gone (its own name: the servers are shared with other runs)
    scratch = [c["result"]["scratch_database"] for c in m["verification"]["checks"] if c["check"] == "restore"]
    assert len(scratch) == 1 and scratch[0].startswith("dbops_scratch_verify_")
    if db.engine == "postgresql":
        left = db.query("SELECT datname FROM pg_database WHERE datname = %s", [scratch[0]])
    else:
        left = db.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [scratch[0]])
    assert left == []

    target = db.name + "_r"
    rep = None
    try:
        rr = ansible.run(RESTORE, dict(db.server.params(), database=target, backup=r["manifest_path"]),
                         expect_failure=False)
        assert rr.changed and rr["row_counts"]
        assert fingerprint(db, tables, database=target) == before
        # the target now has tables: a second restore refuses without replace
        again = ansible.run(RESTORE, dict(db.server.params(), database=target, backup=r["path"]))
        assert again.failed and "not empty" in again["msg"] and "replace" in again["msg"]
        db.server.execute(target, "DELETE FROM items WHERE id > 10")
        rep = ansible.run(RESTORE, dict(db.server.params(), database=target, backup=r["path"], replace=True),
                          expect_failure=False)
        assert rep["replaced"].startswith(target + "_dbops_replaced_")
        assert fingerprint(db, tables, database=target) == before
        assert fingerprint(db, tables, database=rep["replaced"]) != before  # the replaced copy kept, as it was
    finally:
        db.server.drop_database(target)
        if rep is not None and rep.get("replaced"):
            db.server.drop_database(rep["replaced"])


@pytest.mark.parametrize("fmt,compression", [("plain", "zstd"), ("directory", "gzip")])
def test_pg_formats_round_trip(ansible, one_pg_db, tmp_path, fmt, compression):
    pg_db = one_pg_db
    tables = seed(pg_db, rows=50)
    before = fingerprint(pg_db, tables)
    args = dict(pg_db.params, dest=str(tmp_path), format=fmt, compression=compression, verify="restore")
    if fmt == "directory":
        args["jobs"] = 2
    r = ansible.run(BACKUP, args, expect_failure=False)
    assert r["path"].endswith(".sql.zst" if fmt == "plain" else ".dir")
    if fmt == "directory":
        assert os.path.isdir(r["path"]) and r["manifest"]["files"]
        # size is the total of the directory's files (AnsibleModule once replaced it with the directory's st_size)
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(r["path"]) for f in fs)
        assert r["size"] == r["manifest"]["size"] == total > 0
        assert "state" not in r and "mode" not in r
        # pg_dump's own files are private from their creation too (the module's umask), not only its directory
        assert stat.S_IMODE(os.stat(r["path"]).st_mode) == 0o700
        for d, _s, fs in os.walk(r["path"]):
            for f in fs:
                assert stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode) == 0o600, f
    else:
        assert r["size"] == r["manifest"]["size"] == os.path.getsize(r["path"])
    target = pg_db.name + "_r"
    try:
        ansible.run(RESTORE, dict(pg_db.server.params(), database=target, backup=r["path"], jobs=2),
                    expect_failure=False)
        assert fingerprint(pg_db, tables, database=target) == before
    finally:
        pg_db.server.drop_database(target)


def test_sqlite_round_trip(ansible, sqlite_db, tmp_path):
    tables = seed(sqlite_db)
    before = fingerprint(sqlite_db, tables)
    r = ansible.run(BACKUP, dict(sqlite_db.params, dest=str(tmp_path / "bk"), compression="zstd",
                                 verify="restore"), expect_failure=False)
    assert r["path"].endswith(".sqlite3.zst") and r["verified"] == "restore"
    target = tmp_path / "restored.sqlite3"
    rr = ansible.run(RESTORE, dict(engine="sqlite", database=str(target), backup=r["path"]), expect_failure=False)
    assert rr["row_counts"] == {"Orders": 200, "items": 200}
    copy = type(sqlite_db)(target)
    assert fingerprint(copy, tables) == before


def test_backup_of_the_mysql_system_database_passes_verify(ansible, servers, tmp_path):
    """mariadb-dump writes only the structure of mysql.general_log, slow_log and transaction_registry (CREATE TABLE
    IF NOT EXISTS, no rows): the manifest says so and verification expects exactly that (issue 10 item 4)."""
    if "mariadb" not in servers:
        pytest.skip("mariadb not started")
    srv = servers["mariadb"]
    r = ansible.run(BACKUP, dict(srv.params("mysql"), dest=str(tmp_path / "bk"), verify="list"))
    assert not r.failed, r["msg"]
    m = r["manifest"]
    assert r["verified"] == "list"
    assert m["tables_without_data"] == ["general_log", "slow_log", "transaction_registry"]
    names = set(t["name"] for t in m["tables"])
    base = set(row[0] for row in srv.query("mysql", "SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
                                                    "TABLE_SCHEMA = 'mysql' AND TABLE_TYPE = 'BASE TABLE'"))
    assert names == base and {"general_log", "slow_log", "transaction_registry", "db", "global_priv"} <= names
    # what the dump holds, read independently: a CREATE TABLE for every listed table, no rows of the three
    text = subprocess.run(["gzip", "-dc", r["path"]], capture_output=True, check=True).stdout
    for t in names:
        assert (b"CREATE TABLE `%s`" % t.encode() in text or b"CREATE TABLE IF NOT EXISTS `%s`" % t.encode() in text), t
    for t in m["tables_without_data"]:
        assert b"INSERT INTO `%s`" % t.encode() not in text


# --------------------------------------------------------------------------
# consistency under concurrent writes
# --------------------------------------------------------------------------

class Transfers(threading.Thread):
    """Moves money between accounts in transactions: the total never changes in a consistent snapshot."""

    def __init__(self, db):
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.done = 0

    def run(self):
        conn = self.db.connect(autocommit=False) if self.db.engine != "sqlite" else None
        if conn is None:
            import sqlite3  # pylint: disable=import-outside-toplevel
            conn = sqlite3.connect(self.db.name, timeout=30)
        i = 0
        while not self.stop.is_set():
            i += 1
            a, b = i % 50 + 1, (i * 7) % 50 + 1
            cur = conn.cursor()
            ph = "?" if self.db.engine == "sqlite" else "%s"
            cur.execute("UPDATE accounts SET balance = balance - 3 WHERE id = %s" % ph, (a,))
            cur.execute("INSERT INTO ledger (account, delta) VALUES (%s, 3)" % ph, (b,))
            cur.execute("UPDATE accounts SET balance = balance + 3 WHERE id = %s" % ph, (b,))
            conn.commit()
            self.done += 1
        conn.close()


class Background(threading.Thread):
    """ansible.run(...) in a thread, so the test can act on events while the module runs."""

    def __init__(self, ansible, module, args):
        super().__init__(daemon=True)
        self.ansible, self.module, self.args = ansible, module, args
        self.result, self.error = None, None

    def run(self):
        try:
            self.result = self.ansible.run(self.module, self.args)
        except BaseException as e:  # pylint: disable=broad-except
            self.error = e

    def outcome(self, timeout=900):
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


def wait_until(what, predicate, while_alive):
    """Poll predicate() until true (an event: a server-side state, a counter, a file). Fails when the module
    thread ended first (it would never happen then)."""
    while not predicate():
        if not while_alive.is_alive():
            res = while_alive.result
            raise AssertionError("the module ended before %s: %s" % (what, res["msg"] if res else while_alive.error))
        time.sleep(0.02)


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_backup_is_consistent_while_another_process_writes(ansible, engine, engine_db, tmp_path):
    """Writes are made while the dump is known to be running (seen from the server, or the SQLite copy known to
    be taken): the dump is held at a gate (a lock on a table it reads first; for SQLite the compressor that runs
    after the copy) until the writer has committed 20 more transfers, and only those count."""
    db = engine_db
    serial = {"postgresql": "serial", "mysql": "int AUTO_INCREMENT", "sqlite": "INTEGER"}[engine]
    db.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
    db.execute("CREATE TABLE ledger (id %s PRIMARY KEY, account int, delta int)" % serial)
    db.execute("CREATE TABLE aa_gate (id int PRIMARY KEY)")
    if engine == "sqlite":
        db.execute("PRAGMA journal_mode=WAL")
    values = ", ".join("(%d, 1000)" % i for i in range(1, 51))
    db.execute("INSERT INTO accounts VALUES %s" % values)
    args = dict(db.params, dest=str(tmp_path / "bk"), verify="list")
    holder = None
    flag = tmp_path / "go"
    if engine == "sqlite":
        started = tmp_path / "started"
        args["tool_path"] = make_tool_dir(tmp_path, "/usr/bin", {
            "gzip": 'if [ "$1" = --version ]; then exec /usr/bin/gzip --version; fi\n'
                    'touch %s\nn=0; while [ ! -e %s ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done\n'
                    'exec /usr/bin/gzip "$@"\n' % (started, flag)})

        def dump_is_running():
            return started.exists()
    else:
        holder = db.connect(autocommit=False)
        cur = holder.cursor()
        if engine == "postgresql":
            cur.execute("LOCK TABLE aa_gate IN ACCESS EXCLUSIVE MODE")

            def dump_is_running():
                # pg_dump (its application_name is the module's) waiting for its share lock on the gate
                return bool(db.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND "
                                     "wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE %%aa_gate%%'"))
        else:
            cur.execute("LOCK TABLES aa_gate WRITE")

            def dump_is_running():
                return bool(db.query("SELECT 1 FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                                     "STATE LIKE 'Waiting for table metadata lock' AND INFO LIKE '%%gate%%'",
                                     [db.name]))
    writer = Transfers(db)
    writer.start()
    job = Background(ansible, BACKUP, args)
    try:
        job.start()
        wait_until("the dump was seen running", dump_is_running, job)
        at_start = writer.done
        wait_until("20 transfers during the dump", lambda: writer.done >= at_start + 20, job)
        during = writer.done - at_start
    finally:
        if holder is not None:
            if engine == "postgresql":
                holder.commit()
            else:
                holder.cursor().execute("UNLOCK TABLES")
            holder.close()
        flag.write_text("go")
        r = job.outcome()
        writer.stop.set()
        writer.join(30)
    assert not r.failed, r["msg"]
    assert during >= 20, "the writer did not write while the dump ran"
    if engine == "sqlite":
        target = str(tmp_path / "copy.sqlite3")
        ansible.run(RESTORE, dict(engine="sqlite", database=target, backup=r["path"]), expect_failure=False)
        copy = type(db)(target)
        total, ledger = copy.query("SELECT sum(balance) FROM accounts")[0][0], copy.query("SELECT count(*) FROM ledger")[0][0]
    else:
        target = db.name + "_r"
        ansible.run(RESTORE, dict(db.server.params(), database=target, backup=r["path"]), expect_failure=False)
        try:
            total = db.server.query(target, "SELECT sum(balance) FROM accounts")[0][0]
            ledger = db.server.query(target, "SELECT count(*) FROM ledger")[0][0]
        finally:
            db.server.drop_database(target)
    assert int(total) == 50 * 1000, "the backup is not one consistent snapshot"
    # the backup is the state from before the dump was seen waiting: none of the writes made during it
    assert ledger <= at_start, "the backup has %d transfers, only %d were done when the dump began" % (ledger, at_start)


# --------------------------------------------------------------------------
# failures leave nothing behind
# --------------------------------------------------------------------------

def make_tool_dir(tmp_path, real_dir, scripts, links=()):
    d = tmp_path / "tools"
    d.mkdir()
    for name in links:
        os.symlink(os.path.join(real_dir, name), d / name)
    for name, text in scripts.items():
        (d / name).write_text("#!/bin/bash\n" + text)
        os.chmod(d / name, 0o755)
    return str(d)


def test_pg_dump_killed_midway_leaves_no_file_and_no_manifest(ansible, pg_db, tmp_path):
    pg_db.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g")
    real = pg_db.server.info["bin_dir"]
    tools = make_tool_dir(tmp_path, real, {
        # writes part of the real dump, then dies by SIGKILL
        "pg_dump": 'if [ "$1" = --version ]; then exec %s/pg_dump --version; fi\n'
                   '%s/pg_dump "$@" | head -c 20000\nkill -KILL $$\n' % (real, real),
    }, links=["pg_restore", "psql"])
    dest = tmp_path / "bk"
    r = ansible.run(BACKUP, dict(pg_db.params, dest=str(dest), tool_path=tools, format="plain", compression="none"))
    assert r.failed
    assert "pg_dump killed by signal SIGKILL" in r["msg"]
    assert [p["status"] for p in r["processes"]] == ["killed by signal SIGKILL"]
    assert_nothing_left(dest)


def test_failing_compressor_fails_the_task(ansible, mysql_db, tmp_path):
    seed(mysql_db, rows=20)
    tools = make_tool_dir(tmp_path, "/usr/bin", {
        "gzip": 'if [ "$1" = --version ]; then echo "gzip 1.12"; exit 0; fi\n'
                'head -c 100 >/dev/null; echo "gzip: simulated write error" >&2; exit 3\n',
    })
    dest = tmp_path / "bk"
    r = ansible.run(BACKUP, dict(mysql_db.params, dest=str(dest), tool_path=tools))
    assert r.failed
    assert "gzip exit code 3" in r["msg"] and "simulated write error" in r["msg"]
    statuses = {p["name"]: p for p in r["processes"]}
    assert statuses["gzip"]["rc"] == 3
    assert_nothing_left(dest)


def test_pg_compression_the_tool_lacks_gives_a_clear_error(ansible, one_pg_db, tmp_path):
    pg_db = one_pg_db
    r = ansible.run(BACKUP, dict(pg_db.params, dest=str(tmp_path / "bk"), compression="zstd"))
    assert r.failed and "zstd" in r["msg"] and "format plain" in r["msg"]
    assert_nothing_left(tmp_path / "bk")


@pytest.mark.parametrize("server_name", ["pg15", "pg16"])
def test_pg_compression_the_tool_lacks_is_refused_in_check_mode_too(ansible, servers, tmp_path, server_name):
    if server_name not in servers:
        pytest.skip("%s not started" % server_name)
    server = servers[server_name]
    from conftest import DB  # pylint: disable=import-outside-toplevel
    pg_db = DB(server, server.create_database())
    try:
        args = dict(pg_db.params, dest=str(tmp_path / "bk"), compression="zstd", format="directory")
        real = ansible.run(BACKUP, args)
        check = ansible.run(BACKUP, args, check=True)
        assert real.failed and check.failed
        assert check["msg"] == real["msg"] and "zstd" in check["msg"] and "format plain" in check["msg"]
        dest = tmp_path / "bk"
        assert not dest.exists() or os.listdir(dest) == []
        ok = ansible.run(BACKUP, dict(args, compression="gzip"), check=True, expect_failure=False)
        assert ok.changed and (not dest.exists() or os.listdir(dest) == [])
    finally:
        server.drop_database(pg_db.name)


# --------------------------------------------------------------------------
# retention and reuse
# --------------------------------------------------------------------------

def test_retention_removes_only_own_backups_oldest_first(ansible, sqlite_db, tmp_path):
    seed(sqlite_db, rows=5)
    dest = tmp_path / "bk"
    dest.mkdir()
    foreign = ["notes.txt", "mydb-20200101T000000Z.sqlite3.gz", "other-20200101T000000Z.sqlite3.gz"]
    for f in foreign:
        (dest / f).write_text("not ours")
    # a manifest of another tool with a similar name is not ours either
    (dest / "mydb-20200101T000000Z.sqlite3.gz.manifest.json").write_text(json.dumps({"kind": "other"}))
    paths = []
    for _round in range(3):
        r = ansible.run(BACKUP, dict(sqlite_db.params, dest=str(dest), label="mydb", keep_last=2),
                        expect_failure=False)
        paths.append(r["path"])
        time.sleep(1.05)  # distinct timestamps
    assert r["pruned"] == [paths[0]]
    present = set(files_in(dest))
    for p in paths[:1]:
        assert os.path.basename(p) not in present and os.path.basename(p) + ".manifest.json" not in present
    for p in paths[1:]:
        assert os.path.basename(p) in present
    for f in foreign:
        assert f in present


def test_reuse_within_makes_the_second_run_unchanged(ansible, one_pg_db, tmp_path):
    pg_db = one_pg_db
    seed(pg_db, rows=10)
    args = dict(pg_db.params, dest=str(tmp_path), reuse_within="1h")
    first = ansible.run(BACKUP, args, expect_failure=False)
    second = ansible.run(BACKUP, args, expect_failure=False)
    assert first.changed and not second.changed
    assert second["reused"] and second["path"] == first["path"]
    # a stronger verification than the existing one's is not satisfied by it
    third = ansible.run(BACKUP, dict(args, verify="restore"), expect_failure=False)
    assert third.changed and third["path"] != first["path"]


def test_check_mode_writes_nothing(ansible, mysql_db, tmp_path):
    seed(mysql_db, rows=5)
    dest = tmp_path / "bk"
    r = ansible.run(BACKUP, dict(mysql_db.params, dest=str(dest)), check=True, expect_failure=False)
    assert r.changed and r["path"].startswith(str(dest))
    assert not dest.exists()


# --------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------

def recording_tool_dir(tmp_path, real_dirs, names, record):
    """tool_path with a wrapper for each tool: it writes its own argv (NUL-separated) to a file of its own in the
    directory `record` before it execs the real tool, so every command line of every process the module starts is
    seen, however short it lives (no polling of /proc); one file per process, so the records of tools that run at
    the same time (mariadb-dump | gzip) cannot interleave."""
    scripts = {}
    for name in names:
        real = next(os.path.join(d, name) for d in real_dirs if os.path.exists(os.path.join(d, name)))
        scripts[name] = ('printf "%%s\\0" "$0" "$@" > %s/$$.argv\n'
                         'exec %s "$@"\n' % (record, real))
    return make_tool_dir(tmp_path, real_dirs[0], scripts)


def recorded_argvs(record):
    return [p.read_text().split("\0")[:-1] for p in sorted(record.iterdir())]


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_password_never_in_any_command_line_manifest_or_verbose_output(ansible, engine, engine_db, tmp_path):
    db = engine_db
    seed(db, rows=20)
    record = tmp_path / "argv"
    record.mkdir()
    if engine == "postgresql":
        names, dirs = ["pg_dump", "pg_restore", "psql"], [db.server.info["bin_dir"]]
    else:
        names, dirs = ["mariadb-dump", "mariadb", "gzip"], ["/usr/bin"]
    tools = recording_tool_dir(tmp_path, dirs, names, record)
    r = ansible.run(BACKUP, dict(db.params, dest=str(tmp_path / "bk"), tool_path=tools, verify="restore"),
                    verbosity=4, expect_failure=False)
    runs = recorded_argvs(record)
    seen = set(os.path.basename(argv[0]) for argv in runs if "--version" not in argv)
    want = {"pg_dump", "pg_restore"} if engine == "postgresql" else {"mariadb-dump", "mariadb", "gzip"}
    assert want <= seen, "not every tool ran through its wrapper: %s" % sorted(seen)
    leaks = [argv for argv in runs if any(password_of(db) in a for a in argv)]
    assert leaks == []
    assert password_of(db) not in r.stdout and password_of(db) not in r.stderr
    assert password_of(db) not in open(r["manifest_path"]).read()
    # the private directory of the option file the tools were given (its own name: the host is shared) is gone
    option_files = set(a.split("=", 1)[1] for argv in runs for a in argv if a.startswith("--defaults-file="))
    assert (engine == "mysql") == bool(option_files)
    for path in option_files:
        assert os.path.basename(os.path.dirname(path)).startswith("dbops-secret-")
        assert not os.path.exists(os.path.dirname(path)), "the 0600 option file was not removed"


# --------------------------------------------------------------------------
# clear errors
# --------------------------------------------------------------------------

def test_wrong_password_is_a_clear_error(ansible, db, tmp_path):
    r = ansible.run(BACKUP, dict(db.params, login_password="wrong-password", dest=str(tmp_path / "bk")))
    assert r.failed and "Cannot connect" in r["msg"]
    assert "wrong-password" not in r["msg"]
    assert_nothing_left(tmp_path / "bk")


@pytest.fixture
def mountpoint(tmp_path):
    mounted = []

    def mount(options):
        d = tmp_path / ("mnt%d" % len(mounted))
        d.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            pytest.skip("cannot mount a tmpfs here: %s" % proc.stderr.strip())
        mounted.append(d)
        return d
    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_unwritable_dest_is_a_clear_error(ansible, sqlite_db, mountpoint):
    seed(sqlite_db, rows=5)
    ro = mountpoint("size=1m,ro")
    r = ansible.run(BACKUP, dict(sqlite_db.params, dest=str(ro)))
    assert r.failed and "Cannot write into" in r["msg"] and str(ro) in r["msg"]
    r = ansible.run(BACKUP, dict(sqlite_db.params, dest=str(ro / "sub")))
    assert r.failed and "Cannot create dest" in r["msg"]


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_full_disk_is_a_clear_error_and_leaves_nothing(ansible, engine, engine_db, mountpoint):
    db = engine_db
    if engine == "postgresql":
        db.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v "
                   "FROM generate_series(1, 60000) g")
    else:
        db.execute("CREATE TABLE big (id int PRIMARY KEY, v varchar(64))")
        db.execute("INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq + 1)) FROM seq_1_to_60000")
    small = mountpoint("size=2m")
    args = dict(db.params, dest=str(small), compression="none")
    if engine == "postgresql":
        args["format"] = "plain"
    r = ansible.run(BACKUP, args)
    assert r.failed and "No space left" in r["msg"], r["msg"]
    assert_nothing_left(small)
