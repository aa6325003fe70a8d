"""Unit tests import the collection's module_utils through the ansible_collections namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "build" / "collections"
if not (COLLECTIONS / "ansible_collections" / "dbops" / "maintenance").exists():
    subprocess.run(["bash", str(ROOT / "scripts" / "collection-tree.sh")], check=True, stdout=subprocess.DEVNULL)
sys.path.insert(0, str(COLLECTIONS))
