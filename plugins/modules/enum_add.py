#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: enum_add
short_description: Add values to an enum type (PostgreSQL) or an ENUM column (MySQL/MariaDB), safely
version_added: 0.1.0
description:
  - Makes sure an enum accepts the given values, adding the missing ones and leaving present ones alone.
    This is the fix for SQLSTATE 22P02 (C(invalid input value for enum "CredentialType")) on every insert
    when a deploy skipped the migration that adds the value.
  - On B(PostgreSQL), C(ALTER TYPE ... ADD VALUE IF NOT EXISTS), one statement per value, each in its own transaction
    (outside a transaction block, as PostgreSQL before 12 requires), so a new value is never used in the
    transaction that added it. O(before) / O(after) place the new values; values are added in the order given.
  - On B(MySQL/MariaDB) an ENUM belongs to a column, so O(table) and O(column) are required. The column is
    redefined with C(ALTER TABLE ... MODIFY COLUMN) from its own C(SHOW CREATE TABLE) definition with only the
    value list changed, so nullability, default, character set, collation, comment and position are kept.
    Appending at the end runs with C(ALGORITHM=INSTANT); a change the server can only do by copying the table
    (inserting in the middle, or growing past 255 values) needs O(allow_copy=true).
  - B(SQLite) has no enum types; the module fails and says what to use instead.
  - Takes the collection's maintenance lock on the database, and runs each statement with O(lock_timeout)
    and O(lock_retries), so it never waits in the lock queue in front of the application's queries.
options:
  name:
    description:
      - PostgreSQL only. Name of the enum type, exactly as in the catalog (case-sensitive; Prisma creates
        mixed-case names such as C(CredentialType)). Do not quote it.
    type: str
    aliases: [type]
  schema:
    description:
      - PostgreSQL schema of the type. Defaults to the first schema of the search path (usually C(public)).
    type: str
  table:
    description:
      - MySQL/MariaDB only. Table that has the ENUM column.
    type: str
  column:
    description:
      - MySQL/MariaDB only. The ENUM column.
    type: str
  values:
    description:
      - Values the enum must accept, in the order they are to be added. Case-sensitive.
    type: list
    elements: str
    required: true
    aliases: [value]
  before:
    description:
      - Add the missing values just before this existing value. Mutually exclusive with O(after).
    type: str
  after:
    description:
      - Add the missing values just after this existing value (in the order given). Mutually exclusive with O(before).
    type: str
  create:
    description:
      - PostgreSQL only. Create the enum type with O(values) when it does not exist. When false, a missing type
        is an error that lists similar type names.
    type: bool
    default: false
  allow_copy:
    description:
      - MySQL/MariaDB only. Allow a change that the server can only make by copying the whole table
        (blocking writes while it copies).
    type: bool
    default: false
  method:
    description:
      - MySQL/MariaDB. C(online) runs the ENUM change with pt-online-schema-change (Percona Toolkit, which must be
        on the managed host) instead of C(ALTER TABLE), for a change the server can only make by copying the table
        (inserting values in the middle, growing past 255 values); O(allow_copy) is not needed. The
        table is copied in chunks while triggers carry the writes over, then swapped in with one C(RENAME TABLE)
        that waits at most O(lock_timeout) and is retried (O(online.swap_tries)). The password is passed in a
        0600 option file, never on the command line. In check mode the tool runs with C(--dry-run) (the table
        itself is not touched). The tool's output is returned in RV(online).
      - With C(online) every change goes through the tool, even an append the server could make INSTANT.
      - The tool refuses tables that already have triggers or have no primary or unique key; the task then fails
        with its reason and the table unchanged.
    type: str
    choices: [default, online]
    default: default
  online:
    description: Options of O(method=online).
    type: dict
    default: {}
    suboptions:
      max_load:
        description: C(--max-load) of pt-online-schema-change (pause the copy above it).
        type: str
        default: Threads_running=25
      critical_load:
        description: C(--critical-load) (abort above it).
        type: str
        default: Threads_running=50
      chunk_time:
        description: C(--chunk-time), seconds each copy chunk should take.
        type: float
        default: 0.5
      swap_tries:
        description: Tries of the final swap (and of creating/dropping the triggers), each waiting at most O(lock_timeout).
        type: int
        default: 10
      timeout:
        description: Seconds after which the tool is stopped and the task fails.
        type: float
        default: 86400
extends_documentation_fragment:
  - dbops.maintenance.connection
  - dbops.maintenance.connection.safety
attributes:
  check_mode:
    support: full
    description: Reads the catalog, reports the exact statements in RV(queries), and changes nothing.
  diff_mode:
    support: full
    description: Shows the value list (PostgreSQL) or the column definition (MySQL) before and after.
notes:
  - Values already present stay where they are; PostgreSQL cannot reorder or remove enum values.
  - With O(before)/O(after), values already present are not moved.
seealso:
  - module: dbops.maintenance.column_ensure
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Fix 22P02 - add the missing credential type
  dbops.maintenance.enum_add:
    engine: postgresql
    login_host: db1.example.com
    login_user: tdp
    login_password: "{{ vault_tdp_password }}"
    database: tdp
    name: CredentialType
    values: [PERSONAL_ACCESS_TOKEN]

- name: Add two values right after an existing one
  dbops.maintenance.enum_add:
    engine: postgresql
    database: app
    schema: billing
    name: invoice_state
    values: [disputed, refunded]
    after: paid

- name: Append a value to a MySQL ENUM column, keeping everything else about the column
  dbops.maintenance.enum_add:
    engine: mysql
    database: shop
    table: shipment_records
    column: status
    values: [RETURNED]

