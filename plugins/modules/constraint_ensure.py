#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: constraint_ensure
short_description: Make sure a table constraint exists (or not), added without a long lock on a live table
version_added: 0.2.0
description:
  - Adds a missing constraint, leaves one that already has the requested definition alone (C(changed=false)),
    drops it with O(state=absent), and refuses, with the difference, a constraint of that name with another
    definition unless O(replace=true) (FOREIGN KEY and CHECK only).
  - B(PostgreSQL) and B(MySQL/MariaDB); SQLite fails with nothing done (it can add a constraint only by
    rebuilding the table).
  - On PostgreSQL, FOREIGN KEY and CHECK are added C(NOT VALID) (metadata only, a brief lock), then validated with
    C(VALIDATE CONSTRAINT) in a separate statement, which scans the table under SHARE UPDATE EXCLUSIVE (writes go
    on). A constraint left C(NOT VALID) by an interrupted run is validated. When existing rows violate the new
    constraint, the C(NOT VALID) constraint this run added is dropped again and the task fails.
  - UNIQUE and PRIMARY KEY build their unique index with C(CREATE INDEX CONCURRENTLY) (as
    M(dbops.maintenance.index_ensure), which also repairs an INVALID index of that name), then run
    C(ADD CONSTRAINT ... USING INDEX) (brief lock). A PRIMARY KEY first makes its nullable columns NOT NULL with the
    online sequence of M(dbops.maintenance.column_ensure) (C(CHECK ... NOT VALID), C(VALIDATE), C(SET NOT NULL)),
    because C(USING INDEX) would otherwise scan the table under ACCESS EXCLUSIVE.
  - O(expression) is SQL by design, so it must be exactly one SQL expression (pglast, the PostgreSQL server's own
    parser; no second statement, no comment), and every statement built from it must parse as one statement.
    DDL is sent over the extended query protocol (one statement).
  - B(MySQL/MariaDB) FOREIGN KEY - InnoDB adds one in place (C(ALGORITHM=INPLACE, LOCK=NONE), writes go on) only
    with C(foreign_key_checks=0) on the session, which skips the check of the existing rows. The module runs the
    C(ALTER TABLE) between C(SET SESSION foreign_key_checks = 0) and C(= 1), then proves the existing rows with an
    anti-join (C(SELECT COUNT(*) ... WHERE NOT EXISTS) on the referenced table; rows with a NULL key are not
    checked, as the server does not check them either). If any row has no match, the foreign key is dropped
    again (and the index InnoDB created for it, when the table had none on those columns) and the task fails
    with the count, leaving nothing. Because C(foreign_key_checks=0) also lets the server accept a reference to a
    missing table, the referenced table, its columns and the index it needs are checked first.
  - B(MySQL/MariaDB) UNIQUE builds its index with C(ALGORITHM=INPLACE, LOCK=NONE); PRIMARY KEY (always named
    C(PRIMARY) there) is added with C(ALGORITHM=INPLACE, LOCK=NONE) (the table is rebuilt in place, writes go on;
    NULLs in its columns fail first, counted). CHECK (enforced since MariaDB 10.2.1 and MySQL 8.0.16) can only be
    added by copying the table, and so can dropping a primary key; both need O(allow_rewrite=true). A statement the
    server refuses in place falls back to C(ALGORITHM=COPY) only with O(allow_rewrite=true).
    The CHECK expression is compared as the server prints it (C(SHOW CREATE TABLE) of an empty temporary copy).
    O(schema), O(references.schema), O(validate=false) and O(replace) are PostgreSQL only.
  - Takes the collection's maintenance lock, and runs each statement with O(lock_timeout) and O(lock_retries)
    (on MySQL/MariaDB C(lock_wait_timeout)).
options:
  table:
    description: Table of the constraint.
    type: str
    required: true
  name:
    description: Name of the constraint, exactly as in the catalog (case-sensitive, unquoted).
    type: str
    required: true
    aliases: [constraint]
  schema:
    description: Schema of the table; defaults to the first schema of the search path.
    type: str
  type:
    description: The kind of constraint. Required with O(state=present).
    type: str
    choices: [foreign_key, check, unique, primary_key]
  columns:
    description: The constrained columns (FOREIGN KEY, UNIQUE, PRIMARY KEY), in order.
    type: list
    elements: str
    default: []
  references:
    description: The referenced table and columns of a FOREIGN KEY.
    type: dict
    suboptions:
      table:
        description: Referenced table.
        type: str
        required: true
      columns:
        description: Referenced columns, as many as O(columns).
        type: list
        elements: str
        required: true
      schema:
        description: Schema of the referenced table; defaults to O(schema).
        type: str
  on_delete:
    description: FOREIGN KEY action on delete of the referenced row.
    type: str
    choices: [no action, restrict, cascade, set null, set default]
    default: no action
  on_update:
    description: FOREIGN KEY action on update of the referenced key.
    type: str
    choices: [no action, restrict, cascade, set null, set default]
    default: no action
  expression:
    description: The CHECK expression, one SQL expression, for example C(amount >= 0).
    type: str
  validate:
    description:
      - FOREIGN KEY and CHECK. Validate the existing rows (a separate scan that does not block writes). When false,
        the constraint is left C(NOT VALID) (it checks new and updated rows only).
    type: bool
    default: true
  state:
    description: Whether the constraint must exist or not.
    type: str
    choices: [present, absent]
    default: present
  replace:
    description:
      - FOREIGN KEY and CHECK. Replace a constraint of that name whose definition differs (drop, then add NOT VALID
        and validate). When false, a different definition fails with the difference and nothing is changed.
    type: bool
    default: false
  allow_rewrite:
    description:
      - MySQL/MariaDB. Allow C(ALGORITHM=COPY), which blocks writes for the whole copy of the table - needed to add a
        CHECK and to drop a primary key, and used when the server refuses a step in place.
    type: bool
    default: false
