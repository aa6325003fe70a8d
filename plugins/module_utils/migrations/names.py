# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names the modules' tool option takes, without importing the tools (registry.py imports all ten: a module
that only validates the option, or reads no history in this run, does not pay for that)."""

from __future__ import annotations

# In registry.TOOLS's order; registry.py refuses to load when the two differ.
NAMES = ('prisma', 'alembic', 'flyway', 'django', 'golang-migrate', 'sqlx', 'knex', 'rails', 'dbmate', 'goose')
