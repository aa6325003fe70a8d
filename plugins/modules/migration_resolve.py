#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: migration_resolve
short_description: Mark a migration applied, rolled back or absent in a migration tool's history table
version_added: 0.2.0
description:
  - Writes the history table of Prisma, alembic, Flyway, Django, golang-migrate, sqlx, knex, Rails, dbmate or goose
    exactly as the tool itself does, so a host can be repaired without the application's toolchain.
    Only the history is changed, never the schema; check the schema first (for example with
    M(dbops.maintenance.column_ensure)).
  - O(state=applied) is C(prisma migrate resolve --applied) (refuses a migration with a finished row, marks its
    failed rows rolled back, inserts a finished row with a new UUID and the SHA-256 of C(migration.sql)),
    C(alembic stamp) (replaces the row on the revision's branch line, or adds one for a new branch),
    Flyway (removes the failed rows as C(flyway repair) does and records a successful row with the CRC32 checksum),
    C(migrate force) for golang-migrate, and a new history row for the other tools.
  - O(state=rolled_back) is C(prisma migrate resolve --rolled-back) (failed rows only), C(flyway repair) and the
    sqlx equivalent (removes the failed row), alembic (moves the head back to its down revision), golang-migrate
    (forces the version before it on disk, the fix for a dirty database); for Django, knex, Rails, dbmate and goose
    it removes the row like O(state=absent).
  - O(state=absent) removes every history row of the migration (for alembic, the one row with that revision,
    which also removes a revision that no script defines).
  - Idempotent. Each change runs in one transaction, under the collection's maintenance lock. Check mode returns
    the exact statements; diff mode shows the migration's history rows before and after.
  - Refuses, changing nothing, with a message that names the fix, a migration that is not in O(migrations_path)
    where the tool needs the file, an alembic revision that no script defines, a history table with the columns
    of another tool, and O(state=applied) on a migration already applied with another checksum.
options:
  migration:
    description:
      - The migration. Prisma the directory name, alembic the revision id, Flyway the version (C(1.1) or C(1_1)),
        Django the migration name (with O(app)), golang-migrate/sqlx/goose/Rails/dbmate the version, knex the file name.
    type: str
    required: true
    aliases: [name, revision, version]
  state:
    description:
      - The state the migration must have in the history.
    type: str
    choices: [applied, rolled_back, absent]
    default: applied
  purge:
    description:
      - C(alembic) only. When C(alembic_version) holds revisions that no script defines, replace the whole table with
        O(migration) (C(alembic stamp --purge)). Without it such a table is refused.
    type: bool
    default: false
  create_table:
    description:
      - Create the history table when it is missing, with the tool's own DDL for the engine (and, for knex, its lock
        table; for goose, its version 0 row). Without it, a missing table is an error for O(state=applied).
    type: bool
    default: false
extends_documentation_fragment:
  - dbops.maintenance.connection
  - dbops.maintenance.connection.safety
  - dbops.maintenance.migrations
attributes:
  check_mode:
    support: full
    description: Reads the history, reports the exact statements in RV(queries), and changes nothing.
  diff_mode:
    support: full
    description: Shows the history rows of the migration (alembic and golang-migrate, the whole table) before and after.
notes:
  - O(migrations_path) is required for O(state=applied) with Prisma, Flyway and sqlx (they store checksums) and
    with alembic (the revision graph); for the other tools, a migration that is not in it is refused when it is given.
  - Prisma ids are random UUIDs, so the C(INSERT) in check mode and in the real run differ in the id only.
  - On MySQL/MariaDB a C(CREATE TABLE) (O(create_table)) is committed at once by the server; the history rows
    are written in the transaction after it.
seealso:
  - module: dbops.maintenance.migration_status
  - module: dbops.maintenance.column_ensure
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: The column of the failed Prisma migration is there
  dbops.maintenance.column_ensure:
    engine: mysql
    database: shop
    table: shipment_records
    column: shipmentFile
    type: varchar(191)
    nullable: true

- name: So mark the migration applied (prisma migrate resolve --applied)
  dbops.maintenance.migration_resolve:
    engine: mysql
    database: shop
    tool: prisma
    migrations_path: /srv/shop/prisma/migrations
    migration: 20250821015630_add_shipment_file_field
    state: applied

- name: Replace a revision that no longer exists (alembic stamp --purge 001_initial_schema)
  dbops.maintenance.migration_resolve:
    engine: postgresql
    database: app
    tool: alembic
    migrations_path: /srv/app/alembic/versions
    revision: 001_initial_schema
    purge: true

- name: Clear a dirty golang-migrate version 7 (force 6)
  dbops.maintenance.migration_resolve:
    engine: postgresql
    database: app
    tool: golang-migrate
    migrations_path: /srv/app/migrations
    version: "7"
    state: rolled_back
'''

RETURN = r'''
migration:
  description: The migration, as the tool stores it.
  returned: success
  type: str
state_before:
  description: C(applied), C(failed) or C(absent) before the run.
  returned: success
  type: str
state_after:
  description: C(applied), C(failed) or C(absent) after the run (in check mode, as it would be).
  returned: success
  type: str
created_table:
  description: Whether the history table was (would be) created.
  returned: success
  type: bool
queries:
  description: The statements that ran (in check mode, that would run), in one transaction.
  returned: always
  type: list
  elements: str
  sample:
    - UPDATE `_prisma_migrations` SET `rolled_back_at` = UTC_TIMESTAMP(3) WHERE `id` = '0d3c...'
    - INSERT INTO `_prisma_migrations` (`id`, `checksum`, `logs`, `started_at`, `finished_at`, `migration_name`)
      VALUES ('8e0f...', 'b1c2...', '', UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), '20250821015630_add_shipment_file_field')
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    dbops_argument_spec, finish_result, run_module,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.service import resolve


def argument_spec():
    return dbops_argument_spec(
        tool=dict(type='str', required=True, choices=list(TOOLS)),
        migration=dict(type='str', required=True, aliases=['name', 'revision', 'version']),
        state=dict(type='str', choices=['applied', 'rolled_back', 'absent'], default='applied'),
        migrations_path=dict(type='path'),
        app=dict(type='str'),
        history_table=dict(type='str'),
        purge=dict(type='bool', default=False),
        create_table=dict(type='bool', default=False),
    )


def validate(module):
    p = module.params
    if p['tool'] == 'django' and not p['app']:
        module.fail_json(msg='app is required for tool=django: django_migrations records migrations per app.')
    if p['purge'] and p['tool'] != 'alembic':
        module.fail_json(msg='purge is for alembic only (alembic stamp --purge).')


def work(module, db):
    p = module.params
    try:
        res = resolve(db, p, module.check_mode)
    except (OSError, ValueError) as e:
        raise DbopsError('Cannot read the migrations in %s: %s. Nothing was changed.' % (p['migrations_path'], e))
    result = dict(changed=res['changed'], migration=res['migration'], created_table=res['created_table'],
                  state_before=res['before']['state'], state_after=res['after']['state'])
    if res.get('msg'):
        result['msg'] = res['msg']
    return finish_result(db, result, diff=dict(before=res['before'], after=res['after']))


def main():
    run_module(argument_spec(), work, validate=validate)


if __name__ == '__main__':
    main()
