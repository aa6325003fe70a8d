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

# The tool names (the modules' tool option); registry.TOOLS maps them to their descriptions.
TOOLS = ('prisma', 'alembic', 'flyway', 'django', 'golang-migrate', 'sqlx', 'knex', 'rails', 'dbmate', 'goose')


def get_tool(name):
    """The Tool description of a tool name (imported on first use)."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import get_tool as _get
    return _get(name)
