#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: state_check
short_description: Tell, in one connection, whether a database is already in its whole desired state
version_added: 0.3.0
description:
  - The desired-state interface of the collection, and the fast path of the maintenance playbook. Takes the whole
    desired state the fix roles take (O(enums), O(columns), O(indexes), O(constraints), the migration history
    O(migrations)) and the declared checks (O(verify)), and in one connection reads the server facts, plans every
    item with exactly the code its module uses (M(dbops.maintenance.enum_add), M(dbops.maintenance.column_ensure),
    M(dbops.maintenance.index_ensure), M(dbops.maintenance.constraint_ensure), M(dbops.maintenance.migration_resolve),
    M(dbops.maintenance.migration_status)) in check mode, and runs the checks of M(dbops.maintenance.db_verify).
  - RV(in_desired_state) is true only when no item's plan has a statement, no plan would refuse, no option would be
    rejected by the module, nothing failed to read, and every check passed. Anything else is listed in
    RV(differences) and the host needs the full path (plan, backup, change, verify), where the modules themselves
    plan, refuse or change.
  - Read-only on the database, always. It never changes the database (also outside check mode) and never takes
    the maintenance lock. It returns C(changed=true) only when it took the backup of O(backup).
  - With O(backup), a host whose declared items will be changed on this plan (some item has statements, none
    would be refused, no item needs its module to plan, no O(migrations)) is backed up in the same run, after
    the plan and the row counts of O(capture), by the whole run of M(dbops.maintenance.db_backup) with its own
    options (preflight of the tools and the free space, dump, verification, retention). This is how the
    maintenance playbook's first run saves a module run per host; a host in its desired state is never backed up.
  - An item is given with the option names and defaults of its module; items are validated one by one, so an item
    the module would reject is a difference (the module then fails on the full path with its own message), not a
    failure of this task.
