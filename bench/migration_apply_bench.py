"""Benchmark: migration_apply vs dbmate on the same migration files, side by side in one run.

(a) Throughput: N (default 1,000) pending small dbmate migrations (one ``CREATE TABLE`` each, in a transaction, as
    dbmate runs them) on PostgreSQL 15 and on SQLite. On twin databases, alternately (A B A B ...; fresh twins for
    every repetition): ``dbmate --no-dump-schema migrate`` (the Go binary itself, not the npm shim) and the
    migration_apply module as Ansible runs it on the host (``python plugins/modules/migration_apply.py args.json``:
    interpreter start, imports, connect, the maintenance lock, the status, the lint gate over every pending file,
    each migration in its transaction with its history row). After each run both databases are checked: N tables
    and N history rows, and dbmate's own ``status --exit-code`` is clean on ours. Goal: ours no slower than dbmate
    (median, lint gate on); ours with ``lint: false`` and one whole ansible-playbook run are reported too.
(b) Lock holder (PostgreSQL): another session holds a lock on the table for --hold (10) s (an open transaction that
    read it) while a migration needs ACCESS EXCLUSIVE on it (``ALTER TABLE ... ADD COLUMN``), and a reader
    selects from the table every 20 ms. dbmate's ALTER queues behind the holder and every reader queues behind
    the ALTER: the reader stalls ~10 s. migration_apply (lock_timeout 0.5 s, lock_retries 20) gives up after
    lock_timeout, lets the queue drain, retries whole: goal, the reader's longest stall <= lock_timeout + 0.2 s.

The commit and uncommitted files, ansible and server versions and the load before and after are recorded
(bench/benchlib.py). Prints a table; writes bench/results/migration_apply_<UTC>.json and .md. Exit 0 only when
every goal was evaluated and met (1 not met, 2 not evaluated).

    .venv/bin/python bench/migration_apply_bench.py [--state-dir DIR] [--size 1000] [--reps 3] [--hold 10]
      [--dbmate build/conformance/node/node_modules/.bin/dbmate]

Without --state-dir it starts PostgreSQL 15 with tests/harness/servers.py in a temporary state dir and stops it;
with it, it uses the running servers there (creates and drops its own databases dbops_applybench_*).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness import servers as harness  # noqa: E402  pylint: disable=wrong-import-position
sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

MODULE = REPO / "plugins" / "modules" / "migration_apply.py"
ALLOWANCE = 0.2
LAST_CPU = {}  # who -> CPU seconds (user + system) of the last run of that contender's process


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def find_dbmate(given):
    """The dbmate Go binary (the npm package's .bin/dbmate is a node shim that starts it)."""
    root = REPO / "build" / "conformance" / "node" / "node_modules"
    candidates = [str(root / "@dbmate" / "*" / "bin" / "dbmate"), str(root / ".bin" / "dbmate")]
    for pattern in ([given] if given else []) + candidates:
        for path in glob.glob(pattern):
            if os.access(path, os.X_OK):
                return os.path.realpath(path)
    raise SystemExit("dbmate not found: run scripts/install-conformance-tools.sh (or give --dbmate)")


def make_migrations(root, n):
    d = root / ("migrations-%d" % n)
    d.mkdir(parents=True)
    for i in range(n):
        (d / ("2026%010d_create_t%d.sql" % (i, i))).write_text(
            "-- migrate:up\nCREATE TABLE t%d (id integer PRIMARY KEY, note varchar(40));\n\n"
            "-- migrate:down\nDROP TABLE t%d;\n" % (i, i), encoding="utf-8")
    return d


# --------------------------------------------------------------------------
# databases
# --------------------------------------------------------------------------

def pg_connect(info, db, autocommit=True):
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(host=info["login_host"], port=info["login_port"], user=info["login_user"],
                           password=info["login_password"], dbname=db, autocommit=autocommit, connect_timeout=10)


def pg_recreate(info, db):
    with pg_connect(info, info["database"]) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
        conn.execute('CREATE DATABASE "%s"' % db)


def pg_drop(info, db):
    with pg_connect(info, info["database"]) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)


