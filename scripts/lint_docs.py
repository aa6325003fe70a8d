"""Write migration_lint's rule documentation from its rule table: docs/lint/README.md (the rules table) and one
page per rule, docs/lint/rules/<rule id>.md, with the rule's bad example and safe twin taken from the cases
tests/integration/test_lint_rules.py runs (so every example in the docs is tested).

    .venv/bin/python scripts/lint_docs.py           # write the files
    .venv/bin/python scripts/lint_docs.py --check   # exit 1 if they are not up to date (tests/unit/test_lint_docs.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "lint"
LINTERS = (("squawk", "squawk"), ("atlas", "Atlas"), ("strong_migrations", "strong_migrations"),
           ("bytebase", "Bytebase"))
ENGINE_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB", "sqlite": "SQLite"}
SEVERITY_NOTE = (
    "Severities: **error** only for data loss, for statements that fail, and for statements that rewrite or lock a "
    "table for as long as it is big and that no ORM writes for a common change (the lint gate of migration_apply "
    "refuses on error by default); **warning** for locks and breaking changes that need a look (including the SQL "
    "Prisma, Django, Rails and Alembic generate by default: SET NOT NULL, ADD UNIQUE, CREATE INDEX, FOREIGN KEY); "
    "**info** for style and preference. A finding can carry a lower severity than its rule's default when the "
    "statement is less dangerous (e.g. a weak lock, a 32-bit column that is not a key); the pages say when.")


def _import(path, name):
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load():
    collections = ROOT / "build" / "collections"
    if not (collections / "ansible_collections" / "dbops" / "maintenance").exists():
        import subprocess
        subprocess.run(["bash", str(ROOT / "scripts" / "collection-tree.sh")], check=True, stdout=subprocess.DEVNULL)
    sys.path.insert(0, str(collections))
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import rules, runner
    cases = _import(ROOT / "tests" / "integration" / "test_lint_rules.py", "lint_rule_cases").CASES
    return list(rules.RULES) + [runner.CODE_RULE, runner.TOO_LARGE_RULE], cases


def _also(rule, linter):
    ids = [their for who, their in rule.also if who == linter]
    return ", ".join("`%s`" % i for i in ids) if ids else ""


def table(all_rules):
    out = ["# migration_lint rules", "",
           "Generated from the rule table (plugins/module_utils/lint/rules.py) by `scripts/lint_docs.py`; do not edit "
           "by hand.", "", SEVERITY_NOTE, "",
           "The columns on the right name the rule of other migration linters that checks the same hazard: "
           "[squawk](https://squawkhq.com/docs/rules) (its ids are checked side by side in "
           "tests/integration/test_lint_squawk.py), [Atlas](https://atlasgo.io/lint/analyzers) `migrate lint` "
           "analyzers, [strong_migrations](https://github.com/ankane/strong_migrations) checks and "
           "[Bytebase](https://www.bytebase.com/docs/sql-review/review-rules) SQL review rules. The Atlas ids were "
           "checked against Atlas's source (ariga/atlas: the codes in sql/sqlcheck/{destructive,datadepend,"
           "incompatible,condrop} and sql/mysql/mysqlcheck, and the analyzer table doc/md/lint/analyzers.mdx as it "
           "stood before the docs left that repository in October 2024, for the PG and MY codes of Atlas Pro); the "
           "Bytebase ids against Bytebase's source (bytebase/bytebase backend/plugin/advisor: the rule types and "
           "the engines their advisors register for). They are not run side by side; strong_migrations' names are "
           "from its README.", "",
           "| rule | severity | engines | what | squawk | Atlas | strong_migrations | Bytebase |",
           "|---|---|---|---|---|---|---|---|"]
    for r in all_rules:
        engines = ", ".join(ENGINE_NAMES[e] for e in r.engines)
        out.append("| [%s](rules/%s.md) | %s | %s | %s | %s |" % (
            r.id, r.id, r.severity, engines, r.title.replace("|", "\\|"),
            " | ".join(_also(r, key) for key, _name in LINTERS)))
    out += ["", "Select rules with the `rules` / `ignore` options; accept one finding with a comment "
            "`-- dbops:ignore RULE reason` on the line before the statement, inside it, or at the end of its last "
            "line (the reason is required).", ""]
    return "\n".join(out)


def page(rule, cases):
    out = ["# %s" % rule.id, "", "**%s** — default severity **%s**; engines: %s." % (
        rule.title, rule.severity, ", ".join(ENGINE_NAMES[e] for e in rule.engines)), "",
        "## Why", "", rule.why, "", "## Instead", "", rule.alternative, ""]
    for i, (engines, bad, good, setup) in enumerate(cases.get(rule.id, [])):
        label = ", ".join(ENGINE_NAMES[e] for e in engines)
        out += ["## Example%s (%s)" % ((" %d" % (i + 1)) if len(cases[rule.id]) > 1 else "", label), ""]
        if setup:
            out += ["Earlier migration:", "", "```sql", setup, "```", ""]
        out += ["Reported:", "", "```sql", bad, "```", "", "Not reported (the safe twin):", "", "```sql", good,
                "```", ""]
    if rule.also:
        out += ["## Also checked by", ""]
        names = dict(LINTERS)
        for who, their in rule.also:
            out.append("- %s: `%s`" % (names.get(who, who), their))
        out.append("")
    out += ["## Accepting a finding", "", "```sql", "-- dbops:ignore %s <the reason you accept it>" % rule.id,
            "```", ""]
    return "\n".join(out)


def render():
    all_rules, cases = load()
    files = {DOCS / "README.md": table(all_rules)}
    for r in all_rules:
        files[DOCS / "rules" / ("%s.md" % r.id)] = page(r, cases)
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    files = render()
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    extra = [p for p in (DOCS / "rules").glob("*.md") if p not in files] if (DOCS / "rules").exists() else []
    if args.check:
        for p in stale + extra:
            print("out of date: %s" % p.relative_to(ROOT))
        return 1 if stale or extra else 0
    (DOCS / "rules").mkdir(parents=True, exist_ok=True)
    for p in stale:
        p.write_text(files[p])
    for p in extra:
        p.unlink()
    print("%d file(s) written, %d removed" % (len(stale), len(extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
