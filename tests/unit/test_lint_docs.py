"""docs/lint is generated from the rule table (scripts/lint_docs.py) and must be up to date; every rule has a
bad example and a safe twin in tests/integration/test_lint_rules.py (they are the examples of its page)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rule_docs_are_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_docs.py"), "--check"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, "run scripts/lint_docs.py: " + proc.stdout + proc.stderr


def test_every_rule_has_a_tested_example():
    sys.path.insert(0, str(ROOT / "scripts"))
    import lint_docs  # pylint: disable=import-outside-toplevel
    all_rules, cases = lint_docs.load()
    # mysql-add-column-rebuild needs mysql_version (tests/unit/test_lint_parity.py); the runner's own two rules are
    # about files, not statements
    untested = ("code-migration", "too-large", "mysql-add-column-rebuild")
    without = [r.id for r in all_rules if r.id not in cases and r.id not in untested]
    assert without == []
