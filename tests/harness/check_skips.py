"""Fail when a pytest run skipped a test that tests/allowed_skips.txt does not allow.

    python tests/harness/check_skips.py JUNIT.xml tests/allowed_skips.txt

allowed_skips.txt: one ``<test id pattern (fnmatch)> | <reason>`` per line (# comments); the reason is
required. A test id is ``tests/<dir>/<file>.py::[<Class>::]<name>[<params>]``. Exit 1 listing each
unlisted skip with pytest's skip message; exit 0 with a warning if DBOPS_ALLOW_SKIPS=1 (local runs that
start fewer servers); exit 2 if the XML is missing or the list is malformed.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import xml.etree.ElementTree as ET


def read_allowed(path):
    allowed = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pattern, sep, reason = line.partition(" | ")
            if not sep or not reason.strip() or not pattern.strip():
                raise ValueError("%s:%d: every allowed skip needs '<test id pattern> | <reason>'" % (path, n))
            allowed.append((pattern.strip(), reason.strip()))
    return allowed


def test_id(case):
    """tests.integration.test_x[.Class] + name -> tests/integration/test_x.py::[Class::]name"""
    parts = case.get("classname", "").split(".")
    mods = [i for i, p in enumerate(parts) if p.startswith("test_")]
    cut = mods[0] + 1 if mods else len(parts)
    return "/".join(parts[:cut]) + ".py::" + "::".join(parts[cut:] + [case.get("name", "")])


def skipped_cases(xml):
    root = ET.parse(xml).getroot()
    for case in root.iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            yield test_id(case), (skipped.get("message") or "").strip()


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        allowed = read_allowed(argv[2])
        skipped = list(skipped_cases(argv[1]))
    except (OSError, ET.ParseError, ValueError) as e:
        print("check_skips: %s" % e, file=sys.stderr)
        return 2
    bad = [(tid, msg) for tid, msg in skipped if not any(fnmatch.fnmatchcase(tid, p) for p, _r in allowed)]
    ok = len(skipped) - len(bad)
    if ok:
        print("check_skips: %d allowed skip(s) (tests/allowed_skips.txt)" % ok)
    if not bad:
        return 0
    print("\ncheck_skips: %d skipped test(s) not in %s (CI must run them, or list them there with a reason):"
          % (len(bad), argv[2]), file=sys.stderr)
    for tid, msg in bad:
        print("  SKIPPED %s: %s" % (tid, msg), file=sys.stderr)
    if os.environ.get("DBOPS_ALLOW_SKIPS") == "1":
        print("check_skips: DBOPS_ALLOW_SKIPS=1: not failing", file=sys.stderr)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
