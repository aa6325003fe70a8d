"""Benchmark schema_diff (issue 12): a schema of N tables x C columns with an index and a foreign key per table,
against a snapshot and against its migrations replayed into the shadow database, PostgreSQL and MariaDB, and how
it grows from the smallest to the largest N.

    .venv/bin/python bench/schema_diff_bench.py --state-dir /tmp/sd-state --sizes 200,2000 --columns 20

Needs running servers (tests/harness/servers.py start --state-dir DIR) and the collection tree
(scripts/collection-tree.sh). For each engine and size: a dbmate migrations directory (100 tables per file) is
applied with migration_apply (run directly, its args file), then schema_diff is run directly (no ansible-playbook
start-up) - snapshot_dest (read the catalog, write the file), reference=snapshot, reference=migrations (create the
shadow, replay, read both, drop) - each timed (wall) with the module's peak RSS (ru_maxrss of the module process).
Goal: roughly linear growth, t(largest)/t(smallest) <= 12 for sizes 200 -> 2,000 (10x), per engine and mode.
Prints a table and writes bench/results/schema_diff_bench_<ts>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

MODULES = REPO / "plugins" / "modules"
GOAL_GROWTH = 12.0
WRAPPER = r"""
import resource, runpy, sys
sys.argv = [sys.argv[1], sys.argv[2]]
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit:
    pass