class Target:
    """One database of the bench: how dbmate and the module reach it, and how to count what was applied."""

    def __init__(self, engine, info, name, work):
        self.engine, self.info, self.name = engine, info, name
        self.path = str(work / (name + ".sqlite3")) if engine == "sqlite" else None

    @property
    def database(self):
        return self.path or self.name

    def recreate(self):
        if self.engine == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(self.path + suffix):
                    os.unlink(self.path + suffix)
            sqlite3.connect(self.path).close()
        else:
            pg_recreate(self.info, self.name)

    def drop(self):
        if self.engine == "sqlite":
            if os.path.exists(self.path):
                os.unlink(self.path)
        else:
            pg_drop(self.info, self.name)

    def url(self):
        if self.engine == "sqlite":
            return "sqlite:" + self.path
        i = self.info
        return "postgres://%s:%s@%s:%s/%s?sslmode=disable" % (
            urllib.parse.quote(i["login_user"], safe=""), urllib.parse.quote(i["login_password"], safe=""),
            i["login_host"], i["login_port"], self.name)

    def module_args(self, migrations, **extra):
        args = {"engine": self.engine, "database": self.database, "tool": "dbmate",
                "migrations_path": str(migrations), "create_table": True}
        if self.engine != "sqlite":
            args.update(login_host=self.info["login_host"], login_port=self.info["login_port"],
                        login_user=self.info["login_user"], login_password=self.info["login_password"])
        args.update(extra)
        return args

    def counts(self):
        """(tables t<i>, history rows)"""
        if self.engine == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name GLOB 't[0-9]*'"
                                      ).fetchone()[0]
                rows = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
            finally:
                conn.close()
            return tables, rows
        with pg_connect(self.info, self.name) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                                  "AND tablename ~ '^t[0-9]+$'").fetchone()[0]
            rows = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
        return tables, rows


# --------------------------------------------------------------------------
# the two contenders
# --------------------------------------------------------------------------

def run_dbmate(dbmate, target, migrations, command="migrate"):
    env = dict(os.environ, DATABASE_URL=target.url())
    cpu = children_cpu()
    t = time.perf_counter()
    p = subprocess.run([dbmate, "--migrations-dir", str(migrations), "--no-dump-schema", command], env=env,
                       capture_output=True, text=True, check=False, timeout=3600)
    elapsed = time.perf_counter() - t
    LAST_CPU["dbmate"] = children_cpu() - cpu
    if p.returncode != 0 and command == "migrate":
        raise RuntimeError("dbmate %s failed: %s" % (command, (p.stdout + p.stderr)[-2000:]))
    return elapsed, p


def run_module(target, migrations, work, **extra):
    args_file = write_private(work / "args.json", json.dumps({"ANSIBLE_MODULE_ARGS": target.module_args(
        migrations, **extra)}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "build" / "collections"))
    cpu = children_cpu()
    t = time.perf_counter()
    p = subprocess.run([sys.executable, str(MODULE), str(args_file)], env=env, capture_output=True, text=True,
                       check=False, timeout=3600)
    elapsed = time.perf_counter() - t
    LAST_CPU["migration_apply"] = children_cpu() - cpu
    try:
        out = json.loads(p.stdout)
    except ValueError:
        raise RuntimeError("migration_apply printed no JSON: %s" % (p.stdout + p.stderr)[-2000:]) from None
    if out.get("failed"):
        raise RuntimeError("migration_apply failed: %s" % out.get("msg"))
    return elapsed, out


def run_playbook(target, migrations, work):
    pb = write_private(work / "pb.yml", json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"dbops.maintenance.migration_apply": target.module_args(migrations)}]}]))
    inv = write_private(work / "inv", "localhost ansible_connection=local ansible_python_interpreter=%s\n"
                        % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "build" / "collections"), ANSIBLE_NOCOLOR="1")
    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(pb)], env=env,
                   capture_output=True, check=True, timeout=3600)
    return time.perf_counter() - t