options:
  enums:
    description:
      - Enum values that must exist, each as the options of M(dbops.maintenance.enum_add) (C(name), C(schema),
        C(table), C(column), C(values), C(before), C(after), C(create), C(allow_copy)).
    type: list
    elements: raw
    default: []
  columns:
    description:
      - Columns that must exist (or be absent), each as the options of M(dbops.maintenance.column_ensure).
    type: list
    elements: raw
    default: []
  indexes:
    description:
      - Indexes that must exist (or be absent), each as the options of M(dbops.maintenance.index_ensure).
    type: list
    elements: raw
    default: []
  constraints:
    description:
      - Constraints that must exist (or be absent), each as the options of M(dbops.maintenance.constraint_ensure).
    type: list
    elements: raw
    default: []
  migrations:
    description:
      - The migration history of one migration tool.
    type: dict
    suboptions:
      tool:
        description: The migration tool (as M(dbops.maintenance.migration_status)).
        type: str
        required: true
        choices: [prisma, alembic, flyway, django, golang-migrate, sqlx, knex, rails, dbmate, goose]
      path:
        description: Directory of the migration files.
        type: path
      app:
        description: Django app label.
        type: str
      history_table:
        description: History table, when not the tool's default.
        type: str
      resolutions:
        description:
          - Resolutions that must already be recorded, each as the options of M(dbops.maintenance.migration_resolve)
            (C(migration), C(state), C(purge), C(create_table)).
        type: list
        elements: raw
        default: []
      fail_on:
        description: Findings of M(dbops.maintenance.migration_status) that are a difference.
        type: list
        elements: str
        choices: [failed, unknown, modified, pending]
        default: [failed, unknown, modified]
      deploy:
        description: Migrations are to be deployed; then a failed or pending migration is a difference.
        type: bool
        default: false
  capture:
    description:
      - When the host is not in its desired state, also count the rows of every table (O(dbops.maintenance.db_verify#module:capture), the
        same code) and return them as RV(baseline), the baseline the checks after the change compare with. Nothing
        is counted on a host in its desired state.
    type: bool
    default: false
  backup:
    description:
      - The options of M(dbops.maintenance.db_backup), all but the connection (which is this module's), for example
        O(dbops.maintenance.db_backup#module:dest), O(dbops.maintenance.db_backup#module:verify),
        O(dbops.maintenance.db_backup#module:preflight) and O(dbops.maintenance.db_backup#module:keep_last). They
        are validated by db_backup's own specification before anything connects.
      - When given, the backup is taken in this run if the host's items will change on this plan (see the
        description), and returned as RV(backup). Never taken in check mode.
    type: dict
  row_count_tables:
    description: Limit the row counts of O(capture) to these tables (empty = all).
    type: list
    elements: str
  verify:
    description:
      - The checks of M(dbops.maintenance.db_verify) to run, with its option names. A failed check is a difference.
    type: dict
    default: {}
    suboptions:
      tables_min:
        description: The database must have at least this many tables.
        type: int
      tables:
        description: Tables that must exist.
        type: list
        elements: str
      columns:
        description: Columns that must exist (O(dbops.maintenance.db_verify#module:columns)).
        type: list
        elements: dict
        suboptions:
          table:
            description: The table.
            type: str
            required: true
          column:
            description: The column.
            type: str
            required: true
          schema:
            description: PostgreSQL schema.
            type: str
          type:
            description: Expected type.
            type: str
          nullable:
            description: Expected nullability.
            type: bool
      enum_values:
        description: Enum values that must exist (O(dbops.maintenance.db_verify#module:enum_values)).
        type: list
        elements: dict
        suboptions:
          name:
            description: PostgreSQL enum type.
            type: str
          schema:
            description: PostgreSQL schema.
            type: str
          table:
            description: MySQL table.
            type: str
          column:
            description: MySQL column.
            type: str
          values:
            description: The values.
            type: list
            elements: str
            required: true
      queries:
        description: Read-only queries whose first value must be true (O(dbops.maintenance.db_verify#module:queries)).
        type: list
        elements: dict
        suboptions:
          name:
            description: Label.
            type: str
          sql:
            description: The query.
            type: str
            required: true
      migrations:
        description: A clean migration history (O(dbops.maintenance.db_verify#module:migrations)).
        type: dict
        suboptions:
          tool:
            description: The migration tool.
            type: str
            required: true
            choices: [prisma, alembic, flyway, django, golang-migrate, sqlx, knex, rails, dbmate, goose]
          path:
            description: Directory of the migration files.
            type: path
          history_table:
            description: History table.
            type: str
extends_documentation_fragment:
  - dbops.maintenance.connection
  - dbops.maintenance.connection.safety
attributes:
  check_mode:
    support: full
    description: The same read-only run in and out of check mode; in check mode O(backup) is never taken.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
notes:
  - The safety options (C(lock_timeout) ...) are accepted so that the fix roles' variables can be passed as they
    are; nothing here takes a lock.
seealso:
  - module: dbops.maintenance.db_verify
  - module: dbops.maintenance.enum_add
  - module: dbops.maintenance.column_ensure
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Is this host already fixed?
  dbops.maintenance.state_check:
    engine: postgresql
    database: app
    enums:
      - {name: CredentialType, values: [PERSONAL_ACCESS_TOKEN]}
    columns:
      - {table: ExternalCredential, column: rotatedAt, type: timestamptz}
    verify:
      tables_min: 1
      enum_values:
        - {name: CredentialType, values: [PERSONAL_ACCESS_TOKEN]}
  register: state

- name: Only the hosts that differ go on
  ansible.builtin.debug:
    var: state.differences
  when: not state.in_desired_state

- name: The same, and a host that will change is backed up in this run (before anything is changed)
  dbops.maintenance.state_check:
    engine: postgresql
    database: app
    enums:
      - {name: CredentialType, values: [PERSONAL_ACCESS_TOKEN]}
    capture: true
    backup:
      dest: /var/backups/dbops
      dest_mode: "0700"
      preflight: true
      keep_last: 7
  register: state
'''

RETURN = r'''
in_desired_state:
  description: True when nothing would change, nothing would be refused and every check passed.
  returned: success
  type: bool
  sample: true
differences:
  description:
    - What keeps the host from its desired state, one entry per item; C(kind) (enum, column, index, constraint,
      resolution, migrations, verify), C(item), C(why), C(queries) (the statements its module would run) and
      C(refused) (the module's refusal, or null); for a declared item also C(option) and C(index) (where it was
      declared), C(declared) (the item as given) and C(module_plan) (true when only the module's own check-mode
      run can tell the statements or the refusal, so the plan must run the module).
  returned: success
  type: list
  elements: dict
  sample: [{kind: enum, item: CredentialType, why: enum_add would run 1 statement(s), refused: null,
            queries: ["ALTER TYPE \"public\".\"CredentialType\" ADD VALUE IF NOT EXISTS 'PERSONAL_ACCESS_TOKEN'"]}]
items:
  description: How many declared items were planned.
  returned: success
  type: int
checks:
  description: The checks of O(verify), as db_verify returns them (name, kind, ok, expected, actual, message).
  returned: success
  type: list
  elements: dict
summary:
  description: db_verify's one-line summary of RV(checks).
  returned: success
  type: str
migrations:
  description: migration_status' summary of the history, when O(migrations) was given.
  returned: when O(migrations) was given
  type: str
baseline:
  description: db_verify's baseline (engine, database, captured_at, tables with row counts).
  returned: with O(capture), when the host is not in its desired state
  type: dict
backup:
  description:
    - The result of the backup of O(backup) (M(dbops.maintenance.db_backup)'s return values - C(path),
      C(manifest_path), C(size), C(sha256), C(verified), C(reused), C(duration), C(pruned), and C(preflight) with
      O(dbops.maintenance.db_backup#module:preflight)).
  returned: with O(backup), when it was taken
  type: dict
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
  sample: {engine: postgresql, flavour: postgresql, version: "15.18"}
'''

from ansible_collections.dbops.maintenance.plugins.module_utils import desired_state
from ansible_collections.dbops.maintenance.plugins.module_utils import verify
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import options as backup_options
from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    dbops_argument_spec, run_module,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.names import NAMES as TOOL_NAMES

FINDINGS = ['failed', 'unknown', 'modified', 'pending']


def argument_spec():
    return dbops_argument_spec(
        enums=dict(type='list', elements='raw', default=[]),
        columns=dict(type='list', elements='raw', default=[]),
        indexes=dict(type='list', elements='raw', default=[]),
        constraints=dict(type='list', elements='raw', default=[]),
        migrations=dict(type='dict', options=dict(
            tool=dict(type='str', required=True, choices=list(TOOL_NAMES)),
            path=dict(type='path'),
            app=dict(type='str'),
            history_table=dict(type='str'),
            resolutions=dict(type='list', elements='raw', default=[]),
            fail_on=dict(type='list', elements='str', choices=FINDINGS, default=['failed', 'unknown', 'modified']),
            deploy=dict(type='bool', default=False),
        )),
        capture=dict(type='bool', default=False),
        backup=dict(type='dict'),
        row_count_tables=dict(type='list', elements='str'),
        verify=dict(type='dict', default={}, options=dict(
            tables_min=dict(type='int'),
            tables=dict(type='list', elements='str'),
            columns=dict(type='list', elements='dict', options=dict(
                table=dict(type='str', required=True), column=dict(type='str', required=True),
                schema=dict(type='str'), type=dict(type='str'), nullable=dict(type='bool'))),
            enum_values=dict(type='list', elements='dict', options=dict(
                name=dict(type='str'), schema=dict(type='str'), table=dict(type='str'), column=dict(type='str'),
                values=dict(type='list', elements='str', required=True))),
            queries=dict(type='list', elements='dict', options=dict(
                name=dict(type='str'), sql=dict(type='str', required=True))),
            migrations=dict(type='dict', options=dict(
                tool=dict(type='str', required=True, choices=list(TOOL_NAMES)), path=dict(type='path'),
                history_table=dict(type='str'))),
        )),
    )


def validate(module):
    """The backup option is db_backup's options: refused before anything connects."""
    given = module.params['backup']
    if given is not None:
        try:
            module.params['backup'] = backup_options.validated(given)
        except ValueError as e:
            # what is not db_backup's (a password given here by mistake ...) is not echoed in the invocation
            known = backup_options.options()
            module.params['backup'] = dict((k, v) for k, v in given.items() if k in known)
            module.fail_json(msg='%s. Nothing was checked.' % e)


def work(module, db):
    p = module.params
    db.check_mode = True  # plan only: no statement of any plan ever runs here
    base = dict((k, v) for k, v in p.items()
                if k not in ('enums', 'columns', 'indexes', 'constraints', 'migrations', 'verify', 'capture',
                             'row_count_tables', 'backup'))
    differences, count = desired_state.evaluate_items(db, base, p)
    result = dict(changed=False, server=db.server_info())
    if p['migrations']:
        mig_differences, summary = desired_state.evaluate_migrations(db, base, p['migrations'])
        differences += mig_differences
        result['migrations'] = summary
    checks = desired_state.run_verify(db, p['verify']) if p['verify'] else []
    for c in checks:
        if not c['ok']:
            differences.append(dict(kind='verify', item=c['name'], why=c.get('message') or 'check failed',
                                    queries=[], refused=None, module_plan=False))
    if differences and p['capture']:
        result['baseline'] = verify.Verifier(db, dict(db.params, schema=None)).capture(p['row_count_tables'])
    if p['backup'] is not None and not module.check_mode and desired_state.backup_due(differences, p):
        # the plan is made: the backup is db_backup's own run, in this connection (it changes no database)
        db.check_mode = False
        result['backup'] = backup_options.take(module, db, p['backup'])
        result['changed'] = bool(result['backup'].get('changed'))
    result.update(in_desired_state=not differences, differences=differences, items=count, checks=checks,
                  summary=verify.summary(checks), failed_checks=len([c for c in checks if not c['ok']]))
    return result


def main():
    run_module(argument_spec(), work, validate=validate, maintenance_lock=False)


if __name__ == '__main__':
    main()