extends_documentation_fragment:
  - dbops.maintenance.connection
  - dbops.maintenance.connection.safety
attributes:
  check_mode:
    support: full
    description: Reads the catalog, reports the exact statements in RV(queries), changes nothing.
  diff_mode:
    support: full
    description: Shows the constraint's definition before and after.
seealso:
  - module: dbops.maintenance.index_ensure
  - module: dbops.maintenance.column_ensure
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: A foreign key on a live table, validated without blocking writes
  dbops.maintenance.constraint_ensure:
    engine: postgresql
    database: app
    table: orders
    name: orders_customer_id_fkey
    type: foreign_key
    columns: [customer_id]
    references: {table: customers, columns: [id]}
    on_delete: restrict

- name: A CHECK constraint
  dbops.maintenance.constraint_ensure:
    engine: postgresql
    database: app
    table: orders
    name: orders_total_positive
    type: check
    expression: total >= 0

- name: MariaDB - a foreign key added in place, the existing rows proved by an anti-join
  dbops.maintenance.constraint_ensure:
    engine: mysql
    login_host: db1.example.com
    login_user: deploy
    login_password: "{{ vault_db_password }}"
    database: shop
    table: orders
    name: fk_orders_customer
    type: foreign_key
    columns: [customer_id]
    references: {table: customers, columns: [id]}

- name: A unique constraint, its index built concurrently
  dbops.maintenance.constraint_ensure:
    engine: postgresql
    database: app
    table: users
    name: users_email_key
    type: unique
    columns: [email]
'''

RETURN = r'''
constraint:
  description: The constraint's definition after the run (in check mode, as it would be); null when absent.
  returned: success
  type: dict
differences:
  description: Which attributes of an existing constraint differ from the request (C(valid) for a NOT VALID one).
  returned: when the constraint exists with another definition or NOT VALID
  type: list
  elements: str
target:
  description: The constraint worked on, quoted as the server needs it.
  returned: always
  type: str
queries:
  description: The statements that ran (in check mode, that would run), exactly as sent to the server.
  returned: always
  type: list
  elements: str
attempts:
  description: Lock timeouts met on the way, with the sessions that held the lock.
  returned: when a statement had to be retried
  type: list
  elements: dict
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
'''

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.connection import dbops_argument_spec, run_module
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import constraint as online_constraint
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import ensure as online_ensure

ACTIONS = ['no action', 'restrict', 'cascade', 'set null', 'set default']


def validate(module):
    try:
        online_constraint.check_options(module.params)
    except sqlcheck.SqlRefused as e:
        module.fail_json(msg=str(e), changed=False, queries=[])


def work(module, db):
    p = module.params
    plan = online_constraint.plan(db, p)
    return online_ensure.finish(
        module, db, plan, 'constraint', 'Constraint',
        'Set replace: true to replace it, or fix the request.' if p['engine'] == 'postgresql' else
        'Drop it (state: absent) and add it again, or fix the request.',
        apply=lambda: online_constraint.apply(db, plan, p), read=lambda: online_constraint.read(db, p))


def main():
    argument_spec = dbops_argument_spec(
        table=dict(type='str', required=True),
        name=dict(type='str', required=True, aliases=['constraint']),
        schema=dict(type='str'),
        type=dict(type='str', choices=['foreign_key', 'check', 'unique', 'primary_key']),
        columns=dict(type='list', elements='str', default=[]),
        references=dict(type='dict', options=dict(
            table=dict(type='str', required=True),
            columns=dict(type='list', elements='str', required=True),
            schema=dict(type='str'),
        )),
        on_delete=dict(type='str', choices=ACTIONS, default='no action'),
        on_update=dict(type='str', choices=ACTIONS, default='no action'),
        expression=dict(type='str'),
        validate=dict(type='bool', default=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        replace=dict(type='bool', default=False),
        allow_rewrite=dict(type='bool', default=False),
    )
    run_module(argument_spec, work, validate=validate)


if __name__ == '__main__':
    main()
