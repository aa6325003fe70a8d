#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: column_ensure
short_description: Make sure a table column exists with a given definition, without surprises on a live database
version_added: 0.1.0
description:
  - Adds a missing column, leaves a column that already has the requested definition alone (C(changed=false)),
    and refuses, with a readable difference, a column that exists with another definition unless O(alter=true).
    This is the safe form of a migration that fails with "column already exists"
    (MySQL 1060 C(Duplicate column name), PostgreSQL 42701).
  - Definitions are compared after the server's own normalisation, so C(varchar(191)) equals
    C(character varying(191)), C(int) equals C(integer) and C(int4), and MySQL display widths do not matter.
    To do that, PostgreSQL and MySQL are asked to read the requested type and default on a temporary probe table
    inside a transaction that is always rolled back; nothing persists, even in check mode.
  - Guards, checked before anything runs, each failing with nothing changed; adding a NOT NULL column without
    a default to a table that has rows (the message gives the row count), making a column NOT NULL while
    rows hold NULL, a change that rewrites or copies the table (volatile default or non-binary-coercible type
    change on PostgreSQL, a change MySQL cannot do INSTANT or INPLACE) without O(allow_rewrite=true), and
    dropping a column without O(allow_drop=true).
  - Takes the collection's maintenance lock, and runs each statement with O(lock_timeout) and O(lock_retries).
  - On PostgreSQL 12 and later, O(nullable=false) on an existing column runs as
    C(ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID), C(VALIDATE CONSTRAINT) (scans the table under SHARE
    UPDATE EXCLUSIVE; writes go on), C(SET NOT NULL) (no scan, thanks to the valid check) and C(DROP CONSTRAINT),
    each its own statement with the lock timeout and retries. The check is named C(dbops_not_null_<hash>) after the
    table and column, so an interrupted run resumes where it stopped (a leftover valid check is reused, a leftover
    check on a column already NOT NULL is dropped).
  - O(type), O(default) and O(using) are SQL by design, so each is proven before anything connects. O(default) and
    O(using) must be exactly one SQL expression (parsed as C(SELECT <expression>) by pglast, the PostgreSQL
    server's own parser, or by sqlglot in the C(mysql) / C(sqlite) dialect; one statement, one expression, no
    alias, no clause, no comment, no C(;) outside a string); O(type) must be one type (no comment, no C(;), no
    comma or closing parenthesis outside its own parentheses; on PostgreSQL, a column definition with no
    constraint). Each statement built from them must parse as one statement. Anything else fails with nothing
    run. The DDL is then sent so that the server cannot run a second statement anyway; PostgreSQL over the
    extended query protocol, MySQL/MariaDB on a session without C(CLIENT.MULTI_STATEMENTS) (checked), SQLite
    through C(execute), which refuses more than one statement.
  - A view (or another relation that is not a table) is named as such, with nothing changed.
  - B(SQLite) supports adding columns within its rules (C(ALTER TABLE ... ADD COLUMN)) and dropping them;
    changing an existing column is an error, because SQLite can only do it by rebuilding the table.