sys.stderr.write('\nDBOPS_MAXRSS_KB %d\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def load_servers(state_dir):
    info = json.load(open(os.path.join(state_dir, "servers.json"), encoding="utf-8"))
    from conftest import Server  # pylint: disable=import-outside-toplevel
    return info, {k: Server(k, v) for k, v in info.items()}


def migrations(work, engine, n, columns):
    d = work / ("mig-%s-%d" % (engine, n))
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    types = ["int", "bigint", "varchar(100)", "text", "boolean", "numeric(10,2)", "date"]
    for f in range(0, n, 100):
        lines = ["-- migrate:up"]
        for i in range(f, min(n, f + 100)):
            cols = ["id int PRIMARY KEY", "parent_id int"]
            cols += ["c%d %s%s" % (k, types[k % len(types)], " NOT NULL DEFAULT 0" if k % len(types) == 0 else "")
                     for k in range(2, columns)]
            lines.append("CREATE TABLE t%05d (%s);" % (i, ", ".join(cols)))
            lines.append("CREATE INDEX t%05d_c2_idx ON t%05d (c2);" % (i, i))
            if i:
                lines.append("ALTER TABLE t%05d ADD CONSTRAINT t%05d_parent_fkey FOREIGN KEY (parent_id) "
                             "REFERENCES t%05d (id);" % (i, i, i - 1))
        lines.append("-- migrate:down")
        (d / ("2024%010d_tables.sql" % (f // 100 + 1))).write_text("\n".join(lines) + "\n")
    return d


def run_module(name, args, work, env):
    path = work / "args.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, f)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAPPER, str(MODULES / ("%s.py" % name)), str(path)], env=env,
                       capture_output=True, text=True, check=False, timeout=3600)
    elapsed = time.perf_counter() - t
    rss = [int(line.split()[1]) for line in p.stderr.splitlines() if line.startswith("DBOPS_MAXRSS_KB")]
    try:
        out = json.loads(p.stdout)
    except ValueError:
        raise RuntimeError("%s printed no result: %s %s" % (name, p.stdout[-2000:], p.stderr[-2000:]))
    if out.get("failed"):
        raise RuntimeError("%s failed: %s" % (name, out.get("msg")))
    return elapsed, (rss[0] / 1024.0 if rss else None), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--sizes", default="200,2000")
    ap.add_argument("--columns", type=int, default=20)
    ap.add_argument("--engines", default="postgresql,mysql")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    info, servers = load_servers(a.state_dir)
    env_doc = benchlib.environment(info)
    env = dict(os.environ, PYTHONPATH=str(REPO / "build" / "collections"))
    work = Path(tempfile.mkdtemp(prefix="dbops-sdbench-"))
    rows = []
    try:
        for engine in a.engines.split(","):
            srv = servers["pg16" if engine == "postgresql" else "mariadb"]
            for n in sizes:
                name = srv.create_database("dbops_sdbench_%d" % n)
                try:
                    conn = dict(srv.params(name))
                    mig = migrations(work, engine, n, a.columns)
                    t0 = time.perf_counter()
                    run_module("migration_apply", dict(conn, tool="dbmate", migrations_path=str(mig),
                                                       create_table=True, lint=False), work, env)
                    setup = time.perf_counter() - t0
                    snap = work / ("snap-%s-%d.json" % (engine, n))
                    row = dict(engine=engine, tables=n, columns=a.columns, setup_s=round(setup, 2))
                    for mode, args in (("snapshot_dest", dict(snapshot_dest=str(snap))),
                                       ("vs_snapshot", dict(reference="snapshot", snapshot=str(snap))),
                                       ("vs_migrations", dict(reference="migrations", tool="dbmate",
                                                              migrations_path=str(mig)))):
                        elapsed, rss, out = run_module("schema_diff", dict(conn, **args), work, env)
                        if mode != "snapshot_dest" and not out.get("in_sync"):
                            raise RuntimeError("%s %d %s: not in sync: %s" % (engine, n, mode, out.get("summary")))
                        row[mode + "_s"] = round(elapsed, 3)
                        row[mode + "_rss_mb"] = round(rss, 1) if rss else None
                    row["objects"] = sum((out.get("counts") or {}).get("actual", {}).values())
                    rows.append(row)
                    print("%-10s %5d tables  snapshot_dest %.2f s %s MB  vs snapshot %.2f s %s MB  "
                          "vs migrations %.2f s %s MB  (setup %.1f s, %d objects)" % (
                              engine, n, row["snapshot_dest_s"], row["snapshot_dest_rss_mb"], row["vs_snapshot_s"],
                              row["vs_snapshot_rss_mb"], row["vs_migrations_s"], row["vs_migrations_rss_mb"],
                              setup, row["objects"]), flush=True)
                finally:
                    srv.drop_database(name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    goals = []
    lines = []
    for engine in a.engines.split(","):
        mine = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["tables"])
        if len(mine) < 2:
            continue
        lo, hi = mine[0], mine[-1]
        for mode in ("snapshot_dest", "vs_snapshot", "vs_migrations"):
            growth = hi[mode + "_s"] / lo[mode + "_s"] if lo[mode + "_s"] else float("inf")
            size_ratio = hi["tables"] / lo["tables"]
            limit = GOAL_GROWTH * size_ratio / 10.0
            met = growth <= limit
            goals.append(("%s %s t(%d)/t(%d) <= %.1f" % (engine, mode, hi["tables"], lo["tables"], limit), met))
            lines.append("%s %s: t(%d)/t(%d) = %.2f (tables x%.0f)"
                         % (engine, mode, hi["tables"], lo["tables"], growth, size_ratio))
    for line in lines:
        print(line)
    env_doc = benchlib.finish(env_doc)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / ("schema_diff_bench_%s.json" % stamp)).write_text(json.dumps(dict(
        environment=env_doc, rows=rows, growth=lines, goals=goals), indent=1) + "\n")
    md = ["# schema_diff benchmark (%s)" % stamp, "", benchlib.describe(env_doc), "",
          "N tables x %d columns, an index and a foreign key per table; module run directly (no ansible-playbook "
          "start-up); one run per cell, wall seconds and the module's peak RSS." % a.columns, "",
          "| engine | tables | objects | snapshot_dest s | MB | vs snapshot s | MB | vs migrations s | MB |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append("| %s | %d | %d | %.2f | %s | %.2f | %s | %.2f | %s |" % (
            r["engine"], r["tables"], r["objects"], r["snapshot_dest_s"], r["snapshot_dest_rss_mb"],
            r["vs_snapshot_s"], r["vs_snapshot_rss_mb"], r["vs_migrations_s"], r["vs_migrations_rss_mb"]))
    md += [""] + ["- " + x for x in lines] + benchlib.goals_text(goals)
    (out_dir / ("schema_diff_bench_%s.md" % stamp)).write_text("\n".join(md) + "\n")
    print("\n".join(benchlib.goals_text(goals)))
    return benchlib.exit_code(goals)


if __name__ == "__main__":
    sys.exit(main())
