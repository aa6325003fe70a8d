"""Online DDL benchmark: the collection's online way of each dangerous change vs the plain statement, under a
concurrent writer.

Run by hand (not a test), from the repository root:

    .venv/bin/python bench/online_ddl_bench.py [--rows 1000000] [--mariadb-rows 1000000] [--servers-state DIR]

PostgreSQL 15 (a table of --rows rows, one writer inserting a row every 10 ms, autocommit):
  * NOT NULL on an existing column: plain ``ALTER TABLE ... ALTER COLUMN v SET NOT NULL`` (scans under ACCESS
    EXCLUSIVE) vs column_ensure ``nullable: false`` (CHECK NOT VALID, VALIDATE, SET NOT NULL, drop the check);
  * an index: plain ``CREATE INDEX`` (SHARE lock: writes blocked for the whole build) vs index_ensure
    (CREATE INDEX CONCURRENTLY).
MariaDB 10.11 (a table of --mariadb-rows rows, same writer, which retries deadlocks as InnoDB requires):
  * a change only a table copy can do (``MODIFY COLUMN v bigint NOT NULL``): plain ``ALTER TABLE ...,
    ALGORITHM=COPY`` vs column_ensure ``method: online`` (pt-online-schema-change).
For each: the writer's longest stall while the change ran, its writes during it, and the change's total time (for
the modules, the whole ansible-playbook run, start-up included). The two sides of a pair run on identical
tables, one after the other, in the same run.

--servers-state DIR uses servers already running (tests/harness/servers.py start --state-dir DIR) and does not
stop them; otherwise the bench starts its own in a temporary directory and stops them at the end.
Prints a table and writes bench/results/online_ddl_bench_<UTC timestamp>.{json,md}. Exits 0 when every goal
is met (the online side's longest stall <= lock_timeout + 0.5 s, and shorter than the plain side's), 1 when one
is not, 2 when one could not be evaluated.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

REPO = benchlib.REPO
RESULTS = REPO / "bench" / "results"
LOCK_TIMEOUT = 1.0
DBNAME = "dbops_online_bench"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Writer(threading.Thread):
    """Inserts one row every 10 ms on its own autocommit connection; (start, end) of every INSERT."""

    def __init__(self, connect, sql, retry_codes=()):
        super().__init__(daemon=True)
        self.connect, self.sql, self.retry_codes = connect, sql, retry_codes
        self.times, self.errors = [], []
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self):
        conn = self.connect()
        try:
            cur = conn.cursor()
            self.ready.set()
            while not self.stop.is_set():
                t0 = time.monotonic()
                while True:
                    try:
                        cur.execute(self.sql)
                        break
                    except Exception as e:  # pylint: disable=broad-except
                        code = e.args[0] if getattr(e, "args", None) else None
                        if code in self.retry_codes:
                            continue
                        self.errors.append(repr(e))
                        self.stop.set()
                        break
                self.times.append((t0, time.monotonic()))
                self.stop.wait(0.01)
        finally:
            self.ready.set()
            conn.close()

    def finish(self):
        self.stop.set()
        self.join(60)
        return self.times


def measure(writer_factory, change):
    """Run change() while a writer writes; returns dict(total_s, longest_stall_s, writes_during, result)."""
    writer = writer_factory()
    writer.start()
    writer.ready.wait(30)
    time.sleep(0.5)  # the writer's steady pace before the change (not a synchronisation: only a baseline)
    t0 = time.monotonic()
    result = change()
    t1 = time.monotonic()
    time.sleep(0.5)
    times = writer.finish()
    during = [(s, e) for s, e in times if e >= t0 and s <= t1]
    stall = max((e - s for s, e in during), default=None)
    # A write still waiting when the change ended counts up to its end.
    return dict(total_s=round(t1 - t0, 3), longest_stall_s=round(stall, 3) if stall is not None else None,
                writes_during=len(during), writer_errors=writer.errors, result=result)


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="dbops-online-bench-")
        os.chmod(self.tmp, 0o700)
        self.state = args.servers_state
        self.own = self.state is None
        if self.own:
            self.state = os.path.join(self.tmp, "state")
            os.mkdir(self.state, 0o711)
        self.servers = None
        self.collections = None

    # --- servers, databases ---------------------------------------------------------------
    def start(self):
        if self.own:
            subprocess.run([sys.executable, str(REPO / "tests/harness/servers.py"), "start", "--state-dir",
                            self.state], check=True, timeout=600)
        with open(os.path.join(self.state, "servers.json"), encoding="utf-8") as f:
            self.servers = json.load(f)
        self.collections = subprocess.run(["bash", str(REPO / "scripts/collection-tree.sh")], capture_output=True,
                                          text=True, check=True, timeout=120).stdout.strip().splitlines()[-1]

    def stop(self):
        if self.own:
            subprocess.run([sys.executable, str(REPO / "tests/harness/servers.py"), "stop", "--state-dir",
                            self.state], check=False, timeout=600)

    def pg_connect(self, database=DBNAME):
        import psycopg  # pylint: disable=import-outside-toplevel
        i = self.servers["pg15"]
        return psycopg.connect(host=i["login_host"], port=i["login_port"], user=i["login_user"],
                               password=i["login_password"], dbname=database, autocommit=True)

    def my_connect(self, database=DBNAME):
        import pymysql  # pylint: disable=import-outside-toplevel
        i = self.servers["mariadb"]
        return pymysql.connect(host=i["login_host"], port=i["login_port"], user=i["login_user"],
                               password=i["login_password"], database=database, autocommit=True)

    def module_conn(self, name):
        i = self.servers[name]
        return dict(engine=i["engine"], login_host=i["login_host"], login_port=i["login_port"],
                    login_user=i["login_user"], login_password=i["login_password"], database=DBNAME)

    # --- ansible --------------------------------------------------------------------------
    def run_module(self, module, args):
        """One task through ansible-playbook; returns dict(rc, result) (the vars file holding the password is 0600)."""
        vars_path = os.path.join(self.tmp, "vars.json")
        fd = os.open(vars_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"bench_args": args}, f)
        play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "change", "dbops.maintenance.%s" % module: "{{ bench_args }}", "register": "r"},
            {"name": "result", "ansible.builtin.copy": {"content": "{{ r | to_json }}",
                                                        "dest": os.path.join(self.tmp, "result.json"),
                                                        "mode": "0600"}}]}]
        pb = os.path.join(self.tmp, "play.yml")
        with open(pb, "w", encoding="utf-8") as f:
            json.dump(play, f)
        inv = os.path.join(self.tmp, "inventory.ini")
        with open(inv, "w", encoding="utf-8") as f:
            f.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.tmp, "local"), ANSIBLE_RETRY_FILES_ENABLED="false")
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", inv, "-e",
                               "@" + vars_path, pb], env=env, capture_output=True, text=True, timeout=7200,
                              check=False)
        if proc.returncode != 0:
            log("ansible-playbook failed:\n%s" % proc.stdout[-3000:])
            return dict(rc=proc.returncode)
        with open(os.path.join(self.tmp, "result.json"), encoding="utf-8") as f:
            r = json.load(f)
        return dict(rc=0, changed=r.get("changed"), queries=r.get("queries"))

    # --- PostgreSQL -----------------------------------------------------------------------
    def pg_setup(self, n):
        with self.pg_connect("postgres") as c:
            c.execute("DROP DATABASE IF EXISTS %s" % DBNAME)
            c.execute("CREATE DATABASE %s" % DBNAME)
        with self.pg_connect() as c:
            for t in ("nn_plain", "nn_online", "ix_plain", "ix_online"):
                c.execute("CREATE TABLE %s (id bigserial PRIMARY KEY, v int, pad text)" % t)
                c.execute("INSERT INTO %s (v, pad) SELECT g, md5(g::text) FROM generate_series(1, %d) g" % (t, n))
                c.execute("VACUUM ANALYZE %s" % t)

    def pg_writer(self, table):
        return lambda: Writer(self.pg_connect, "INSERT INTO %s (v, pad) VALUES (1, 'writer')" % table)

    def pg_plain(self, statement):
        def run():
            with self.pg_connect() as c:
                c.execute(statement)
            return dict(rc=0, queries=[statement])
        return run

    # --- MariaDB --------------------------------------------------------------------------
    def my_setup(self, n):
        with self.my_connect("mysql") as c:
            cur = c.cursor()
            cur.execute("DROP DATABASE IF EXISTS %s" % DBNAME)
            cur.execute("CREATE DATABASE %s" % DBNAME)
        with self.my_connect() as c:
            cur = c.cursor()
            for t in ("cp_plain", "cp_online"):
                cur.execute("CREATE TABLE %s (id bigint AUTO_INCREMENT PRIMARY KEY, v int, pad varchar(40)) "
                            "ENGINE=InnoDB" % t)
                cur.execute("INSERT INTO %s (id, v, pad) SELECT seq, seq, MD5(seq) FROM seq_1_to_%d" % (t, n))

    def my_writer(self, table):
        return lambda: Writer(self.my_connect, "INSERT INTO %s (v, pad) VALUES (1, 'writer')" % table,
                              retry_codes=(1205, 1213))

    def my_plain(self, statement):
        def run():
            with self.my_connect() as c:
                c.cursor().execute(statement)
            return dict(rc=0, queries=[statement])
        return run

    # --- the scenarios --------------------------------------------------------------------
    def run(self):
        rows, my_rows = self.args.rows, self.args.mariadb_rows
        out = []
        if not self.args.skip_postgresql:
            log("PostgreSQL 15: loading 4 tables of %d rows" % rows)
            self.pg_setup(rows)
            pg = self.module_conn("pg15")
            pairs = [
                ("NOT NULL", "plain SET NOT NULL", "nn_plain",
                 self.pg_plain("ALTER TABLE nn_plain ALTER COLUMN v SET NOT NULL"),
                 "column_ensure nullable: false", "nn_online",
                 lambda: self.run_module("column_ensure", dict(pg, table="nn_online", column="v", type="integer",
                                                               nullable=False, alter=True,
                                                               lock_timeout=LOCK_TIMEOUT))),
                ("index", "plain CREATE INDEX", "ix_plain", self.pg_plain("CREATE INDEX ix_plain_v ON ix_plain (v)"),
                 "index_ensure", "ix_online",
                 lambda: self.run_module("index_ensure", dict(pg, table="ix_online", name="ix_online_v",
                                                              columns=["v"], lock_timeout=LOCK_TIMEOUT))),
            ]
            for change, plain_name, plain_table, plain, online_name, online_table, online in pairs:
                for name, table, fn, writer in ((plain_name, plain_table, plain, self.pg_writer(plain_table)),
                                                (online_name, online_table, online, self.pg_writer(online_table))):
                    log("PostgreSQL %s: %s on %d rows" % (change, name, rows))
                    m = measure(writer, fn)
                    out.append(dict(engine="PostgreSQL 15", change=change, how=name, rows=rows, **m))
                    log("  total %.2f s, longest writer stall %s s, %d writes during" % (
                        m["total_s"], m["longest_stall_s"], m["writes_during"]))
        if not self.args.skip_mariadb:
            log("MariaDB 10.11: loading 2 tables of %d rows" % my_rows)
            self.my_setup(my_rows)
            my = self.module_conn("mariadb")
            for name, table, fn in (
                    ("plain ALTER (ALGORITHM=COPY)", "cp_plain",
                     self.my_plain("ALTER TABLE cp_plain MODIFY COLUMN v bigint NOT NULL, ALGORITHM=COPY")),
                    ("column_ensure method: online", "cp_online",
                     lambda: self.run_module("column_ensure", dict(my, table="cp_online", column="v", type="bigint",
                                                                   nullable=False, alter=True, method="online",
                                                                   lock_timeout=LOCK_TIMEOUT)))):
                log("MariaDB copy-requiring change: %s on %d rows" % (name, my_rows))
                m = measure(self.my_writer(table), fn)
                out.append(dict(engine="MariaDB 10.11", change="MODIFY v bigint NOT NULL (copy)", how=name,
                                rows=my_rows, **m))
                log("  total %.2f s, longest writer stall %s s, %d writes during" % (
                    m["total_s"], m["longest_stall_s"], m["writes_during"]))
        return out


def goals_of(rows):
    goals = []
    by = {}
    for r in rows:
        by.setdefault((r["engine"], r["change"]), []).append(r)
    for (engine, change), (plain, online) in sorted(by.items()):
        ok_runs = plain["result"].get("rc") == 0 and online["result"].get("rc") == 0 and \
            online["longest_stall_s"] is not None and plain["longest_stall_s"] is not None
        met = None if not ok_runs else (online["longest_stall_s"] <= LOCK_TIMEOUT + 0.5 and
                                        online["longest_stall_s"] < plain["longest_stall_s"])
        goals.append(("%s %s: online longest stall <= %.1f s and below plain's" % (engine, change,
                                                                                   LOCK_TIMEOUT + 0.5), met))
    return goals


def table(rows):
    lines = ["| engine | change | how | rows | total s | longest writer stall s | writes during | ok |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append("| %s | %s | %s | %d | %.2f | %s | %d | %s |" % (
            r["engine"], r["change"], r["how"], r["rows"], r["total_s"], r["longest_stall_s"], r["writes_during"],
            "yes" if r["result"].get("rc") == 0 and not r["writer_errors"] else "NO"))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="PostgreSQL table size (default 1M)")
    ap.add_argument("--mariadb-rows", type=int, default=1_000_000, help="MariaDB table size (default 1M)")
    ap.add_argument("--servers-state", help="use the servers already running from this state dir")
    ap.add_argument("--skip-postgresql", action="store_true")
    ap.add_argument("--skip-mariadb", action="store_true")
    args = ap.parse_args()
    bench = Bench(args)
    bench.start()
    env = benchlib.environment({k: v for k, v in bench.servers.items() if isinstance(v, dict)})
    try:
        rows = bench.run()
    finally:
        bench.stop()
    env = benchlib.finish(env)
    goals = goals_of(rows)
    lines = ["# Online DDL bench (%s)" % _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "",
             "lock_timeout %.1f s for the modules; the writer inserts a row every 10 ms." % LOCK_TIMEOUT, "",
             *table(rows), "", *benchlib.goals_text(goals), "", benchlib.describe(env)]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with open(RESULTS / ("online_ddl_bench_%s.json" % stamp), "w", encoding="utf-8") as f:
        json.dump(dict(rows=rows, goals=goals, environment=env, lock_timeout=LOCK_TIMEOUT), f, indent=1)
    with open(RESULTS / ("online_ddl_bench_%s.md" % stamp), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return benchlib.exit_code(goals)


if __name__ == "__main__":
    sys.exit(main())
