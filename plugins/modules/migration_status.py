#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: migration_status
short_description: Report the migration history of Prisma, alembic, Flyway, Django, golang-migrate, sqlx, knex, Rails, dbmate or goose
version_added: 0.2.0
description:
  - Reads the history table of a migration tool, exactly as the tool itself reads it, and compares it with the
    migrations on disk (O(migrations_path)). It never changes anything, and it needs none of the tool's own
    toolchain on the host.
  - Reports the migrations that are applied, pending (on disk, not recorded), failed (started but not finished,
    a dirty golang-migrate version, a Flyway or sqlx row with success false), unknown (recorded but not on disk,
    the alembic C(Can't locate revision) case) and modified (applied with another checksum than the file has now;
    Prisma, Flyway and sqlx store checksums), the current head(s), whether the history is clean, and a one-line
    summary.
  - With O(fail_on), any of these findings fails the task with the summary, so a playbook can stop a deploy.
  - A database without the history table is reported as such (RV(table_exists) false), not as an error.
  - A table whose columns are not the tool's (another tool chosen by mistake) is an error that names the tools
    whose columns fit.
options:
  drift:
    description:
      - Also compare the schema with the migrations, as M(dbops.maintenance.schema_diff) O(dbops.maintenance.schema_diff#module:reference=migrations)
        does - replayed into a C(dbops_scratch_diff_) shadow database that is always dropped (the SQL-file tools
        only; needs O(migrations_path) and the right to create databases). The result is in RV(drift), its one line
        in RV(drift_summary) and after the history summary.
    type: bool
    default: false
  shadow_setup:
    description:
      - With O(drift) - SQL run in the shadow database before the migrations (as schema_diff's).
    type: str
  fail_on:
    description:
      - Findings that fail the task (with the summary as message). The result keys are returned either way.
    type: list
    elements: str
    choices: [failed, pending, unknown, modified]
    default: []
extends_documentation_fragment:
  - dbops.maintenance.connection
  - dbops.maintenance.migrations
attributes:
  check_mode:
    support: full
    description: Reads only, in every mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
notes:
  - Flyway repeatable migrations (C(R__*.sql)) are not reported; versions at or below a BASELINE row are not pending.
  - Django squashed migrations are listed under their own names.
  - For golang-migrate every version up to the recorded one counts as applied, as golang-migrate itself assumes.
seealso:
  - module: dbops.maintenance.migration_resolve
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Gate a deploy on a clean Prisma history
  dbops.maintenance.migration_status:
    engine: mysql
    login_host: db1.example.com
    login_user: ops
    login_password: "{{ vault_ops_password }}"
    database: shop
    tool: prisma
    migrations_path: /srv/shop/prisma/migrations
    fail_on: [failed, unknown, modified]

- name: Find the alembic revision that no script defines
  dbops.maintenance.migration_status:
    engine: postgresql
    database: app
    tool: alembic
    migrations_path: /srv/app/alembic/versions
  register: history

- name: Show it
  ansible.builtin.debug:
    msg: "{{ history.summary }} (unknown: {{ history.unknown }})"

- name: Django app on SQLite
  dbops.maintenance.migration_status:
    engine: sqlite
    database: /srv/site/db.sqlite3
    tool: django
    app: shop
    migrations_path: /srv/site/shop/migrations
'''

RETURN = r'''
drift:
  description: With O(drift) - the schema against the replayed migrations, as schema_diff returns it (C(in_sync),
    C(summary), C(drift), C(sql), C(shadow)).
  returned: with drift
  type: dict
drift_summary:
  description: "With O(drift) - one line, e.g. C(schema: 1 difference: 1 column unexpected (shipment_records.note))."
  returned: with drift
  type: str
applied:
  description: Migrations recorded as applied (ids as the tool stores them), in history order (alembic, golang-migrate
    and the tools without rows per attempt in the order on disk).
  returned: success
  type: list
  elements: str
  sample: [20250101000000_init, 20250821015630_add_shipment_file_field]
pending:
  description: Migrations on disk that are not recorded (neither applied nor failed).
  returned: success
  type: list
  elements: str
failed_migrations:
  description: The C(failed) finding, under this name because C(failed) is Ansible's own result key.
    Migrations that started and did not finish (Prisma row without finished_at, golang-migrate dirty,
    Flyway/sqlx success false).
  returned: success
  type: list
  elements: str
unknown:
  description: Migrations recorded in the database that are not on disk (alembic revisions that no script defines).
  returned: success
  type: list
  elements: str
  sample: [e3c92c171920]
modified:
  description: Applied migrations whose stored checksum differs from the file's (Prisma, Flyway, sqlx).
  returned: success
  type: list
  elements: str
current:
  description: The head revision(s) (alembic) or the latest applied version/name.
  returned: success
  type: list
  elements: str
clean:
  description: True when nothing is failed, unknown, modified or pending.
  returned: success
  type: bool
summary:
  description: One line for humans.
  returned: success
  type: str
  sample: "alembic history (\"alembic_version\"): 1 unknown (e3c92c171920), 2 pending (001_initial_schema, 002_users);
    0 applied, current e3c92c171920"
table_exists:
  description: Whether the history table exists.
  returned: success
  type: bool
history_table:
  description: The history table read.
  returned: success
  type: str
history_rows:
  description: Number of rows in the history table.
  returned: success
  type: int
local_count:
  description: Number of migrations found in O(migrations_path) (null without it).
  returned: success
  type: int
tool:
  description: The tool.
  returned: success
  type: str
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    ModuleFailure, dbops_argument_spec, finish_result, run_module,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.service import FINDINGS, History


def argument_spec():
    return dbops_argument_spec(
        changes=False,
        tool=dict(type='str', required=True, choices=list(TOOLS)),
        migrations_path=dict(type='path'),
        app=dict(type='str'),
        history_table=dict(type='str'),
        fail_on=dict(type='list', elements='str', choices=list(FINDINGS), default=[]),
        drift=dict(type='bool', default=False),
        shadow_setup=dict(type='str'),
    )


def validate(module):
    p = module.params
    if p['tool'] == 'django' and not p['app']:
        module.fail_json(msg='app is required for tool=django: django_migrations records migrations per app.')
    if p['fail_on'] and not p['migrations_path'] and set(p['fail_on']) & {'pending', 'unknown', 'modified'}:
        module.fail_json(msg='fail_on %s needs migrations_path: without the migration files, pending, unknown and '
                             'modified cannot be known.' % ', '.join(p['fail_on']))
    if p['drift'] and not p['migrations_path']:
        module.fail_json(msg='drift: true needs migrations_path (the migrations replayed into the shadow database).')


def work(module, db):
    p = module.params
    try:
        st = History(db, p).status()
    except (OSError, ValueError) as e:
        raise DbopsError('Cannot read the migrations in %s: %s' % (p['migrations_path'], e))
    st = finish_result(db, dict(st, changed=False), queries=False)
    if p['drift']:
        from ansible_collections.dbops.maintenance.plugins.module_utils.schema.checks import status_drift
        st['drift'] = status_drift(module, db)
        st['drift_summary'] = 'schema: %s' % st['drift']['summary']
        st['summary'] = '%s; %s' % (st['summary'], st['drift_summary'])
    hits = [k for k in p['fail_on'] if st.get(k)]
    # 'failed' is Ansible's own result key (task failed): the list is returned as failed_migrations.
    st['failed_migrations'] = st.pop('failed')
    if hits:
        raise ModuleFailure('%s (fail_on: %s)' % (st['summary'], ', '.join(hits)), **st)
    return st


def main():
    run_module(argument_spec(), work, validate=validate)


if __name__ == '__main__':
    main()