# The floor of one commit per migration: the same statements per migration (BEGIN, the migration's body, the
# history row, COMMIT) from a bare driver loop in a fresh interpreter, with the durability dbmate's driver uses on
# SQLite (synchronous = NORMAL). No lock, no status, no lint, no Ansible: what any client that commits each
# migration on its own cannot go below (migration_apply commits SQLite migrations in groups: migrations/group.py).
BARE_LOOP = r"""
import sys, glob, os
engine, migrations = sys.argv[1], sys.argv[2]
target = os.environ['DBOPS_BARE_TARGET']  # not argv: the password
files = sorted(glob.glob(os.path.join(migrations, '*.sql')))
if engine == 'sqlite':
    import sqlite3
    c = sqlite3.connect(target, isolation_level=None)
    c.execute('PRAGMA synchronous = NORMAL')
    run = c.execute
else:
    import psycopg
    c = psycopg.connect(target, autocommit=True)
    run = c.execute
run('CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY)')
for f in files:
    body = open(f, encoding='utf-8').read().split('-- migrate:down')[0].replace('-- migrate:up', '', 1)
    version = os.path.basename(f).split('_', 1)[0]
    run('BEGIN')
    run(body)
    run("INSERT INTO schema_migrations (version) VALUES ('%s')" % version)
    run('COMMIT')
c.close()
"""


def run_bare(target, migrations):
    if target.engine == "sqlite":
        where = target.path
    else:
        i = target.info
        where = "host=%s port=%s user=%s password=%s dbname=%s" % (
            i["login_host"], i["login_port"], i["login_user"], i["login_password"], target.name)
    env = dict(os.environ, DBOPS_BARE_TARGET=where)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE_LOOP, target.engine, str(migrations)], env=env, check=True,
                   capture_output=True, timeout=3600)
    return time.perf_counter() - t


