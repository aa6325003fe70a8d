#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: schema_diff
short_description: Schema drift of a database against its migrations, a snapshot or another database
version_added: 0.3.0
description:
  - Compares the schema of O(database) with a reference and reports every difference (RV(drift)), one summary
    line (RV(summary)) and the statements that would bring the database to the reference for what can be
    expressed safely (RV(sql)). Never writes to the database - its session is READ ONLY (PostgreSQL, MySQL/MariaDB)
    or the file is opened read-only (SQLite).
  - "O(reference=migrations): the migrations (O(tool), O(migrations_path)) are replayed with
    M(dbops.maintenance.migration_apply)'s own engine into a shadow database on the same server (or the O(shadow_login_host)
    server), named C(dbops_scratch_diff_<random>), created with the database's encoding/collation and always
    dropped - after success, after a failing replay, after an interrupt; for SQLite a temporary file in a private
    directory. The replayed schema is the reference (Prisma's shadow database, without node). Objects that no
    migration creates (a foreign key to C(neon_auth.users_sync), which Neon provides) come from O(shadow_setup).
    The shadow needs the right to create databases (PostgreSQL CREATEDB). The SQL-file tools (prisma, dbmate,
    golang-migrate, goose, sqlx, flyway) replay natively."
  - "The code tools (alembic, django, knex, rails) replay through the application's own O(command), as
    M(dbops.maintenance.migration_apply) runs it. The command must be told the shadow - O(environment) values name it
    with the tokens C({shadow_url}) (C(postgresql://user:password@host:port/database), C(mysql://...), or
    C(sqlite:///path), percent-encoded), C({shadow_database}), C({shadow_host}), C({shadow_port}), C({shadow_user}) and
    C({shadow_password}); an environment without any token is refused, so a command whose own configuration names
    production is not run. After the command the shadow must have no pending migration, and the database's own
    schema is read again - a command that changed it fails the run loudly (it cannot be undone from here). The
    command runs at most O(command_timeout) seconds."
  - "O(reference=snapshot): a JSON snapshot written earlier by this module (O(snapshot_dest)), e.g. before a change,
    on another host of the fleet, or from a golden tenant. The file is input: every part of it is validated, a
    snapshot of another engine is refused."
  - "O(reference=database): the database O(reference_database) (on the O(reference_login_host) server, by default
    the same server), e.g. the canary tenant against the others. Also opened read-only."
  - "Compared: schemas, tables (MySQL engine, collation, character set; comment), columns (type after the server's own
    normalisation - format_type / COLUMN_TYPE as column_ensure compares them, nullability, default, collation,
    identity, generated expression, comment), primary keys, unique constraints, indexes (columns, order,
    uniqueness, partial predicate, method, INCLUDE, validity - an INVALID index left by a failed CONCURRENTLY build is
    drift), foreign keys (columns, referenced table and columns, ON DELETE/UPDATE, NOT VALID), CHECK and exclusion
    constraints, enum types and the order of their values (PostgreSQL; MySQL ENUM/SET are in the column type),
    sequences, views (the server's normalised definition), triggers, functions and procedures (signature, and a
    SHA-256 of the body). Names are compared as the server stores them (case kept). Column order is not compared."
  - "The history table of the migration tool (of every tool when O(tool) is not given) is always left out,
    with what belongs to it; O(ignore) leaves out more."
  - "RV(sql): missing columns, indexes (C(CREATE INDEX CONCURRENTLY) on PostgreSQL, C(ALGORITHM=INPLACE, LOCK=NONE)
    on MySQL), enum values, foreign keys and CHECK constraints (PostgreSQL C(NOT VALID), then C(VALIDATE CONSTRAINT)),
    tables, schemas, sequences, views; C(VALIDATE) for a NOT VALID constraint, C(REINDEX INDEX CONCURRENTLY) for an
    INVALID index. Each statement is linted with M(dbops.maintenance.migration_lint)'s rules and carries its
    findings. Objects only in the database are reported; their DROP statements are listed only with
    O(include_drops=true), flagged C(data_loss) where rows or values go. Everything else (a changed type, default
    or view body) is in RV(not_expressed) with the reason: it needs a reviewed migration. This module never runs
    these statements; M(dbops.maintenance.column_ensure), M(dbops.maintenance.index_ensure) and
    M(dbops.maintenance.constraint_ensure) do, under the collection's safety rules."
options:
  reference:
    description:
      - What the database is compared with. Without it, only the database's snapshot is taken (O(snapshot_dest)).
    type: str
    choices: [migrations, snapshot, database]
  tool:
    description:
      - The migration tool (its history table is left out of the comparison). Required for O(reference=migrations).
    type: str
    choices: [prisma, alembic, flyway, django, golang-migrate, sqlx, knex, rails, dbmate, goose]
  migrations_path:
    description:
      - The migrations directory on the host where the module runs (as for M(dbops.maintenance.migration_apply)).
    type: path
  app:
    description:
      - C(django) only - the app label.
    type: str
  history_table:
    description:
      - The tool's history table when it is configured with another name (left out of the comparison).
    type: str
  schema:
    description:
      - PostgreSQL only. The schema the migrations run in, as for M(dbops.maintenance.migration_apply) (created in the
        shadow first when it is not C(public)).
    type: str
  placeholders:
    description:
      - Flyway only. Values of the C(${name}) placeholders of the migrations.
    type: dict
  snapshot:
    description:
      - The snapshot file for O(reference=snapshot) (written by O(snapshot_dest); never read through a symbolic link).
    type: path
  snapshot_dest:
    description:
      - Write the database's snapshot (JSON, mode 0600) to this file, atomically (a new file beside it, then a rename;
        a symbolic link there is refused, never followed). Left as it is when it already holds the same schema.
        Not written in check mode.
    type: path
  ignore:
    description:
      - Objects to leave out, as shell patterns on the dotted name (C(schema.table), C(table.column), C(table.index);
        the PostgreSQL schema may be left out), optionally prefixed by the kind and a colon
        (C(index:*_tmp), C(table:audit_*)). What belongs to an ignored table is ignored with it.
    type: list
    elements: str
    default: []
  include_drops:
    description:
      - List the DROP statements of the objects that are only in the database in RV(sql) (flagged; C(data_loss) for
        tables, columns, sequences and materialized views).
    type: bool
    default: false
  fail_on_drift:
    description:
      - Fail the task when there is any difference (a deploy gate). The result is returned as well.
    type: bool
    default: false
  command:
    description:
      - The application's own migration command for a code tool (O(tool=alembic), C(django), C(knex), C(rails)), as an
        argv list (no shell), run to replay the migrations into the shadow - e.g. C([alembic, upgrade, head]).
        Requires O(environment) naming the shadow.
    type: list
    elements: str
  chdir:
    description:
      - Directory to run O(command) in.
    type: path
  environment:
    description:
      - Environment variables for O(command). Values may contain the tokens C({shadow_url}), C({shadow_database}),
        C({shadow_host}), C({shadow_port}), C({shadow_user}) and C({shadow_password}) (replaced as plain text, no other
        brace is read); at least one is required. The values are treated as secrets, as migration_apply's.
    type: dict
  command_timeout:
    description:
      - Seconds O(command) may run; after that it is killed, the run fails and the shadow is dropped.
    type: float
    default: 900.0
  shadow_setup:
    description:
      - SQL run in the shadow database before the migrations, for objects no migration creates (an extension, a
        schema and table the platform provides). Split into statements as the engine's migrations are.
    type: str
  shadow_login_host:
    description:
      - Host of the server to create the shadow database on (default - the database's server).
    type: str
  shadow_login_port:
    description:
      - Port of the shadow's server.
    type: int
  shadow_login_user:
    description:
      - User that creates the shadow database (it needs CREATEDB on PostgreSQL, CREATE and DROP on MySQL).
    type: str
  shadow_login_password:
    description:
      - Password of O(shadow_login_user).
    type: str
  shadow_login_unix_socket:
    description:
      - Unix socket of the shadow's server.
    type: path
  shadow_maintenance_db:
    description:
      - The database the shadow's server is connected to for CREATE/DROP DATABASE (default - O(database) on the
        database's own server, C(postgres) on another PostgreSQL server).
    type: str
  shadow_lock_timeout:
    description:
      - Lock timeout (seconds) of the replay in the shadow.
    type: float
    default: 10
  shadow_statement_timeout:
    description:
      - Statement timeout (seconds) of the replay in the shadow (none by default).
    type: float
  reference_database:
    description:
      - The reference database for O(reference=database).
    type: str
  reference_login_host:
    description:
      - Host of the reference database's server (default - the database's).
    type: str
  reference_login_port:
    description:
      - Port of the reference's server.
    type: int
  reference_login_user:
    description:
      - User for the reference database.
    type: str
  reference_login_password:
    description:
      - Password of O(reference_login_user).
    type: str
  reference_login_unix_socket:
    description:
      - Unix socket of the reference's server.
    type: path
  reference_ssl_mode:
    description:
      - TLS mode for the reference connection (as O(ssl_mode)).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  reference_ca_cert:
    description:
      - CA certificate for the reference connection.
    type: path
