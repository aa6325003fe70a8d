# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tools, by the name the modules' tool option takes.

Static imports: Ansible ships to the managed host only the module_utils that
a module imports statically.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import (
    alembic, dbmate, django, flyway, golang_migrate, goose, knex, prisma, rails, sqlx,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.names import NAMES

TOOLS = {
    'prisma': prisma.TOOL,
    'alembic': alembic.TOOL,
    'flyway': flyway.TOOL,
    'django': django.TOOL,
    'golang-migrate': golang_migrate.TOOL,
    'sqlx': sqlx.TOOL,
    'knex': knex.TOOL,
    'rails': rails.TOOL,
    'dbmate': dbmate.TOOL,
    'goose': goose.TOOL,
}
if tuple(TOOLS) != NAMES:  # pragma: no cover - a tool added to one list and not the other
    raise ImportError('migrations/names.py NAMES and registry.TOOLS list different tools')


def get_tool(name):
    return TOOLS[name]
