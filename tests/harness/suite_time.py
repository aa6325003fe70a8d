"""Time integration test files: ansible-playbook starts, wall and CPU seconds, load.

    .venv/bin/python tests/harness/suite_time.py --state-dir DIR [--tree TREE] [--label L] [--out FILE] \
        test_column_ensure.py test_db_backup.py ...

For each file: runs ``pytest -q tests/integration/FILE -n 2`` in TREE (default: this work tree) against the
servers of DIR, with ``DBOPS_COUNT_PLAYBOOKS`` set (tests/integration/ansible_run.py appends one line per
ansible-playbook start), and prints one tab-separated line: label, file, pytest's exit code, starts, wall
seconds, CPU seconds (user + system of pytest and everything under it: the xdist workers, ansible-playbook
and the modules; not the database servers), the 1-minute load before and after, and pytest's last line.
CPU seconds depend far less on what else loads the machine than wall seconds do: compare both.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--state-dir", default=os.environ.get("DBOPS_SERVERS_STATE"), required=False)
    ap.add_argument("--tree", default=str(HERE.parents[1]))
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", help="also append the lines to this file")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per file")
    args = ap.parse_args(argv)
    if not args.state_dir:
        ap.error("--state-dir is required (or set DBOPS_SERVERS_STATE)")
    work = Path(tempfile.mkdtemp(prefix="suite-time-"))
    worst = 0
    for f in args.files:
        name = os.path.basename(f)
        count = work / (name + ".count")
        count.touch()
        log = work / (name + ".log")
        env = dict(os.environ, DBOPS_COUNT_PLAYBOOKS=str(count), DBOPS_SERVERS_STATE=args.state_dir)
        load0 = os.getloadavg()[0]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        with open(log, "w", encoding="utf-8") as out:
            try:
                rc = subprocess.call([args.python, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                      "tests/integration/" + name, "-n", "2"], cwd=args.tree, env=env,
                                     stdout=out, stderr=subprocess.STDOUT, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                rc = "timeout"
        wall = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        starts = len(count.read_text().splitlines())
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        line = "\t".join([args.label, name, "rc=%s" % rc, "starts=%d" % starts, "wall=%.1f" % wall,
                          "cpu=%.1f" % cpu, "load=%.1f..%.1f" % (load0, os.getloadavg()[0]),
                          lines[-1] if lines else ""])
        print(line, flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as o:
                o.write(line + "\n")
        if rc != 0:
            worst = 1
            print("  log: %s" % log, flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