extends_documentation_fragment:
  - dbops.maintenance.connection
attributes:
  check_mode:
    support: full
    description: Compares as in a real run (the shadow database is created and dropped, the database is only read);
      O(snapshot_dest) is not written. With O(command), the command runs in check mode too - into the shadow, which
      the O(environment) tokens name.
  diff_mode:
    support: full
    description: The differing objects as text, the reference's (before) and the database's (after).
notes:
  - The comparison is of the schema only, never of the rows. A sequence's current value, a table's AUTO_INCREMENT
    counter and the DEFINER of a MySQL view are not compared.
  - SQLite CHECK constraints (only in the CREATE TABLE text) are not compared.
  - Across PostgreSQL major versions (a snapshot of 15 against 16), view bodies are compared without their
    qualifiers (PostgreSQL 16 prints a single table's columns unqualified where 15 qualified them).
seealso:
  - module: dbops.maintenance.migration_status
  - module: dbops.maintenance.db_verify
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Drift of production against its Prisma migrations (seed 004's foreign keys need Neon's table)
  dbops.maintenance.schema_diff:
    engine: postgresql
    database: app
    reference: migrations
    tool: prisma
    migrations_path: /srv/app/prisma/migrations
    shadow_setup: |
      CREATE SCHEMA neon_auth;
      CREATE TABLE neon_auth.users_sync (id text PRIMARY KEY);
  register: drift

- name: Alembic (code migrations) - replayed with the application's own command, told the shadow
  dbops.maintenance.schema_diff:
    engine: postgresql
    database: app
    reference: migrations
    tool: alembic
    migrations_path: /srv/app/migrations/versions
    command: [/srv/app/venv/bin/alembic, upgrade, head]
    chdir: /srv/app
    environment:
      DATABASE_URL: "{shadow_url}"   # the app's env.py reads its URL from DATABASE_URL

- name: A deploy gate - refuse to go on when the schema is not what the migrations say
  dbops.maintenance.schema_diff:
    engine: mysql
    database: shop
    reference: migrations
    tool: dbmate
    migrations_path: /srv/shop/db/migrations
    fail_on_drift: true

- name: Snapshot before a change
  dbops.maintenance.schema_diff:
    engine: postgresql
    database: app
    snapshot_dest: /var/lib/dbops/app-before.json

- name: The canary tenant against the others
  dbops.maintenance.schema_diff:
    engine: postgresql
    database: tenant_42
    reference: database
    reference_database: tenant_canary
    ignore: ['table:audit_*']
'''

RETURN = r'''
in_sync:
  description: Whether the database has no difference from the reference.
  returned: with a reference
  type: bool
drift:
  description:
    - One entry per difference - C(kind) (table, column, index, foreign_key, ...), C(name) (dotted, PostgreSQL schema
      public left out), C(path) (the exact name parts), C(table) (the table it belongs to, or null), C(what)
      (C(missing) - only in the reference, C(unexpected) - only in the database, or the attribute that differs),
      C(reference) and C(actual) (the values; for missing/unexpected the object's attributes).
  returned: with a reference
  type: list
  elements: dict
  sample: [{kind: foreign_key, name: quotas.user_id, path: [public, quotas, user_id], table: quotas, what: missing,
            reference: {name: quotas_user_id_fkey, references: neon_auth.users_sync, referenced_columns: [id],
                        on_delete: CASCADE, on_update: CASCADE, valid: true}, actual: null}]
summary:
  description: One line.
  returned: always
  type: str
  sample: '3 differences: 3 foreign keys missing (quotas.user_id, resumes.user_id, services.user_id)'
sql:
  description:
    - The statements that bring the database to the reference, in order - C(statement), C(object), C(why),
      C(drop), C(data_loss), C(findings) (migration_lint's rule, severity and message for it). Not run.
  returned: with a reference
  type: list
  elements: dict
not_expressed:
  description: The differences without a generated statement - C(kind), C(name), C(what), C(reason).
  returned: with a reference
  type: list
  elements: dict
counts:
  description: Objects per kind in the reference and in the database.
  returned: always
  type: dict
shadow:
  description: The shadow database of O(reference=migrations) - C(name), C(created), C(dropped), C(applied) (the
    migrations replayed); with O(command) also C(command) (C(rc), C(duration)) and C(pending) (what the command left
    pending in the shadow - the run fails when it is not empty).
  returned: with reference=migrations
  type: dict
snapshot_dest:
  description: The file written (or that would be written in check mode, or was already up to date).
  returned: with snapshot_dest
  type: str
server:
  description: Engine, flavour and version of the database's server.
  returned: always
  type: dict
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    ModuleFailure, connection_argument_spec, run_module,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import run as schema_run

CONN = dict(
    login_host=dict(type='str'), login_port=dict(type='int'), login_user=dict(type='str'),
    login_password=dict(type='str', no_log=True), login_unix_socket=dict(type='path'),
)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        reference=dict(type='str', choices=['migrations', 'snapshot', 'database']),
        tool=dict(type='str', choices=list(TOOLS)),
        migrations_path=dict(type='path'),
        app=dict(type='str'),
        history_table=dict(type='str'),
        schema=dict(type='str'),
        placeholders=dict(type='dict'),
        snapshot=dict(type='path'),
        snapshot_dest=dict(type='path'),
        ignore=dict(type='list', elements='str', default=[]),
        include_drops=dict(type='bool', default=False),
        fail_on_drift=dict(type='bool', default=False),
        shadow_setup=dict(type='str'),
        command=dict(type='list', elements='str'),
        chdir=dict(type='path'),
        environment=dict(type='dict', no_log=True),
        command_timeout=dict(type='float', default=900.0),
        shadow_maintenance_db=dict(type='str'),
        shadow_lock_timeout=dict(type='float', default=10.0),
        shadow_statement_timeout=dict(type='float'),
        reference_database=dict(type='str'),
        reference_ssl_mode=dict(type='str', choices=['disable', 'allow', 'prefer', 'require', 'verify-ca',
                                                     'verify-full']),
        reference_ca_cert=dict(type='path'),
    )
    for prefix in ('shadow_', 'reference_'):
        for key, opts in CONN.items():
            spec[prefix + key] = dict(opts)
    return spec


def validate(module):
    p = module.params
    ref = p['reference']
    if ref is None and not p['snapshot_dest']:
        module.fail_json(msg='Give reference (migrations, snapshot or database) to compare, or snapshot_dest to only '
                             'write the database\'s snapshot.')
    if ref == 'migrations':
        if not p['tool'] or not p['migrations_path']:
            module.fail_json(msg='reference=migrations needs tool and migrations_path (the migrations to replay into '
                                 'the shadow database).')
        if p['tool'] == 'django' and not p['app']:
            module.fail_json(msg='app is required for tool=django.')
    if p['command'] is not None:
        if ref != 'migrations' or p['tool'] not in ('alembic', 'django', 'knex', 'rails'):
            module.fail_json(msg='command replays a code tool\'s migrations (reference=migrations, tool alembic, '
                                 'django, knex or rails); the SQL-file tools replay without it.')
        if not p['command'] or not all(isinstance(a, str) and a and '\x00' not in a for a in p['command']):
            module.fail_json(msg='command must be a non-empty argv list of non-empty texts (no NUL).')
    if (p['chdir'] or p['environment']) and not p['command']:
        module.fail_json(msg='chdir and environment are for command.')
    if p['command_timeout'] is not None and p['command_timeout'] <= 0:
        module.fail_json(msg='command_timeout must be more than 0 seconds.')
    if ref == 'snapshot' and not p['snapshot']:
        module.fail_json(msg='reference=snapshot needs snapshot (the path of a file written by snapshot_dest).')
    if ref == 'database' and not p['reference_database']:
        module.fail_json(msg='reference=database needs reference_database (the database to compare with).')
    if p['engine'] == 'sqlite' and (any(p.get('shadow_' + k) is not None for k in CONN)
                                    or any(p.get('reference_' + k) is not None for k in CONN)):
        module.fail_json(msg='SQLite has no server: shadow_*/reference_* connection options do not apply (the '
                             'shadow is a temporary file; reference_database is the reference file\'s path).')
    for key in ('shadow_setup', 'snapshot', 'migrations_path', 'shadow_maintenance_db', 'reference_database'):
        if isinstance(p.get(key), str) and '\x00' in p[key]:
            module.fail_json(msg='%s contains a NUL character.' % key)
    if p['shadow_lock_timeout'] is not None and p['shadow_lock_timeout'] <= 0:
        module.fail_json(msg='shadow_lock_timeout must be more than 0 seconds.')
    if p['shadow_statement_timeout'] is not None and p['shadow_statement_timeout'] < 0:
        module.fail_json(msg='shadow_statement_timeout must be 0 or more seconds.')
    if p['connect_timeout'] is not None and p['connect_timeout'] <= 0:
        module.fail_json(msg='connect_timeout must be more than 0 seconds (it is %s).' % p['connect_timeout'])
    if p['placeholders'] and p['tool'] != 'flyway':
        module.fail_json(msg='placeholders are Flyway\'s (${name}); tool is %s.' % p['tool'])


def work(module, _db):
    result = schema_run.run(module)
    if module.params['fail_on_drift'] and result.get('in_sync') is False:
        raise ModuleFailure('Schema drift (fail_on_drift): %s' % result['summary'], **result)
    return result


def main():
    from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import install_signal_handlers
    install_signal_handlers()
    run_module(argument_spec(), work, validate=validate, connect=False)


if __name__ == '__main__':
    main()
