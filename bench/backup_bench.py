"""Benchmark db_backup against the bare dump tools, side by side, in one run.

    .venv/bin/python bench/backup_bench.py --state-dir /tmp/bk-state --pg-mb 1024 --mysql-mb 512

Needs running servers (tests/harness/servers.py start --state-dir DIR). Seeds a PostgreSQL
database of --pg-mb and a MariaDB database of --mysql-mb (once; reused on the next run), then
times, for each case, the bare command (pg_dump / mariadb-dump | compressor > file) and the module
(run directly with its args file, no ansible-playbook start-up) with verify=none (overhead =
streaming sha256, manifest, fsync, atomic rename), and the module's peak RSS (VmHWM of the module
process, polled), the CPU time of each side (the command or the module with every process it waited for; the
server's own CPU is in neither), and the module's time outside its dump (wall - the manifest's duration: start-up,
imports, connection and planning before the dump, manifest, rename and exit after it). Prints a table and writes
bench/results/backup_bench_<ts>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

GOAL_OVERHEAD_PCT = 5.0  # db_backup's overhead over the bare dump command, best-of, per case


def load_servers(state_dir):
    info = json.load(open(os.path.join(state_dir, "servers.json")))
    from conftest import Server  # pylint: disable=import-outside-toplevel
    return {k: Server(k, v) for k, v in info.items()}


def db_size_mb(server, name):
    if server.engine == "postgresql":
        return server.query(name, "SELECT pg_database_size(current_database())")[0][0] / 2 ** 20
    return float(server.query(name, "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM "
                                    "information_schema.TABLES WHERE TABLE_SCHEMA = %s", [name])[0][0]) / 2 ** 20


def seed(server, name, mb):
    exists = server.query(None, "SELECT 1 FROM pg_database WHERE datname = %s" if server.engine == "postgresql"
                          else "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [name])
    if exists and db_size_mb(server, name) >= mb * 0.95:
        return db_size_mb(server, name)
    server.create_database(name)
    if server.engine == "postgresql":
        server.execute(name, "CREATE TABLE events (id bigint, kind int, payload text, at timestamptz)")
        for t in range(4):
            server.execute(name, f"CREATE TABLE t{t} (id bigint PRIMARY KEY, v text)")
        while db_size_mb(server, name) < mb:
            for t in range(4):
                server.execute(name, f"INSERT INTO t{t} SELECT g, md5(g::text) || repeat(md5(random()::text), 3) "
                                     f"FROM generate_series((SELECT COALESCE(max(id), 0) + 1 FROM t{t}), "
                                     f"(SELECT COALESCE(max(id), 0) + 400000 FROM t{t})) g")
    else:
        for t in range(4):
            server.execute(name, f"CREATE TABLE t{t} (id bigint PRIMARY KEY, v text)")
        while db_size_mb(server, name) < mb:
            for t in range(4):
                n = server.query(name, f"SELECT COALESCE(MAX(id), 0) FROM t{t}")[0][0]
                server.execute(name, f"INSERT INTO t{t} SELECT seq + {n}, CONCAT(MD5(seq), REPEAT(MD5(RAND()), 3)) "
                                     f"FROM seq_1_to_200000")
    return db_size_mb(server, name)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env=None, shell=False):
    """(wall seconds, CPU seconds of the command and every process it waited for)."""
    t, cpu = time.monotonic(), children_cpu()
    subprocess.run(cmd, env=env, shell=shell, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t, children_cpu() - cpu


def run_module(module, args):
    """Run the module file directly (AnsibleModule reads its args from the file).

    Returns (seconds, peak KiB, result, CPU seconds of the module and its dump processes)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "build" / "collections"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, f)
    os.chmod(f.name, 0o600)
    t, cpu = time.monotonic(), children_cpu()
    p = subprocess.Popen([sys.executable, str(ROOT / "plugins" / "modules" / f"{module}.py"), f.name], env=env,
                         stdout=subprocess.PIPE)
    peak = [0]

    def poll():
        while p.poll() is None:
            try:
                for line in open(f"/proc/{p.pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.05)
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out = p.communicate()[0]
    elapsed, cpu = time.monotonic() - t, children_cpu() - cpu
    th.join()
    os.unlink(f.name)
    res = json.loads(out)
    if res.get("failed"):
        raise SystemExit(f"{module} failed: {res.get('msg')}")
    return elapsed, peak[0], res, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", default=os.environ.get("DBOPS_SERVERS_STATE"), required=False)
    ap.add_argument("--pg", default="pg15")
    ap.add_argument("--pg-mb", type=int, default=1024)
    ap.add_argument("--mysql-mb", type=int, default=512)
    ap.add_argument("--dest", default="/var/tmp/dbops-backup-bench")
    ap.add_argument("--reps", type=int, default=2, help="runs of each command (ABBA order); best-of is reported")
    ap.add_argument("--cases", default="", help="comma-separated substrings: run only the cases whose name has one "
                                                "(e.g. 'plain,jobs=2'); default all")
    a = ap.parse_args()
    srv = load_servers(a.state_dir)
    load_start = os.getloadavg()
    pg, maria = srv[a.pg], srv["mariadb"]
    sizes = {"pg": seed(pg, "bench_backup", a.pg_mb), "mysql": seed(maria, "bench_backup", a.mysql_mb)}
    dest = Path(a.dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    pgenv = dict(os.environ, PGPASSWORD=pg.info["login_password"], PGHOST=pg.info["login_host"],
                 PGPORT=str(pg.info["login_port"]), PGUSER=pg.info["login_user"], PGDATABASE="bench_backup")
    pg_dump = os.path.join(pg.info["bin_dir"], "pg_dump")
    cnf = dest / "client.cnf"
    cnf.write_text(f"[client]\nuser={maria.info['login_user']}\npassword={maria.info['login_password']}\n"
                   f"host={maria.info['login_host']}\nport={maria.info['login_port']}\nprotocol=tcp\n")
    os.chmod(cnf, 0o600)
    mdump = ("mariadb-dump --defaults-file=%s --single-transaction --quick --routines --triggers --events "
             "--hex-blob --default-character-set=utf8mb4 --no-tablespaces --skip-dump-date bench_backup" % cnf)
    cases = [
        ("pg custom gzip", f"{pg_dump} --no-password --format=custom -Z 6 -f {dest}/bare.dump",
         dict(pg.params("bench_backup"), format="custom", compression="gzip", compression_level=6)),
        ("pg directory gzip jobs=1", f"{pg_dump} --no-password --format=directory -Z 6 -f {dest}/bare1.dir",
         dict(pg.params("bench_backup"), format="directory", compression="gzip", compression_level=6, jobs=1)),
        ("pg directory gzip jobs=2", f"{pg_dump} --no-password --format=directory -Z 6 --jobs=2 -f {dest}/bare2.dir",
         dict(pg.params("bench_backup"), format="directory", compression="gzip", compression_level=6, jobs=2)),
        ("pg plain zstd", f"{pg_dump} --no-password --format=plain | zstd -q -c -T0 > {dest}/bare.sql.zst",
         dict(pg.params("bench_backup"), format="plain", compression="zstd")),
        ("mariadb zstd", f"{mdump} | zstd -q -c -T0 > {dest}/bare-m.sql.zst",
         dict(maria.params("bench_backup"), compression="zstd")),
        ("mariadb gzip", f"{mdump} | gzip -c > {dest}/bare-m.sql.gz",
         dict(maria.params("bench_backup"), compression="gzip")),
    ]
    if a.cases:
        cases = [case for case in cases if any(part.strip() in case[0] for part in a.cases.split(","))]
    rows = []
    for name, bare, args in cases:
        load_before = os.getloadavg()[0]
        bare_runs, mod_runs, peaks, bare_cpu, mod_cpu, outside = [], [], [], [], [], []
        label = name.replace(" ", "_").replace("=", "")

        def clean():
            for p in list(dest.iterdir()):
                if p.name.startswith("bare"):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            shutil.rmtree(dest / "mod", ignore_errors=True)

        def one_bare():
            wall, cpu = timed(["bash", "-o", "pipefail", "-c", bare], env=pgenv)
            bare_runs.append(wall)
            bare_cpu.append(cpu)
            clean()

        def one_module():
            mod_args = dict(args, dest=str(dest / "mod"), verify="none", label=label)
            mod_s, peak_kib, res, cpu = run_module("db_backup", mod_args)
            mod_runs.append(mod_s)
            mod_cpu.append(cpu)
            # the module's time outside its dump: start-up, imports, connection, planning before it;
            # manifest, rename, retention and exit after it (the manifest's duration is dump + hashing + fsync)
            outside.append(mod_s - res["manifest"]["duration"])
            peaks.append(peak_kib)
            clean()
            return res

        res = None
        for rep in range(a.reps):  # ABBA: bare, module, module, bare, ... so that neither always runs first
            if rep % 2 == 0:
                one_bare()
                res = one_module()
            else:
                res = one_module()
                one_bare()
        best_bare, best_mod = min(bare_runs), min(mod_runs)
        rows.append(dict(case=name, bare_seconds=[round(x, 2) for x in bare_runs],
                         module_seconds=[round(x, 2) for x in mod_runs],
                         bare_best=round(best_bare, 2), module_best=round(best_mod, 2),
                         overhead_pct=round((best_mod / best_bare - 1) * 100, 1),
                         overhead_pct_mean=round((sum(mod_runs) / sum(bare_runs) - 1) * 100, 1),
                         bare_cpu_seconds=[round(x, 2) for x in bare_cpu],
                         module_cpu_seconds=[round(x, 2) for x in mod_cpu],
                         cpu_overhead_pct=round((sum(mod_cpu) / sum(bare_cpu) - 1) * 100, 1),
                         module_outside_dump_seconds=[round(x, 3) for x in outside],
                         size_mib=round(res["size"] / 2 ** 20, 1),
                         module_peak_rss_mib=round(max(peaks) / 1024, 1), load1_before=round(load_before, 2),
                         load1_after=round(os.getloadavg()[0], 2)))
        print(rows[-1], flush=True)
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    load = os.getloadavg()
    md = [f"# db_backup benchmark {ts}", "",
          f"PostgreSQL {pg.version} database {sizes['pg']:.0f} MiB, MariaDB {maria.version} {sizes['mysql']:.0f} MiB; "
          f"{os.cpu_count()} CPUs; load average (1/5/15 min) at the start {load_start[0]:.1f}/{load_start[1]:.1f}/"
          f"{load_start[2]:.1f}, at the end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}",
          "", f"{a.reps} runs of each, in ABBA order; best-of and mean overhead; verify=none", "",
          "| case | bare s (runs) | db_backup s (runs) | overhead best-of | overhead mean | CPU s bare / module "
          "(mean) | CPU overhead | module outside the dump s (median) | backup MiB | module peak RSS MiB "
          "| load1 before/after |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bc, mc = r['bare_cpu_seconds'], r['module_cpu_seconds']
        md.append(f"| {r['case']} | {' / '.join(map(str, r['bare_seconds']))} | "
                  f"{' / '.join(map(str, r['module_seconds']))} | {r['overhead_pct']}% | {r['overhead_pct_mean']}% | "
                  f"{sum(bc) / len(bc):.2f} / {sum(mc) / len(mc):.2f} | {r['cpu_overhead_pct']}% | "
                  f"{statistics.median(r['module_outside_dump_seconds']):.3f} | "
                  f"{r['size_mib']} | {r['module_peak_rss_mib']} | {r['load1_before']} / {r['load1_after']} |")
    text = "\n".join(md) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    goals = [("overhead of %s <= %.0f%% (best-of)" % (r["case"], GOAL_OVERHEAD_PCT), r["overhead_pct"] <= GOAL_OVERHEAD_PCT)
             for r in rows]
    code = benchlib.code_state()
    dirty = " + uncommitted: %s" % ", ".join(code["uncommitted"]) if code["uncommitted"] else " (clean)"
    tail = "\nCode: %s%s\n\n%s\n" % (code["head"][:12], dirty, "\n".join(benchlib.goals_text(goals)))
    print(tail)
    text += tail
    (out / f"backup_bench_{ts}.md").write_text(text)
    summary = dict(sizes_mib=sizes, rows=rows, load=load, load_start=load_start, cpus=os.cpu_count(), reps=a.reps,
                   code=code, goals=dict(goals))
    (out / f"backup_bench_{ts}.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    return benchlib.exit_code(goals)


if __name__ == "__main__":
    sys.exit(main())
