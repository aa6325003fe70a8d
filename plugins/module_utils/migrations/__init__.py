# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration-history tools for migration_status and migration_resolve.

One file per tool (prisma.py, alembic.py, ...), each a subclass of
base.Tool that describes the tool's history table (columns, DDL per engine),
how to list its migrations on disk, its checksum, and its resolve semantics.
registry.py lists them: adding a tool is adding one file and one line there.
"""

from __future__ import annotations

# The tool names and their descriptions are registry.TOOLS: the modules' tool option takes its choices from it.
