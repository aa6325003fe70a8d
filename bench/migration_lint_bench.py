"""Benchmark of migration_lint: wall time and peak memory over N migration files (default up to 5,000).

Run from the repository root with the project venv (no database needed):

    .venv/bin/python bench/migration_lint_bench.py                 # 1000, 2500, 5000 files x 3 engines
    .venv/bin/python bench/migration_lint_bench.py --sizes 5000 --engines postgresql

For every (engine, size) it writes a directory of generated migration files (mixed statements: CREATE TABLE,
ADD COLUMN with and without defaults, CREATE INDEX, UPDATE/DELETE with and without WHERE, enum changes, renames,
drops, an unparseable statement now and then, dbops:ignore comments), then runs the module itself
(plugins/modules/migration_lint.py, the code Ansible ships, with its arguments in a file as Ansible passes them) in a
fresh Python process, and measures the wall time of that process, its CPU time and its peak RSS (getrusage of the child). On a loaded machine
wall time exceeds CPU time; the load average is recorded with the results.
The goal: under 10 s for 5,000 files, and time growing linearly with the number of files.
Prints a table; writes bench/results/migration_lint_<UTC time>.json and .md. Exit 1 if the goal is not met.

``--ignore rule,rule`` passes the module's ignore option (to compare with an older checkout on the same findings).

Big files (issue 10 item 12): ``--big-mb 50`` also lints one file of that many MB shaped like a data dump (schema,
then COPY ... FROM stdin data on PostgreSQL or INSERT ... VALUES rows, then DDL after it), with max_file_size
raised so that it is linted, not skipped; ``--timeout`` stops a run that takes longer (reported as not finished).
``--root DIR`` runs the module of another checkout (e.g. ``git archive <commit> | tar -x -C DIR``), to compare
before and after a change on the same machine: ``--sizes 5000 --root /tmp/old`` then without ``--root``.

``--compare DIR`` measures side by side in ONE run: on the same generated files, the module of DIR (the reference,
e.g. the commit before issue 13's merge) and this checkout's, alternately, ``--rounds`` times each; it reports the
median CPU time and peak RSS of each and their ratios (this / reference), and the goal of issue 13: CPU within
+20 %, memory flat (within +10 %). CPU time, not wall time: the machine is shared and loaded. Writes
bench/results/migration_lint_compare_<UTC time>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  pylint: disable=wrong-import-position

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODULE = ROOT / "plugins" / "modules" / "migration_lint.py"
TARGET = {"root": ROOT}
GOAL_SECONDS = 10.0
# Runs the module as its own __main__ and reports the process's own peak RSS (KiB) on stderr at exit: VmHWM of
# /proc/self/status (this program's memory only). getrusage's ru_maxrss is not used on Linux: it keeps the peak
# of the process before exec, i.e. of the forked bench process, which holds the previous run's result (a run
# after a big one reported the big one's figure).
WRAPPER = ("import atexit, resource, runpy, sys\n"
           "def peak():\n"
           "    try:\n"
           "        with open('/proc/self/status') as f:\n"
           "            return int([l for l in f if l.startswith('VmHWM:')][0].split()[1])\n"
           "    except (OSError, IndexError, ValueError):\n"
           "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
           "atexit.register(lambda: sys.stderr.write('MAXRSS %d\\n' % peak()))\n"
           "sys.argv = sys.argv[1:]\n"
           "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def statements(engine, n, rnd):
    """A few statements of migration n, like real migrations: mostly safe, sometimes not."""
    t = "t%d" % n
    out = ["-- migration %d" % n]
    if engine == "postgresql":
        out.append("SET lock_timeout = '2s';")
    out.append("CREATE TABLE %s (id %s PRIMARY KEY, name VARCHAR(100) NOT NULL, state %s, created_at TIMESTAMP);" % (
        t, "bigserial" if engine == "postgresql" else "INTEGER" if engine == "sqlite" else "BIGINT AUTO_INCREMENT",
        "VARCHAR(20)" if engine != "mysql" else "ENUM('new', 'done')"))
    prev = "t%d" % max(0, n - 1)
    choice = rnd.randrange(12)
    if choice == 0:
        out.append("ALTER TABLE %s ADD COLUMN flag INT NOT NULL;" % prev)
    elif choice == 1:
        out.append("ALTER TABLE %s ADD COLUMN flag INT NOT NULL DEFAULT 0;" % prev)
    elif choice == 2:
        out.append("DELETE FROM %s;" % prev)
    elif choice == 3:
        out.append("UPDATE %s SET name = 'x' WHERE id < 100;" % prev)
    elif choice == 4:
        out.append("-- dbops:ignore drop-table replaced by %s\nDROP TABLE %s;" % (t, prev))
    elif choice == 5:
        out.append("ALTER TABLE %s RENAME COLUMN name TO title;" % prev)
    elif choice == 6:
        out.append("CREATE INDEX %s_name ON %s (name);" % (prev, prev))
    elif choice == 7 and engine == "postgresql":
        out.append("CREATE INDEX CONCURRENTLY %s_state ON %s (state);" % (prev, prev))
    elif choice == 7 and engine == "mysql":
        out.append("ALTER TABLE %s MODIFY COLUMN state ENUM('new', 'done', 'failed');" % prev)
    elif choice == 8:
        out.append("ALTER TABLE %s ADD COLUMN note TEXT;" % prev)
    elif choice == 9 and n % 50 == 9:
        out.append("CREATE TABLE oops (id int,,);")
    else:
        out.append("INSERT INTO %s (name) VALUES ('seed-%d');" % (t, n))
    out.append("CREATE INDEX %s_created ON %s (created_at);" % (t, t))
    out.append("UPDATE %s SET state = 'new' WHERE state IS NULL;" % t)
    return "\n".join(out) + "\n"


def generate(directory, engine, count, seed=42):
    rnd = random.Random(seed)
    for n in range(count):
        (directory / ("%06d_migration.sql" % n)).write_text(statements(engine, n, rnd))


def big_file(path, engine, megabytes):
    """One file of about `megabytes` MB shaped like a data dump: schema, rows, then DDL after the data."""
    target = megabytes * 1024 * 1024
    with open(path, "w") as f:
        f.write("CREATE TABLE big (id bigint, name text, note text);\n")
        size, i = 0, 0
        if engine == "postgresql":
            f.write("COPY big (id, name, note) FROM stdin;\n")
            while size < target // 2:
                line = "%d\tname %d\tsome text; with a semicolon -- and dashes\n" % (i, i)
                f.write(line)
                size += len(line)
                i += 1
            f.write("\\.\n")
        while size < target:
            line = "INSERT INTO big (id, name, note) VALUES (%d, 'name %d', 'it''s; -- not a comment');\n" % (i, i)
            f.write(line)
            size += len(line)
            i += 1
        f.write("ALTER TABLE big ADD COLUMN flag int NOT NULL;\nDROP TABLE old_big;\n")


def run_module(directory, engine, workdir, extra=None, timeout=None):
    """Run the module in a fresh process; returns (wall seconds, peak RSS MiB, result); result None on timeout."""
    args = workdir / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict({
        "engine": engine, "path": [str(directory)], "fail_on": "never"}, **(extra or {}))}))
    root = TARGET["root"]
    env = dict(os.environ, PYTHONPATH=str(root / "build" / "collections"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", WRAPPER, str(root / "plugins" / "modules" / "migration_lint.py"),
                               str(args)], capture_output=True, text=True, env=env, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, None, None, None
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result = json.loads(proc.stdout)
    if result.get("failed"):
        raise RuntimeError("module failed: %s" % result.get("msg"))
    peak = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS ")][0]
    return wall, cpu, peak / 1024.0, result


CPU_GOAL = 1.20      # this / reference, issue 13
RSS_GOAL = 1.10


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


def compare(opts, engines, sizes, extra):
    """Side by side: reference (opts.compare) and this checkout, alternately, on the same files."""
    roots = [("reference", Path(opts.compare).resolve()), ("this", ROOT)]
    for _name, root in roots:
        tree = root / "build" / "collections" / "ansible_collections" / "dbops"
        tree.mkdir(parents=True, exist_ok=True)
        if not (tree / "maintenance").exists():
            (tree / "maintenance").symlink_to(root)
    rows, goals = [], []
    work = Path(tempfile.mkdtemp(prefix="dbops-lint-compare-"))
    try:
        for engine in engines:
            for size in sizes:
                d = work / ("%s-%d" % (engine, size))
                d.mkdir()
                generate(d, engine, size)
                runs = dict((name, []) for name, _root in roots)
                for rnd in range(opts.rounds):
                    for name, root in (roots if rnd % 2 == 0 else roots[::-1]):
                        TARGET["root"] = root
                        _wall, cpu, peak, result = run_module(d, engine, work, extra)
                        runs[name].append((cpu, peak, len(result["findings"]), result["statements"]))
                        print("%-10s %5d files round %d %-9s %6.2f s CPU %6.1f MiB %6d findings" % (
                            engine, size, rnd + 1, name, cpu, peak, len(result["findings"])), flush=True)
                row = dict(engine=engine, files=size)
                for name in runs:
                    row[name] = dict(cpu_s=round(median([r[0] for r in runs[name]]), 3),
                                     peak_rss_mib=round(median([r[1] for r in runs[name]]), 1),
                                     findings=runs[name][0][2], statements=runs[name][0][3],
                                     cpu_runs=[round(r[0], 3) for r in runs[name]],
                                     rss_runs=[round(r[1], 1) for r in runs[name]])
                row["cpu_ratio"] = round(row["this"]["cpu_s"] / row["reference"]["cpu_s"], 3)
                row["rss_ratio"] = round(row["this"]["peak_rss_mib"] / row["reference"]["peak_rss_mib"], 3)
                rows.append(row)
                cpu_goal = "%s %d files: CPU this/reference %.2f <= %.2f" % (engine, size, row["cpu_ratio"], CPU_GOAL)
                goals.append((cpu_goal, row["cpu_ratio"] <= CPU_GOAL))
                goals.append(("%s %d files: peak RSS this/reference %.2f <= %.2f" % (
                    engine, size, row["rss_ratio"], RSS_GOAL), row["rss_ratio"] <= RSS_GOAL))
                shutil.rmtree(d, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lines = ["| engine | files | findings ref / this | CPU s ref | CPU s this | CPU ratio | RSS MiB ref | "
             "RSS MiB this | RSS ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| %s | %d | %d / %d | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f |" % (
            r["engine"], r["files"], r["reference"]["findings"], r["this"]["findings"], r["reference"]["cpu_s"],
            r["this"]["cpu_s"], r["cpu_ratio"], r["reference"]["peak_rss_mib"], r["this"]["peak_rss_mib"],
            r["rss_ratio"]))
    env = dict(python=sys.version.split()[0], cpus=os.cpu_count(), load=os.getloadavg(), rounds=opts.rounds,
               reference=str(roots[0][1]), reference_commit=opts.reference_commit,
               ignore=(extra or {}).get("ignore"), code=benchlib.code_state())
    md = ("# migration_lint side by side %s\n\nMedians of %d alternating runs each (CPU time of the module process, "
          "its peak RSS).\n\n%s\n\n%s\n\nEnvironment: %s\n" % (
              stamp, opts.rounds, "\n".join(lines), "\n".join(benchlib.goals_text(goals)), json.dumps(env)))
    print()
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = dict(rows=rows, env=env, goals=dict(goals))
    (RESULTS / ("migration_lint_compare_%s.json" % stamp)).write_text(json.dumps(doc, indent=2))
    (RESULTS / ("migration_lint_compare_%s.md" % stamp)).write_text(md)
    return benchlib.exit_code(goals)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--sizes", default="1000,2500,5000")
    ap.add_argument("--engines", default="postgresql,mysql,sqlite")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--big-mb", type=int, default=0, help="also lint one dump-like file of this many MB")
    ap.add_argument("--timeout", type=float, default=None, help="seconds after which a big-file run is stopped")
    ap.add_argument("--root", default=None, help="run the module of this checkout instead of this one")
    ap.add_argument("--compare", default=None, help="side by side with the module of this checkout (the reference)")
    ap.add_argument("--rounds", type=int, default=3, help="with --compare: runs of each, alternately")
    ap.add_argument("--reference-commit", default=None, help="with --compare: the commit DIR was extracted from "
                    "(recorded with the results), e.g. git archive 60f437e | tar -x -C DIR")
    ap.add_argument("--ignore", default="", help="rules to pass as the module's ignore option (comma-separated), e.g. "
                    "the style rules added in issue 13, to compare throughput on the same findings as before")
    opts = ap.parse_args()
    extra = dict(ignore=[r for r in opts.ignore.split(",") if r]) if opts.ignore else None
    sizes = sorted(int(s) for s in opts.sizes.split(",") if s)
    engines = [e for e in opts.engines.split(",") if e]
    if opts.compare:
        return compare(opts, engines, sizes, extra)
    if opts.root:
        TARGET["root"] = Path(opts.root).resolve()
    tree = TARGET["root"] / "build" / "collections" / "ansible_collections" / "dbops"
    tree.mkdir(parents=True, exist_ok=True)
    if not (tree / "maintenance").exists():
        (tree / "maintenance").symlink_to(TARGET["root"])
    rows, big_rows = [], []
    work = Path(tempfile.mkdtemp(prefix="dbops-lint-bench-"))
    try:
        for engine in engines if opts.big_mb else []:
            d = work / ("%s-big" % engine)
            d.mkdir()
            big_file(d / "001_dump.sql", engine, opts.big_mb)
            mb = (d / "001_dump.sql").stat().st_size / 1e6
            limits = None if opts.root else dict(max_file_size=(opts.big_mb + 1) << 20)  # the old module has no such option
            wall, cpu, peak, result = run_module(d, engine, work, limits,
                                                 timeout=opts.timeout)
            row = dict(engine=engine, megabytes=round(mb, 1), finished=result is not None, wall_s=round(wall, 2),
                       cpu_s=round(cpu, 2) if cpu is not None else None,
                       peak_rss_mib=round(peak, 1) if peak is not None else None,
                       findings=[(f["rule"], f["line"]) for f in result["findings"]] if result else None)
            big_rows.append(row)
            print("%-10s big file %.1f MB: %s" % (engine, mb, row), flush=True)
            shutil.rmtree(d, ignore_errors=True)
        for engine in engines:
            for size in sizes:
                d = work / ("%s-%d" % (engine, size))
                d.mkdir()
                generate(d, engine, size)
                wall, cpu, peak, result = run_module(d, engine, work, extra)
                rows.append(dict(engine=engine, files=size, statements=result["statements"],
                                 findings=len(result["findings"]), wall_s=round(wall, 3), cpu_s=round(cpu, 3),
                                 ms_per_file=round(1000 * wall / size, 3), peak_rss_mib=round(peak, 1)))
                print("%-10s %6d files %7d statements %6d findings %7.2f s wall %7.2f s CPU %6.1f MiB" % (
                    engine, size, result["statements"], len(result["findings"]), wall, cpu, peak), flush=True)
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not sizes:
        print(json.dumps(big_rows, indent=2))
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        RESULTS.mkdir(parents=True, exist_ok=True)
        goals = [("%s %.0f MB file finishes" % (r["engine"], r["megabytes"]), r["finished"]) for r in big_rows]
        print("\n".join(benchlib.goals_text(goals)))
        (RESULTS / ("migration_lint_big_%s.json" % stamp)).write_text(json.dumps(dict(
            big=big_rows, root=str(TARGET["root"]), load=os.getloadavg(), code=benchlib.code_state(),
            goals=dict(goals)), indent=2))
        return benchlib.exit_code(goals)
    largest = max(sizes)
    ok = True
    lines = ["| engine | files | statements | findings | wall time (s) | CPU time (s) | ms / file (wall) | "
             "peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| %(engine)s | %(files)d | %(statements)d | %(findings)d | %(wall_s).2f | %(cpu_s).2f | "
                     "%(ms_per_file).2f | %(peak_rss_mib).1f |" % r)
    verdicts = []
    for engine in engines:
        mine = [r for r in rows if r["engine"] == engine]
        big = [r for r in mine if r["files"] == largest][0]
        fast = big["wall_s"] < GOAL_SECONDS
        # Linearity on CPU time per file (wall time also measures the machine's load): the largest run
        # within 1.5x of the smallest one.
        per_file = ["%.2f" % (1000.0 * r["cpu_s"] / r["files"]) for r in mine]
        linear = 1000.0 * big["cpu_s"] / big["files"] <= 1.5 * 1000.0 * mine[0]["cpu_s"] / mine[0]["files"]
        ok = ok and fast and linear
        verdicts.append("- %s: %d files in %.2f s wall, %.2f s CPU (goal < %.0f s wall: %s); CPU ms/file %s: %s" % (
            engine, largest, big["wall_s"], big["cpu_s"], GOAL_SECONDS, "met" if fast else "NOT met",
            " -> ".join(per_file), "linear" if linear else "NOT linear"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    env = dict(python=sys.version.split()[0], cpus=os.cpu_count(), load=os.getloadavg())
    try:
        import pglast  # pylint: disable=import-outside-toplevel
        import sqlglot  # pylint: disable=import-outside-toplevel
        from sqlglot import parser as sqlglot_parser  # pylint: disable=import-outside-toplevel
        env.update(pglast=pglast.__version__, sqlglot=sqlglot.__version__,
                   sqlglot_compiled=sqlglot_parser.__file__.endswith('.so'))
    except ImportError:
        pass
    env["root"] = str(TARGET["root"])
    env["code"] = benchlib.code_state()
    md = "# migration_lint benchmark %s\n\n%s\n\n%s\n\nEnvironment: %s\n" % (
        stamp, "\n".join(lines), "\n".join(verdicts), json.dumps(env))
    if big_rows:
        md += "\nBig files:\n\n" + "\n".join("- %s" % json.dumps(r) for r in big_rows) + "\n"
    print()
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = dict(rows=rows, big=big_rows, env=env, ok=ok)
    (RESULTS / ("migration_lint_%s.json" % stamp)).write_text(json.dumps(doc, indent=2))
    (RESULTS / ("migration_lint_%s.md" % stamp)).write_text(md)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
