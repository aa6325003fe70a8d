"""Fixtures of the molecule testinfra tests: fleet, query (molecule/resources/dbops_molecule.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))

from dbops_molecule import fleet_fixture, query_fixture  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