- name: With connection settings shared through module_defaults
  module_defaults:
    group/dbops.maintenance.all:
      engine: postgresql
      login_host: "{{ inventory_hostname }}"
      login_user: ops
      login_password: "{{ vault_ops_password }}"
  block:
    - name: Add the value
      dbops.maintenance.enum_add:
        database: tdp
        name: CredentialType
        value: PERSONAL_ACCESS_TOKEN
'''

RETURN = r'''
values:
  description: The enum's values after the run (in check mode, as they would be), in order.
  returned: success
  type: list
  elements: str
  sample: [API_KEY, OAUTH_TOKEN, COOKIE, PASSWORD, ENCRYPTED, PERSONAL_ACCESS_TOKEN]
added:
  description: The values that were (in check mode, would be) added.
  returned: success
  type: list
  elements: str
  sample: [PERSONAL_ACCESS_TOKEN]
created:
  description: Whether the type was (would be) created.
  returned: success
  type: bool
target:
  description: The type (PostgreSQL) or column (MySQL) worked on, quoted as the server needs it.
  returned: always
  type: str
  sample: '"public"."CredentialType"'
queries:
  description: The statements that ran (in check mode, that would run), exactly as sent to the server.
  returned: always
  type: list
  elements: str
  sample:
    - ALTER TYPE "public"."CredentialType" ADD VALUE IF NOT EXISTS 'PERSONAL_ACCESS_TOKEN'
alternatives:
  description:
    - Check mode, MySQL/MariaDB. Only the server knows whether it can make a change INSTANT, INPLACE or only
      by copying the table; RV(queries) lists the first choice, and this lists the statements a real run uses
      instead, in order, if the server refuses the one before (C(requires) names the option that must be true).
  returned: in check mode, when there are fallbacks
  type: list
  elements: dict
  sample:
    - statement: ALTER TABLE `t` MODIFY COLUMN `v` int NOT NULL, ALGORITHM=INPLACE, LOCK=NONE
      instead_of: ALTER TABLE `t` MODIFY COLUMN `v` int NOT NULL, ALGORITHM=INSTANT
      requires: null
online:
  description: O(method=online). The pt-online-schema-change command (without the option file) and the last lines of its output.
  returned: when method=online ran the tool
  type: dict
attempts:
  description: Lock timeouts met on the way, with the sessions that held the lock.
  returned: when a statement had to be retried
  type: list
  elements: dict
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
  sample: {engine: postgresql, flavour: postgresql, version: "15.18"}
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    dbops_argument_spec, finish_result, run_module,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import ptosc as online_ptosc


def argument_spec():
    return dbops_argument_spec(
        name=dict(type='str', aliases=['type']),
        schema=dict(type='str'),
        table=dict(type='str'),
        column=dict(type='str'),
        values=dict(type='list', elements='str', required=True, aliases=['value']),
        before=dict(type='str'),
        after=dict(type='str'),
        create=dict(type='bool', default=False),
        allow_copy=dict(type='bool', default=False),
        method=dict(type='str', default='default', choices=['default', 'online']),
        online=dict(type='dict', default={}, options=online_ptosc.spec()),
    )


def validate(module):
    p = module.params
    values = p['values']
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        module.fail_json(msg='values lists %s more than once; give each value once.' % ', '.join(map(repr, dupes)))
    if p['method'] == 'online' and p['engine'] != 'mysql':
        module.fail_json(msg='method: online (pt-online-schema-change) is MySQL/MariaDB only: PostgreSQL adds enum '
                             'values without copying a table. Nothing was changed.', changed=False, queries=[])
    if p['engine'] == 'sqlite':
        module.fail_json(msg='SQLite has no enum types. Use a TEXT column with a CHECK (col IN (...)) constraint, '
                             'or a lookup table with a foreign key; column_ensure can add the column.')
    if p['engine'] == 'postgresql':
        if not p['name']:
            module.fail_json(msg='name (the enum type) is required for PostgreSQL.')
        if p['table'] or p['column']:
            module.fail_json(msg='table/column are for MySQL ENUM columns; on PostgreSQL give the type as name.')
        if p['allow_copy']:
            module.warn('allow_copy has no effect on PostgreSQL: adding enum values never copies a table there.')
    if p['engine'] == 'mysql':
        if not (p['table'] and p['column']):
            module.fail_json(msg='On MySQL/MariaDB an ENUM belongs to a column: give table and column.')
        if p['create']:
            module.fail_json(msg='create is PostgreSQL only; on MySQL add the ENUM column with column_ensure.')
        if p['name'] or p['schema']:
            module.fail_json(msg='name/schema are for PostgreSQL types; on MySQL give table and column '
                                 '(database selects the schema).')


def work(module, db):
    p = module.params
    ref = db.enum_ref(p)  # the type (PostgreSQL) or the column (MySQL)
    plan = db.plan_enum_add(values=p['values'], before=p['before'], after=p['after'], create=p['create'], **ref)
    result = dict(changed=bool(plan.steps), target=plan.target, created=plan.created)
    if p['method'] == 'online' and plan.steps:
        result['online'] = online_ptosc.run_plan(db, p['table'], plan.steps, module.check_mode, p['online'])
    else:
        db.apply(plan.steps, allow=dict(allow_copy=p['allow_copy']))
    if plan.steps and not module.check_mode:
        # Re-read what the server has now: the result reports facts, not intentions.
        plan.after = db.enum_state(**ref)
        before_values = plan.before['values'] if plan.before else []
        result['added'] = [v for v in plan.after['values'] if v not in before_values]
    else:
        result['added'] = plan.added
    result['values'] = plan.after['values']
    return finish_result(db, result, diff=dict(before=plan.before or {}, after=plan.after))


def main():
    run_module(argument_spec(), work, validate=validate, mutually_exclusive=[('before', 'after')])


if __name__ == '__main__':
    main()
