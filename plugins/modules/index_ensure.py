#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: index_ensure
short_description: Make sure an index exists (or not), built without blocking the application's writes
version_added: 0.2.0
description:
  - Builds a missing index, leaves an index that already has the requested definition alone (C(changed=false)),
    drops it with O(state=absent), and refuses, with a readable difference, an index of that name with another
    definition unless O(replace=true).
  - B(PostgreSQL) builds with C(CREATE INDEX CONCURRENTLY) and drops with C(DROP INDEX CONCURRENTLY), on an
    autocommit connection (outside any transaction block), so writes to the table go on during the build.
    The requested definition is read back from the server itself, on an empty temporary copy of the table's
    columns in a transaction that is always rolled back, and compared with the existing index (access method,
    keys and expressions as the server prints them, predicate, and any operator class, collation, ordering,
    INCLUDE column or storage parameter the existing index has).
  - On PostgreSQL an INVALID index of that name (left by a concurrent build that failed, hit the lock timeout,
    or whose session was killed) is dropped CONCURRENTLY and built again (RV(repaired)). A failed build of this
    run (a duplicate key for a unique index, statement_timeout) drops the INVALID index it left before failing.
  - On PostgreSQL O(replace=true) builds the new definition under a temporary name, drops the old index
    CONCURRENTLY, then renames the new one, so the table always has one of the two.
  - B(MySQL/MariaDB) run C(ALTER TABLE ... ADD INDEX ..., ALGORITHM=INPLACE, LOCK=NONE) (writes allowed during
    the build); a change the server can only make by copying the table fails, nothing changed, unless
    O(allow_rewrite=true) (then C(ALGORITHM=COPY), writes blocked). A replacement is one C(ALTER TABLE) that drops
    and adds (atomic).
  - B(SQLite) runs plain C(CREATE INDEX) / C(DROP INDEX) (SQLite cannot build concurrently; the database is
    locked for writes while it builds).
  - O(expressions) and O(where) are SQL by design, so each is proven before anything connects - exactly one SQL
    expression (parsed as C(SELECT <expression>) by pglast, the PostgreSQL server's own parser, or by sqlglot in the
    C(sqlite) dialect; no second statement, no comment, no alias, no clause) - and every statement built from them
    must parse as one statement. PostgreSQL DDL is sent over the extended query protocol (one statement).
  - Takes the collection's maintenance lock, and runs each statement with O(lock_timeout) and O(lock_retries).
    A concurrent build waits for older transactions on the table; that wait is bounded by O(lock_timeout) too,
    and the INVALID index such a timeout leaves is dropped before the retry.
options:
  table:
    description: Table of the index.
    type: str
    required: true
  name:
    description:
      - Name of the index, exactly as in the catalog (case-sensitive, unquoted).
    type: str
    required: true
    aliases: [index]
  schema:
    description:
      - PostgreSQL schema of the table (and of the index); defaults to the first schema of the search path.
    type: str
  columns:
    description:
      - Key columns, in order, exactly as in the catalog. Keys are O(columns) followed by O(expressions).
      - One of O(columns) and O(expressions) is required with O(state=present).
    type: list
    elements: str
    default: []
  expressions:
    description:
      - PostgreSQL and SQLite. Key expressions, each one SQL expression, for example C(lower(email)).
        They come after O(columns) in the index.
    type: list
    elements: str
    default: []
  unique:
    description: Whether the index is unique.
    type: bool
    default: false
  where:
    description:
      - PostgreSQL and SQLite. The predicate of a partial index, one SQL expression, for example C(deleted_at IS NULL).
    type: str
  method:
    description:
      - Index access method. PostgreSQL C(btree), C(hash), C(gin), C(gist), C(brin), C(spgist) (or one an extension
        adds); MySQL/MariaDB C(BTREE) or C(HASH). Default is the server's (btree).
    type: str
  state:
    description: Whether the index must exist or not.
    type: str
    choices: [present, absent]
    default: present
  replace:
    description:
      - Replace an existing index of that name whose definition differs. When false, a different definition fails
        with the difference and nothing is changed.
    type: bool
    default: false
  concurrently:
    description:
      - PostgreSQL. Build and drop CONCURRENTLY. Set false only for a partitioned table, where PostgreSQL cannot; the
        build then blocks writes to the table for as long as it takes.
    type: bool
    default: true
  allow_rewrite:
    description:
      - MySQL/MariaDB. Allow ALGORITHM=COPY when the server cannot build the index in place (writes are blocked
        for the whole copy).
    type: bool
    default: false
  ddl:
    description:
      - MySQL/MariaDB. C(online) runs the index change with pt-online-schema-change (Percona Toolkit, which must be
        on the managed host) instead of C(ALTER TABLE), for an index the server can only build by copying the
        table (for example on an Aria or MyISAM table, or a FULLTEXT index); O(allow_rewrite) is not needed. The
        table is copied in chunks while triggers carry the writes over, then swapped in with one C(RENAME TABLE)
        that waits at most O(lock_timeout) and is retried (O(online.swap_tries)). The password is passed in a
        0600 option file, never on the command line. In check mode the tool runs with C(--dry-run) (the table
        itself is not touched). The tool's output is returned in RV(online).
      - (The option is not called C(method), as in M(dbops.maintenance.column_ensure), because O(method) is the
        index access method here.)
      - The tool refuses tables that already have triggers or have no primary or unique key; the task then fails
        with its reason and the table unchanged.
    type: str
    choices: [default, online]
    default: default
  online:
    description: Options of O(ddl=online).
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
    description: Shows the index definition (unique, method, keys, predicate) before and after.