def throughput(engine, info, work, dbmate, n, reps):
    migrations = make_migrations(work / engine, n)
    ours = Target(engine, info, "dbops_applybench_ours", work)
    theirs = Target(engine, info, "dbops_applybench_dbmate", work)
    checks = []
    cpu = {"ours": [], "dbmate": []}

    def one_ours(**extra):
        ours.recreate()
        took, out = run_module(ours, migrations, work, **extra)
        if not extra:
            cpu["ours"].append(LAST_CPU["migration_apply"])
        got = ours.counts()
        status = run_dbmate(dbmate, ours, migrations, "status")[1]
        ok = got == (n, n) and len(out.get("applied", [])) == n and status.returncode == 0
        checks.append(dict(who="migration_apply", extra=extra, counts=got, dbmate_status_rc=status.returncode, ok=ok))
        if not ok:
            raise RuntimeError("migration_apply left %s (want %d tables, %d rows); dbmate status rc %s: %s" % (
                got, n, n, status.returncode, status.stdout[-500:]))
        return took

    def one_dbmate():
        theirs.recreate()
        took = run_dbmate(dbmate, theirs, migrations)[0]
        cpu["dbmate"].append(LAST_CPU["dbmate"])
        got = theirs.counts()
        checks.append(dict(who="dbmate", counts=got, ok=got == (n, n)))
        if got != (n, n):
            raise RuntimeError("dbmate left %s (want %d, %d)" % (got, n, n))
        return took

    try:
        one_ours()  # warm-up: page cache, imports, server buffers
        one_dbmate()
        mod, dbm = benchlib.alternate(reps, one_ours, one_dbmate)
        nolint = [one_ours(lint=False) for _rep in range(max(1, reps // 2))]
        bare = []
        for _rep in range(reps):
            theirs.recreate()
            bare.append(run_bare(theirs, migrations))
            if theirs.counts() != (n, n):
                raise RuntimeError("the bare loop left %s (want %d, %d)" % (theirs.counts(), n, n))
        ours.recreate()
        playbook = run_playbook(ours, migrations, work)
    finally:
        ours.drop()
        theirs.drop()
    row = dict(engine=engine, migrations=n, ours_s=statistics.median(mod), ours_all=mod,
               dbmate_s=statistics.median(dbm), dbmate_all=dbm, ours_nolint_s=statistics.median(nolint),
               ours_nolint_all=nolint, playbook_s=playbook, checks=checks, bare_s=statistics.median(bare),
               bare_all=bare,
               ours_cpu_s=statistics.median(cpu["ours"][1:]), ours_cpu_all=cpu["ours"],
               dbmate_cpu_s=statistics.median(cpu["dbmate"][1:]), dbmate_cpu_all=cpu["dbmate"])
    row["ratio"] = row["ours_s"] / row["dbmate_s"]
    row["cpu_ratio"] = row["ours_cpu_s"] / row["dbmate_cpu_s"]
    print("%-10s %5d migrations: migration_apply %.2f s (lint off %.2f s, ansible-playbook %.2f s), dbmate %.2f s, "
          "ratio %.2f; bare driver loop %.2f s; client CPU %.2f s vs %.2f s" % (
              engine, n, row["ours_s"], row["ours_nolint_s"], playbook, row["dbmate_s"], row["ratio"],
              row["bare_s"], row["ours_cpu_s"], row["dbmate_cpu_s"]), flush=True)
    return row


# --------------------------------------------------------------------------
# (b) the lock holder
# --------------------------------------------------------------------------

class Reader(threading.Thread):
    """SELECT count(*) from the table every 20 ms; records each statement's latency."""

    def __init__(self, info, db):
        super().__init__(daemon=True)
        self.info, self.db = info, db
        self.stop = threading.Event()
        self.latencies = []
        self.error = None

    def run(self):
        try:
            with pg_connect(self.info, self.db) as conn:
                while not self.stop.is_set():
                    t = time.perf_counter()
                    conn.execute("SELECT count(*) FROM accounts").fetchone()
                    self.latencies.append((t, time.perf_counter() - t))
                    self.stop.wait(0.02)
        except Exception as e:  # pylint: disable=broad-except
            self.error = repr(e)


def lock_holder(info, work, dbmate, hold, lock_timeout):
    migrations = work / "lock-migrations"
    migrations.mkdir()
    (migrations / "20260101000000_add_note.sql").write_text(
        "-- migrate:up\nALTER TABLE accounts ADD COLUMN note text;\n\n-- migrate:down\n", encoding="utf-8")
    rows = []
    for who in ("dbmate", "migration_apply"):
        target = Target("postgresql", info, "dbops_applybench_lock_" + who.replace("migration_", ""), work)
        target.recreate()
        try:
            with pg_connect(info, target.name) as conn:
                conn.execute("CREATE TABLE accounts (id integer PRIMARY KEY, email text)")
                conn.execute("INSERT INTO accounts SELECT g, 'u' || g FROM generate_series(1, 1000) g")
            holder = pg_connect(info, target.name, autocommit=False)
            holder.execute("SELECT count(*) FROM accounts").fetchone()  # ACCESS SHARE, held until commit
            reader = Reader(info, target.name)
            reader.start()
            time.sleep(0.5)
            seen = threading.Event()

            def release(conn=holder, db=target.name, ev=seen):
                # The hold starts when the migration's ALTER is first seen waiting for the lock (pg_locks, not
                # granted), so both tools meet the holder for the whole --hold whatever their start-up costs.
                with pg_connect(info, db) as watch:
                    deadline = time.monotonic() + 600
                    while time.monotonic() < deadline:
                        if watch.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                         "WHERE c.relname = 'accounts' AND NOT l.granted").fetchone()[0]:
                            ev.set()
                            break
                        time.sleep(0.005)
                time.sleep(hold)
                conn.commit()
            releaser = threading.Thread(target=release, daemon=True)
            t0 = time.perf_counter()
            releaser.start()
            if who == "dbmate":
                took = run_dbmate(dbmate, target, migrations)[0]
                attempts = None
            else:
                took, out = run_module(target, migrations, work, lock_timeout=lock_timeout, lock_retries=20)
                attempts = len(out.get("attempts") or [])
            releaser.join()
            time.sleep(0.5)
            reader.stop.set()
            reader.join()
            holder.close()
            if reader.error:
                raise RuntimeError("reader: %s" % reader.error)
            during = [lat for (t, lat) in reader.latencies if t >= t0 - 0.1]
            with pg_connect(info, target.name) as conn:
                added = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' "
                                     "AND column_name = 'note'").fetchone()[0] == 1
            row = dict(who=who, hold_s=hold, lock_met=seen.is_set(), run_s=took, reader_max_stall_s=max(during),
                       reader_stalls_over_timeout=sum(1 for x in during if x > lock_timeout + ALLOWANCE),
                       reader_queries=len(during), lock_attempts=attempts, column_added=added)
            rows.append(row)
            print("lock holder %ds, %-15s run %.2f s, reader's longest stall %.3f s over %d queries%s" % (
                hold, who, took, row["reader_max_stall_s"], len(during),
                "" if attempts is None else ", %d lock timeouts retried" % attempts), flush=True)
        finally:
            target.drop()
    return rows


# --------------------------------------------------------------------------

def main():  # pylint: disable=too-many-locals,too-many-statements
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--engines", default="postgresql,sqlite")
    ap.add_argument("--hold", type=float, default=10.0)
    ap.add_argument("--lock-timeout", type=float, default=0.5)
    ap.add_argument("--skip-lock", action="store_true", help="skip (b)")
    ap.add_argument("--dbmate", help="the dbmate binary (default: from build/conformance/node)")
    ap.add_argument("--state-dir", help="use servers already started there (tests/harness/servers.py)")
    a = ap.parse_args()
    engines = [e for e in a.engines.split(",") if e]
    dbmate = find_dbmate(a.dbmate)
    dbmate_version = subprocess.run([dbmate, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    subprocess.run(["bash", str(REPO / "scripts" / "collection-tree.sh")], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="dbops-applybench-"))
    os.chmod(work, 0o711)
    own = a.state_dir is None
    state = a.state_dir or str(work / "servers")
    results, locks, env_doc = [], [], None
    try:
        need_pg = "postgresql" in engines or not a.skip_lock
        if need_pg and own:
            subprocess.run([sys.executable, str(REPO / "tests" / "harness" / "servers.py"), "start", "--state-dir",
                            state, "--only", "pg15"], check=True)
        info = harness.load_info(state) if need_pg else {}
        env_doc = benchlib.environment(info)
        env_doc["dbmate"] = dbmate_version
        for engine in engines:
            results.append(throughput(engine, info.get("pg15"), work, dbmate, a.size, a.reps))
        if not a.skip_lock:
            locks = lock_holder(info["pg15"], work, dbmate, a.hold, a.lock_timeout)
    finally:
        if own and os.path.exists(state):
            subprocess.run([sys.executable, str(REPO / "tests" / "harness" / "servers.py"), "stop", "--state-dir",
                            state], check=False)
        shutil.rmtree(work, ignore_errors=True)

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    env_doc = benchlib.finish(env_doc or benchlib.environment())
    lines = ["# migration_apply vs dbmate (%s)" % stamp, "", benchlib.describe(env_doc) + "; " + dbmate_version, "",
             "## (a) %d pending small migrations (one CREATE TABLE each), fresh twin databases per run" % a.size, "",
             "Medians of %d alternated runs (migration_apply, dbmate, ...). migration_apply = the module as Ansible "
             "runs it on the host (interpreter, imports, connect, maintenance lock, status, lint gate, apply); "
             "dbmate = `dbmate --no-dump-schema migrate` (Go binary). Both checked after every run: %d tables, %d "
             "history rows, and `dbmate status --exit-code` clean on ours." % (a.reps, a.size, a.size), "",
             "| engine | migrations | migration_apply (s) | dbmate (s) | ratio | migration_apply, lint off (s) | "
             "bare driver loop (s) | whole ansible-playbook (s) | client CPU, migration_apply (s) | "
             "client CPU, dbmate (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            r["engine"], r["migrations"], r["ours_s"], r["dbmate_s"], r["ratio"], r["ours_nolint_s"],
            r["bare_s"], r["playbook_s"], r["ours_cpu_s"], r["dbmate_cpu_s"]))
    lines += ["", "Client CPU: user + system seconds of the contender's own process (getrusage of the child; the "
              "server's work is not in it: per migration dbmate's lib/pq makes eight round trips on PostgreSQL, "
              "migration_apply one). Bare driver loop: the same statements per migration (BEGIN, the body, the "
              "history row, COMMIT) from a plain sqlite3 / psycopg loop in a fresh interpreter, SQLite at "
              "dbmate's synchronous = NORMAL: no lock, status, lint or Ansible, the floor of any client that "
              "commits each migration on its own (migration_apply commits SQLite migrations in groups, a "
              "savepoint each). The wall times are of a machine shared with other jobs (load before/after "
              "above): the alternation makes both contenders meet the same load."]
    goals = [("%s: migration_apply no slower than dbmate at %d migrations" % (r["engine"], r["migrations"]),
              r["ours_s"] <= r["dbmate_s"]) for r in results]
    if locks:
        lines += ["", "## (b) a %g s transaction holds the table; the migration needs ACCESS EXCLUSIVE (PostgreSQL)"
                  % a.hold, "",
                  "The hold starts when the migration is first seen waiting for the lock. A reader runs "
                  "`SELECT count(*) FROM accounts` every 20 ms; its longest single statement while the migration "
                  "runs. migration_apply: lock_timeout %.1f s, lock_retries 20." % a.lock_timeout, "",
                  "| tool | migration met the lock | run (s) | reader's longest stall (s) | "
                  "reader statements > lock_timeout + %.1f s | lock timeouts retried | column added |" % ALLOWANCE,
                  "|---|---|---:|---:|---:|---:|---|"]
        for r in locks:
            lines.append("| %s | %s | %.2f | %.3f | %d | %s | %s |" % (
                r["who"], r["lock_met"], r["run_s"], r["reader_max_stall_s"], r["reader_stalls_over_timeout"],
                "-" if r["lock_attempts"] is None else r["lock_attempts"], r["column_added"]))
        ours = [r for r in locks if r["who"] == "migration_apply"]
        theirs = [r for r in locks if r["who"] == "dbmate"]
        goals.append(("lock holder: the reader never stalls more than lock_timeout + %.1f s with migration_apply "
                      "(the migration met the lock, and the column is added)" % ALLOWANCE,
                      bool(ours) and ours[0]["reader_max_stall_s"] <= a.lock_timeout + ALLOWANCE
                      and ours[0]["column_added"] and ours[0]["lock_met"]))
        goals.append(("lock holder: dbmate stalls the reader about the hold time (>= %.0f %% of it: the comparison "
                      "is real)" % 80, bool(theirs) and theirs[0]["reader_max_stall_s"] >= 0.8 * a.hold))
    lines += [""] + benchlib.goals_text(goals)
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    doc = json.dumps(dict(throughput=results, lock_holder=locks, environment=env_doc,
                          goals=[dict(goal=n, met=m) for n, m in goals]), indent=2)
    (out / ("migration_apply_%s.json" % stamp)).write_text(doc)
    (out / ("migration_apply_%s.md" % stamp)).write_text(text)
    return benchlib.exit_code(goals)


if __name__ == "__main__":
    sys.exit(main())