options:
  table:
    description: Table of the column.
    type: str
    required: true
  column:
    description: Name of the column, exactly as in the catalog (case-sensitive, unquoted).
    type: str
    required: true
    aliases: [name]
  schema:
    description:
      - PostgreSQL schema of the table; defaults to the first schema of the search path (usually C(public)).
      - For MySQL the schema is O(database).
    type: str
  type:
    description:
      - The column type as written in DDL, for example C(varchar(191)), C(timestamptz), C(int), C("CredentialType").
      - Required with O(state=present).
    type: str
  nullable:
    description: Whether the column accepts NULL.
    type: bool
    default: true
  default:
    description:
      - The default, as an SQL expression written as in DDL, for example C('pending') (with the quotes),
        C(0), C(now()), C(CURRENT_TIMESTAMP).
      - When omitted, the column's default is not managed. C(NULL) means no default.
    type: str
  comment:
    description:
      - The column comment (PostgreSQL, MySQL). When omitted, the comment is not managed.
    type: str
  state:
    description: Whether the column must exist or not.
    type: str
    choices: [present, absent]
    default: present
  alter:
    description:
      - Change an existing column whose definition differs (type, nullability, default, comment).
        When false, a different definition fails with the difference and nothing is changed.
    type: bool
    default: false
  using:
    description:
      - PostgreSQL only. C(USING) expression for a type change, for example C(amount::numeric(12,2)).
    type: str
  allow_rewrite:
    description:
      - Allow a change that rewrites (PostgreSQL) or copies (MySQL) the whole table, holding a lock that blocks
        the application for as long as that takes.
    type: bool
    default: false
  allow_drop:
    description:
      - With O(state=absent), allow dropping the column and its data.
    type: bool
    default: false
  method:
    description:
      - MySQL/MariaDB. C(online) runs the change with pt-online-schema-change (Percona Toolkit, which must be on
        the managed host) instead of C(ALTER TABLE); the table is copied in chunks while triggers carry the writes
        over, then swapped in with one C(RENAME TABLE) that waits at most O(lock_timeout) and is retried
        (O(online.swap_tries)). For changes the server can only make by copying the table, without blocking
        writes for the whole copy (O(allow_rewrite) is not needed). The password is passed in a 0600 option file,
        never on the command line. In check mode the tool runs with C(--dry-run) (it creates and drops its empty
        C(_<table>_new) copy; the table itself is not touched). The tool's output is returned in RV(online).
      - The tool refuses tables that already have triggers or have no primary or unique key; the task then fails
        with its reason and the table unchanged.
      - While the tool copies, the application's writes can meet InnoDB deadlocks (error 1213) with its chunk copy;
        the application must retry them, as InnoDB requires of every application (the tests' writer does, and
        loses no row).
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
    description: Reads the catalog, reports the exact statements in RV(queries), changes nothing.
  diff_mode:
    support: full
    description: Shows the column's definition (type, nullable, default, comment) before and after.
seealso:
  - module: dbops.maintenance.enum_add
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: The shipmentFile column a Prisma migration tried to add twice - ensure it, whatever state it is in
  dbops.maintenance.column_ensure:
    engine: mysql
    login_host: db1.example.com
    login_user: deploy
    login_password: "{{ vault_db_password }}"
    database: shipping
    table: shipment_records
    column: shipmentFile
    type: varchar(191)
    nullable: true

- name: A NOT NULL column with a constant default (metadata-only on PostgreSQL 11+)
  dbops.maintenance.column_ensure:
    engine: postgresql
    database: app
    table: ExternalCredential
    column: rotation_days
    type: integer
    nullable: false
    default: "90"
    comment: Days between automatic rotations

- name: Widen a column (no rewrite for varchar(n) -> varchar(m>n) on PostgreSQL)
  dbops.maintenance.column_ensure:
    engine: postgresql
    database: app
    table: users
    column: email
    type: varchar(320)
    nullable: false
    alter: true

- name: Drop a column that is no longer used
  dbops.maintenance.column_ensure:
    engine: sqlite
    database: /var/lib/app/app.db
    table: sessions
    column: legacy_token
    state: absent
    allow_drop: true
'''

RETURN = r'''
column:
  description: The column's definition after the run (in check mode, as it would be); null when absent.
  returned: success
  type: dict
  sample: {name: shipmentFile, type: varchar(191), nullable: true, default: null, comment: ""}
differences:
  description: Which attributes of an existing column differ from the request.
  returned: when the column exists with another definition
  type: list
  elements: str
  sample: [type, nullable]
target:
  description: The column worked on, quoted as the server needs it.
  returned: always
  type: str