seealso:
  - module: dbops.maintenance.column_ensure
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Index the foreign key the lint finding named, without blocking writes
  dbops.maintenance.index_ensure:
    engine: postgresql
    database: app
    table: orders
    name: orders_customer_id_idx
    columns: [customer_id]

- name: A unique partial index on an expression
  dbops.maintenance.index_ensure:
    engine: postgresql
    database: app
    table: users
    name: users_email_live_key
    expressions: [lower(email)]
    unique: true
    where: deleted_at IS NULL

- name: MariaDB, in place (fails rather than copying the table)
  dbops.maintenance.index_ensure:
    engine: mysql
    login_host: db1.example.com
    login_user: deploy
    login_password: "{{ vault_db_password }}"
    database: shipping
    table: shipment_records
    name: idx_status_created
    columns: [status, createdAt]

- name: Drop an index that is no longer used
  dbops.maintenance.index_ensure:
    engine: postgresql
    database: app
    table: orders
    name: orders_legacy_idx
    state: absent
'''

RETURN = r'''
index:
  description: The index's definition after the run (in check mode, as it would be); null when absent.
  returned: success
  type: dict
  sample: {name: orders_customer_id_idx, table: public.orders, unique: false, method: btree, keys: [customer_id],
           where: null, valid: true}
differences:
  description: Which attributes of an existing index differ from the request (C(valid) for an INVALID index).
  returned: when the index exists with another definition
  type: list
  elements: str
  sample: [keys, where]
repaired:
  description: PostgreSQL. An INVALID index of that name was (in check mode, would be) dropped and built again.
  returned: success
  type: bool
target:
  description: The index worked on, quoted as the server needs it.
  returned: always
  type: str
queries:
  description: The statements that ran (in check mode, that would run), exactly as sent to the server.
  returned: always
  type: list
  elements: str
  sample: ['CREATE INDEX CONCURRENTLY "orders_customer_id_idx" ON "public"."orders" ("customer_id")']
online:
  description: O(ddl=online). The pt-online-schema-change command (without the option file) and the last lines of its output.
  returned: when ddl=online ran the tool
  type: dict
alternatives:
  description: Check mode, MySQL/MariaDB. The statement a real run uses if the server refuses the in-place one.
  returned: in check mode, when there are fallbacks
  type: list
  elements: dict
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
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import ensure as online_ensure
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import index as online_index
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import ptosc as online_ptosc


def validate(module):
    p = module.params
    if p['ddl'] == 'online' and p['engine'] != 'mysql':
        module.fail_json(msg='ddl: online (pt-online-schema-change) is MySQL/MariaDB only; PostgreSQL builds '
                             'CONCURRENTLY already. Nothing was changed.', changed=False, queries=[])
    try:
        online_index.check_options(p)
    except sqlcheck.SqlRefused as e:
        module.fail_json(msg=str(e), changed=False, queries=[])


def work(module, db):
    p = module.params
    plan = online_index.plan(db, p)

    def apply():
        if p['ddl'] == 'online' and plan.steps:
            return dict(online=online_ptosc.run_plan(db, p['table'], plan.steps, module.check_mode, p['online']))
        online_index.apply(db, plan, p)
        return None
    return online_ensure.finish(
        module, db, plan, 'index', 'Index',
        'Set replace: true to replace it (built before the old one is dropped on PostgreSQL), or fix the request.',
        apply=apply, read=lambda: online_index.read(db, p), describe=online_index.describe,
        result=dict(repaired=plan.repaired))


def main():
    argument_spec = dbops_argument_spec(
        table=dict(type='str', required=True),
        name=dict(type='str', required=True, aliases=['index']),
        schema=dict(type='str'),
        columns=dict(type='list', elements='str', default=[]),
        expressions=dict(type='list', elements='str', default=[]),
        unique=dict(type='bool', default=False),
        where=dict(type='str'),
        method=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        replace=dict(type='bool', default=False),
        concurrently=dict(type='bool', default=True),
        allow_rewrite=dict(type='bool', default=False),
        ddl=dict(type='str', default='default', choices=['default', 'online']),
        online=dict(type='dict', default={}, options=online_ptosc.spec()),
    )
    run_module(argument_spec, work, validate=validate)


if __name__ == '__main__':
    main()