queries:
  description: The statements that ran (in check mode, that would run), exactly as sent to the server.
  returned: always
  type: list
  elements: str
  sample: ['ALTER TABLE `shipment_records` ADD COLUMN `shipmentFile` varchar(191) NULL, ALGORITHM=INSTANT']
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
'''

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    DbopsModule, dbops_argument_spec, finish_result, open_database,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import not_null as online_not_null
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import ptosc as online_ptosc


def describe(col):
    if not col:
        return '(absent)'
    text = '%s %s' % (col['type'], 'NULL' if col['nullable'] else 'NOT NULL')
    if col.get('default') is not None:
        text += ' DEFAULT %s' % col['default']
    if col.get('comment'):
        text += ' COMMENT %r' % col['comment']
    return text


def check_sql_options(p):
    """type, default and using are SQL by design: prove each is one type / one expression before connecting."""
    if p['type'] is not None:
        sqlcheck.column_type(p['type'], p['engine'], 'type')
    for opt in ('default', 'using'):
        if p[opt] is not None:
            sqlcheck.expression(p[opt], p['engine'], opt)


def check_steps(steps, engine):
    """Each statement of the plan (and each fallback) reads as exactly one statement."""
    for step in steps:
        while step is not None:
            sqlcheck.single_statement(step.sql, engine)
            step = step.alternative


def main():
    argument_spec = dbops_argument_spec(
        table=dict(type='str', required=True),
        column=dict(type='str', required=True, aliases=['name']),
        schema=dict(type='str'),
        type=dict(type='str'),
        nullable=dict(type='bool', default=True),
        default=dict(type='str'),
        comment=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        alter=dict(type='bool', default=False),
        using=dict(type='str'),
        allow_rewrite=dict(type='bool', default=False),
        allow_drop=dict(type='bool', default=False),
        method=dict(type='str', default='default', choices=['default', 'online']),
        online=dict(type='dict', default={}, options=online_ptosc.spec()),
    )
    module = DbopsModule(argument_spec=argument_spec, supports_check_mode=True,
                         required_if=[('state', 'present', ['type'])])
    p = module.params
    if p['using'] and p['engine'] != 'postgresql':
        module.fail_json(msg='using is PostgreSQL only: MySQL and SQLite convert values by the type alone.')
    if p['method'] == 'online' and p['engine'] != 'mysql':
        module.fail_json(msg='method: online (pt-online-schema-change) is MySQL/MariaDB only.', queries=[])
    if p['schema'] and p['engine'] != 'postgresql':
        module.fail_json(msg='schema is PostgreSQL only; on MySQL the schema is the database option.')
    try:
        check_sql_options(p)
    except sqlcheck.SqlRefused as e:
        module.fail_json(msg=str(e), changed=False, queries=[])
    with open_database(module) as db:
        plan = db.plan_column(p)
        plan.steps += online_not_null.leftover_steps(db, p, plan)  # an interrupted NOT NULL sequence
        check_steps(plan.steps, p['engine'])
        result = dict(changed=False, target=plan.target, queries=db.queries, server=db.server_info())
        if plan.differences:
            result['differences'] = plan.differences
        if plan.refused:
            lines = ['  %-8s current: %-40s wanted: %s' % (k, plan.before[k], plan.after[k])
                     for k in plan.differences]
            module.fail_json(
                msg='Column %s exists with another definition; nothing was changed.\n  current: %s\n  wanted:  %s\n%s\n'
                    'Set alter: true to change it (guards for rewrites and NULLs still apply), or fix the request.'
                    % (plan.target, describe(plan.before), describe(plan.after), '\n'.join(lines)),
                **result)
        if p['method'] == 'online' and plan.steps:
            # the clause of the one statement the MySQL plan has, run by pt-online-schema-change on a copy
            from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import quote_ident
            clause = online_ptosc.alter_clause(plan.steps[0].sql, quote_ident(p['table']))
            result['online'] = online_ptosc.run(db, p['table'], clause, module.check_mode, p['online'])
            db.queries.append('ALTER TABLE %s %s' % (quote_ident(p['table']), clause))
            result['queries'] = db.queries
        else:
            db.apply(plan.steps, allow=dict(allow_rewrite=p['allow_rewrite']))
        result['changed'] = bool(plan.steps)
        after = plan.after
        if plan.steps and not module.check_mode:
            after = db.read_column(p)  # what the server has now, not what was asked
        result['column'] = after
        module.exit_json(**finish_result(db, result, diff=dict(
            before=plan.before or {}, after=after or {},
            before_header='%s (before)' % plan.target, after_header='%s (after)' % plan.target)))


if __name__ == '__main__':
    main()
