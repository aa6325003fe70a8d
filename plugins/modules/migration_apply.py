#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: migration_apply
short_description: Run the pending migrations of a migration tool, as the tool itself runs them
version_added: 0.3.0
description:
  - Deploys the pending migrations without the application's toolchain. For the SQL-file tools (Prisma, dbmate,
    golang-migrate, goose, sqlx, Flyway) the module runs each migration itself, the way that tool runs it
    (the text sent as the tool sends it, in a transaction where the tool uses one) and writes the history rows
    exactly as the tool writes them, after success and after failure, so the tool's own status and deploy
    commands agree afterwards. For the code-migration tools (alembic, Django, knex, Rails) it runs the
    application's own command (O(command)) under the maintenance lock and reads the history before and after.
  - "Refuses, running nothing, a history that is failed, dirty, unknown or modified: the message has the
    migration_status summary and the M(dbops.maintenance.migration_resolve) step that fixes it."
  - "Safety as in the other modules: the collection's maintenance lock for the whole run; the tool's own
    migration lock where it has one (the lock column of the tool x engine table below), taken with a bounded
    wait (O(wait_for_lock); refused, nothing run, when it is still held), so an application container
    migrating at start-up cannot interleave with the run; O(lock_timeout) on every statement (PostgreSQL
    C(lock_timeout), MySQL C(lock_wait_timeout)/C(innodb_lock_wait_timeout), SQLite busy timeout); a migration
    that can be rolled back whole (an explicit transaction, or one PostgreSQL query) and hits it is rolled
    back and retried whole (O(lock_retries), pausing while the blockers are there), so no lock wait of ours
    makes application traffic queue for longer than O(lock_timeout). A migration that takes several locks in
    one transaction, or runs a long UPDATE, holds what it took for as long as it runs (the lint findings say
    so). A non-transactional migration is retried only when the lock timeout hit its first statement;
    otherwise the run stops and says which statements ran."
  - "Lint gate, on by default: the pending migrations are linted as M(dbops.maintenance.migration_lint)
    does, and any C(error) finding refuses the run (an inline C(-- dbops:ignore <rule> <reason>) is honoured;
    O(lint=false) skips the gate). Each pending file is read once: the gate lints the bytes that run and whose
    checksum is recorded, so a file rewritten on disk during the run cannot run text the gate did not see."
  - Down migrations are never run; the rollback of a deploy is the restore of the backup taken before it
    (M(dbops.maintenance.db_backup) / M(dbops.maintenance.db_restore)).
  - "How each tool runs a migration, read from the tools' source (the file is named in
    plugins/module_utils/migrations/<tool>.py next to each C(deploy)):"
  - "B(prisma) (prisma-engines C(migrate deploy)): INSERT of the started row (finished_at NULL), the whole
    C(migration.sql) as one script, then C(applied_steps_count + 1) and C(finished_at). PostgreSQL - one
    simple-protocol query, i.e. one implicit transaction: a failure rolls the script back. MySQL/MariaDB and
    SQLite - statement after statement, no transaction: a failure leaves the statements before it applied.
    A failure is recorded as Prisma records it - the row keeps finished_at NULL and gets the error in C(logs)
    (the next deploy is refused, P3009, until migration_resolve)."
  - "B(dbmate) (dbmate C(up)): the C(-- migrate:up) section in a transaction together with the INSERT of its
    version, unless the marker has C(transaction:false). PostgreSQL and SQLite roll a failure back whole;
    MySQL/MariaDB commits each DDL statement at once, so the DDL before a failing statement stays. No row is
    written for a failure (dbmate has no failed state)."
  - "B(golang-migrate) (C(migrate up)): the version is set dirty, the C(.up.sql) file runs, the version is set
    clean. PostgreSQL - one query (implicit transaction); MySQL/MariaDB - statement after statement, no
    transaction; SQLite - in a transaction (the sqlite3 driver wraps it). A failure leaves the version dirty."
  - "B(goose) (C(goose up)): the C(-- +goose Up) section split into statements as goose splits it (a line
    ending in C(;), or a C(StatementBegin)/C(StatementEnd) block), in a transaction with the INSERT of its
    version row, unless C(-- +goose NO TRANSACTION). No row for a failure; MySQL commits DDL at once."
  - "B(sqlx) (C(sqlx migrate run)): in a transaction with its C(_sqlx_migrations) row (success TRUE,
    execution_time -1, updated after commit), unless the first line is C(-- no-transaction). On MySQL the row
    is inserted with success FALSE before the script and set TRUE after it, so a failure after a committed DDL
    leaves the success = FALSE row sqlx refuses later; PostgreSQL and SQLite roll a failure back, no row."
  - "B(flyway) (C(flyway migrate)): versioned C(V) migrations in version order, each in a transaction with its
    history row (installed_rank max + 1, CRC32 checksum, execution time). Placeholders C(${name}) are
    replaced (O(placeholders), and Flyway's C(${flyway:defaultSchema}), C(${flyway:user}),
    C(${flyway:database}), C(${flyway:table}), C(${flyway:filename})); the checksum is of the file as written.
    A failure on MySQL/MariaDB (no DDL transactions) is recorded as a C(success = false) row; on PostgreSQL
    and SQLite the transaction is rolled back and nothing is recorded."
  - "Tool x engine, transactions (PostgreSQL / MySQL-MariaDB / SQLite) - prisma: one query, implicit
    transaction / none / none; dbmate: transaction / transaction, DDL commits at once / transaction;
    golang-migrate: one query, implicit transaction / none / transaction; goose, sqlx, flyway: transaction /
    transaction, DDL commits at once / transaction. Markers that turn it off: dbmate C(transaction:false),
    goose C(NO TRANSACTION), sqlx C(-- no-transaction) (prisma, golang-migrate and Flyway have none read here)."
  - "Tool x engine, a failure recorded (PostgreSQL / MySQL-MariaDB / SQLite) - prisma: the row with finished_at
    NULL and the error in logs, on all three; golang-migrate: the version dirty, on all three; dbmate, goose:
    nothing, on all three; sqlx: nothing / the success = false row when a DDL statement had committed /
    nothing; flyway: nothing / a success = false row / nothing. Each cell is tested
    (tests/integration/test_migration_apply.py)."
  - "Tool x engine, the tool's own migration lock, taken before the first migration and held until the last
    (PostgreSQL / MySQL-MariaDB / SQLite) - prisma: C(pg_advisory_lock(72707369)) / C(GET_LOCK('prisma_migrate'))
    / none; golang-migrate: C(pg_advisory_lock) of its C(GenerateAdvisoryLockId(database, schema, table)) /
    C(GET_LOCK) of the id of C(database:table) / none; sqlx: C(pg_advisory_lock(0x3d32ad9e * crc32(database)))
    / C(GET_LOCK) of the same number in lower-case hex / none; flyway: advisory lock C(0x466C79776179)
    (\"Flyway\") + the Java C(hashCode) of the quoted C(\"schema\".\"table\") (Flyway takes it with
    C(pg_try_advisory_xact_lock) by default) / C(GET_LOCK('Flyway-<hashCode of `database`.`table`>')) / none;
    goose: C(pg_try_advisory_lock(5887940537704921958)) / none / none - goose's session locker is OFF by
    default (only an application that builds its goose Provider with C(WithSessionLocker) takes it; the goose
    CLI never does), we take it anyway so such an application cannot interleave; dbmate: none (dbmate takes
    no lock). Each lock is tested held by another session (refused after O(wait_for_lock), taken once
    released; tests/integration/test_migration_apply_safety.py)."
  - "Work per migration, compared with the tools: on PostgreSQL a transactional migration is ONE round trip,
    BEGIN, the script, its history statements and COMMIT in one simple-protocol query (the server runs them
    one after the other in the transaction block the BEGIN opens, and an error skips the rest, so no history
    row follows a failure); Flyway's row holds the execution time, so it goes in a second round trip with the
    COMMIT. dbmate's lib/pq makes about eight: BEGIN, the script, current_schema(), quote_ident, the INSERT's
    parse and execute, COMMIT."
  - "On SQLite, consecutive migrations that each run in a transaction with their history row and write
    nothing outside it (dbmate, goose and Flyway on SQLite) are committed together: one transaction, taken
    with C(BEGIN IMMEDIATE) without waiting, each migration in its own savepoint, committed after 0.2 s (or
    O(lock_timeout) / 2 when shorter), at the last pending migration, or before a migration that cannot be
    grouped (one with a PRAGMA, VACUUM, ATTACH or transaction control statement runs alone, as the tool runs
    it). The result is the one a commit per migration gives: each migration is in the database with its
    history row or neither is, and a crash before the commit loses the group's migrations together with their
    rows. A migration that fails in a group is rolled back to its savepoint, the ones before it are committed,
    and it runs again alone, the usual way (the lock retries, the failure recorded as the tool records it); a
    COMMIT that fails rolls the group back and its migrations run one by one. Each SQLite commit costs two or
    three fsyncs, so 1,000 migrations take a third of dbmate's time (dbmate commits each one). For dbmate and
    golang-migrate the connection also runs with C(PRAGMA synchronous = NORMAL) during the migrations, as their
    driver (mattn/go-sqlite3) sets it on every connection (the power-loss margin is SQLite's for NORMAL).
    PostgreSQL migrations are not grouped: measured, it saves nothing there (the server's work per migration
    dominates, not the WAL flush) and it would hold each migration's locks until the group commits. Measured
    in bench/migration_apply_bench.py; plugins/module_utils/migrations/group.py."
  - Code-migration tools through O(command) - on PostgreSQL, O(lock_timeout) (and O(statement_timeout)) reach
    the tool's connection through C(PGOPTIONS) where its driver honours it (libpq-based drivers such as psycopg2
    and psycopg, and node-postgres with C(pg) 8; not asyncpg, pg8000 or JDBC). MySQL has no such variable.
    The command is not retried; its output is returned, and a failure is reported with the history as it now is.
  - "Drivers and C(PGOPTIONS) (so O(lock_timeout)) - psycopg2, psycopg 3 and Ruby's C(pg) gem (libpq): honoured
    (alembic and Django with them, Rails); node-postgres (C(pg), knex's PostgreSQL client): honoured; asyncpg,
    pg8000 and JDBC: not honoured (set the timeout in the application's own connection settings); MySQL and
    MariaDB: no such variable."
  - The command is told the database the module is connected to by tokens in O(environment) values -
    C({database_url}) (C(postgresql://user:password@host:port/db), C(mysql://...), or C(sqlite:///path)),
    C({database}), C({host}), C({port}), C({user}), C({password}) - and in O(command)'s arguments (all but
    C({database_url}) and C({password}), which process arguments would show to every user of the host).
    So the same task migrates whichever database the connection options name - production, or the scratch
    copy of the migration_deploy role's rehearsal, which refuses a command that names no token. A command that
    takes its database from its own configuration migrates that database whatever the module is connected to;
    when it exits 0 but the history here did not change while migrations were pending, the module warns.
  - O(command) runs in a session (process group) of its own. When it runs longer than O(command_timeout), the
    whole group is stopped (SIGTERM, then SIGKILL 5 seconds later), so no process it started (C(npx), a wrapper
    script, a spring server) keeps migrating after the module has released its locks; a process of the group
    that keeps the output open after the command exited gets 5 seconds, then is stopped too.
options:
  to:
    description:
      - Apply the pending migrations up to and including this one (the id as the tool stores it, or the file
        name). Default - every pending migration. A migration already applied makes the run a no-op.
    type: str
  out_of_order:
    description:
      - goose and Flyway only. Apply pending migrations older than the latest applied one, as C(goose up
        -allow-missing) and C(flyway migrate -outOfOrder=true) do (in version order, before the newer ones).
        Without it such a history is refused, as these tools refuse it by default. The other tools apply them
        anyway (dbmate, sqlx, Prisma) or count them as applied (golang-migrate), so it changes nothing there.
    type: bool
    default: false
  lint:
    description:
      - Lint the pending migrations first and refuse the run on any C(error) finding.
    type: bool
    default: true
  schema:
    description:
      - PostgreSQL only. The schema the migrations and the history table are in (put first in the session's
        C(search_path)), as Prisma's C(?schema=), dbmate's C(search_path), golang-migrate's C(search_path) and
        Flyway's C(defaultSchema) do.
    type: str
  placeholders:
    description:
      - Flyway only. Values of the C(${name}) placeholders in the migrations (Flyway's C(placeholders.name)).
        They are shown in C(plan), C(queries) and messages; give secret ones in O(secret_placeholders).
    type: dict
  secret_placeholders:
    description:
      - Flyway only. Placeholders whose values are secrets (a password a migration sets, for example), replaced
        like O(placeholders) and masked wherever they would appear in the output (C(plan), C(queries), errors).
        A name may not be in both.
    type: dict
  command:
    description:
      - The application's own migration command, as an argv list (no shell), e.g. C([alembic, upgrade, head]),
        C([python, manage.py, migrate]), C([npx, knex, migrate:latest]), C([bin/rails, db:migrate]).
        Required for alembic, django, knex and rails; with another tool it runs that tool instead of the
        native apply. The tokens C({database}), C({host}), C({port}) and C({user}) are replaced in its
        arguments (e.g. C([alembic, -x, "db={database}", upgrade, head])); C({database_url}) and C({password})
        are refused there - give them in O(environment).
    type: list
    elements: str
  chdir:
    description:
      - Directory to run O(command) in.
    type: path
  environment:
    description:
      - Extra environment variables for O(command), for example C(DATABASE_URL) set to C({database_url}). The tokens
        C({database_url}), C({database}), C({host}), C({port}), C({user}) and C({password}) are replaced by the
        module's own connection (see the notes); any other text is passed as is. Their values are treated as
        secrets - masked wherever they would appear in the output - so give short values that are not secret
        (C(1), C(true)) another way (a wrapper script), or they mask every match.
    type: dict
  command_timeout:
    description:
      - Seconds O(command) may run; after that it is killed and the run fails. Every subprocess the collection
        starts is bounded in time; raise it for a long data migration.
    type: float
    default: 3600.0
  create_table:
    description:
      - Create the history table when it is missing, with the tool's own DDL (the tools create it on their
        first deploy). Without it, a missing table is refused, so a wrong O(database) is not migrated from zero.
    type: bool
    default: false
extends_documentation_fragment:
  - dbops.maintenance.connection
  - dbops.maintenance.connection.safety
  - dbops.maintenance.migrations
attributes:
  check_mode:
    support: full
    description: Lists the pending migrations with the exact statements each would run (RV(plan), RV(queries));
      runs nothing, takes no lock, writes no history row.
  diff_mode:
    support: full
    description: The history rows before and after; in check mode the rows the run would leave (the tool's
      history statements simulated on the rows read - a value the database fills in, such as a timestamp, shows
      as null).
notes:
  - O(migrations_path) is required, with O(command) too - the pending migrations are read from it.
  - SQLite has no statement timeout; O(statement_timeout) applies to PostgreSQL (C(statement_timeout)) and
    MariaDB (C(max_statement_time), every statement). On Oracle MySQL it becomes C(max_execution_time), which
    limits SELECT statements only, so a migration's DDL and DML there run unbounded by it.
  - The maintenance lock is the collection's own; the tool's lock keeps the tool itself out. Locks are released
    when the module returns.
  - Prisma's started row gets a random UUID, so the INSERT of check mode and of the real run differ in the id.
  - On SQLite, check mode shows the migrations that would be committed together as one group (C(BEGIN IMMEDIATE),
    a savepoint each, C(COMMIT)); a run may commit them in more groups than that, one per 0.2 s, and RV(queries)
    lists the statements exactly as they ran.
  - A migration rolled back whole after the lock retries were used up leaves the history as it was (the started
    row of Prisma, the dirty version of golang-migrate are taken back), so the next run can simply try again.
seealso:
  - module: dbops.maintenance.migration_status
  - module: dbops.maintenance.migration_resolve
  - module: dbops.maintenance.migration_lint
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Deploy the pending Prisma migrations (prisma migrate deploy, without node)
  dbops.maintenance.migration_apply:
    engine: postgresql
    database: shop
    tool: prisma
    migrations_path: /srv/shop/prisma/migrations
    lock_timeout: 2

- name: Rehearse first - what would run
  dbops.maintenance.migration_apply:
    engine: mysql
    database: shop
    tool: dbmate
    migrations_path: /srv/shop/db/migrations
  check_mode: true
  register: plan

- name: Alembic, with the application's own venv, lock_timeout through PGOPTIONS
  dbops.maintenance.migration_apply:
    engine: postgresql
    database: app
    tool: alembic
    migrations_path: /srv/app/alembic/versions
    command: [/srv/app/venv/bin/alembic, upgrade, head]
    chdir: /srv/app
    environment:
      DATABASE_URL: "{database_url}"  # this task's connection, password included (never in argv)
'''

RETURN = r'''
applied:
  description: The migrations applied by this run, in order, with the seconds each took (C(null) for O(command)).
  returned: always
  type: list
  elements: dict
  sample: [{name: 20250821015630_add_shipment_file_field, file: 20250821015630_add_shipment_file_field,
            duration: 0.012}]
pending:
  description: The pending migrations after the run (in check mode, those that would be applied).
  returned: always
  type: list
  elements: str
failed_migration:
  description: The migration that failed, the statement, the error, the statements that ran before it and
    whether it was rolled back.
  returned: failure of a migration
  type: dict
plan:
  description: Native apply - per pending migration the exact statements, in order, whether it runs in a
    transaction and how. A run (not check mode) returns what it ran instead (RV(applied), RV(queries)).
  returned: native apply, check mode
  type: list
  elements: dict
status:
  description: The migration_status result after the run (summary, clean, applied, pending, failed, ...).
  returned: success
  type: dict
status_before:
  description: The migration_status result before the run.
  returned: always
  type: dict
lint:
  description:
    - The lint findings of the pending migrations, as M(dbops.maintenance.migration_lint) lists them by default
      (its O(dbops.maintenance.migration_lint#module:max_info_findings=100)) - every C(error), C(warning) and
      ignored finding, and at most 100 C(info) findings (style hints); the others are counted in
      RV(lint_unlisted_info). Run M(dbops.maintenance.migration_lint) for every one of them, or a report file.
  returned: always
  type: list
  elements: dict
lint_unlisted_info:
  description: The number of C(info) lint findings counted but not listed in RV(lint).
  returned: always
  type: int
  sample: 0
queries:
  description: The statements that ran (in check mode, that would run).
  returned: always
  type: list
  elements: str
attempts:
  description: The lock timeouts met and retried.
  returned: when any
  type: list
  elements: dict
stdout:
  description: O(command) output.
  returned: with command
  type: str
stderr:
  description: O(command) error output.
  returned: with command
  type: str
rc:
  description: O(command) exit code (C(null) when it was killed after O(command_timeout)).
  returned: with command
  type: int
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    dbops_argument_spec, finish_result, run_module,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.apply import apply
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS

CODE_TOOLS = ('alembic', 'django', 'knex', 'rails')


def argument_spec():
    return dbops_argument_spec(
        tool=dict(type='str', required=True, choices=list(TOOLS)),
        migrations_path=dict(type='path'),
        app=dict(type='str'),
        history_table=dict(type='str'),
        create_table=dict(type='bool', default=False),
        to=dict(type='str'),
        out_of_order=dict(type='bool', default=False),
        lint=dict(type='bool', default=True),
        schema=dict(type='str'),
        placeholders=dict(type='dict'),
        secret_placeholders=dict(type='dict', no_log=True),
        command=dict(type='list', elements='str'),
        chdir=dict(type='path'),
        environment=dict(type='dict', no_log=True),
        command_timeout=dict(type='float', default=3600.0),
    )


def validate(module):
    p = module.params
    if p['tool'] == 'django' and not p['app']:
        module.fail_json(msg='app is required for tool=django: django_migrations records migrations per app.')
    if p['tool'] in CODE_TOOLS and not p['command']:
        module.fail_json(msg='%s migrations are code: give command (the application\'s own migrate command, as an '
                             'argv list, e.g. [alembic, upgrade, head]).' % p['tool'])
    if p['command'] is not None and not p['command']:
        module.fail_json(msg='command is an empty list: give the program and its arguments.')
    if p['command'] and p['to']:
        module.fail_json(msg='to is for the native apply; with command, give the target in the command itself.')
    if (p['placeholders'] or p['secret_placeholders']) and p['tool'] != 'flyway':
        module.fail_json(msg='placeholders are Flyway\'s (${name}); tool is %s.' % p['tool'])
    both = sorted(set(p['placeholders'] or {}) & set(p['secret_placeholders'] or {}))
    if both:
        module.fail_json(msg='placeholder(s) %s are in both placeholders and secret_placeholders: give each once.'
                             % ', '.join(both))
    if p['schema'] is not None and p['engine'] != 'postgresql':
        module.fail_json(msg='schema is for PostgreSQL; on %s the schema is the database option.' % p['engine'])
    if p['schema'] is not None and (not p['schema'] or '\x00' in p['schema']):
        module.fail_json(msg='schema must be a non-empty name.')
    if p['command_timeout'] is not None and p['command_timeout'] <= 0:
        module.fail_json(msg='command_timeout must be more than 0 seconds.')
    if (p['chdir'] or p['environment']) and not p['command']:
        module.fail_json(msg='chdir and environment are for command.')
    if not p['migrations_path']:
        module.fail_json(msg='migrations_path is required: the directory of the %s migrations (with command too: '
                             'the pending migrations are read from it, so that check mode and the migration_deploy '
                             'role\'s plan know what the command would run).' % p['tool'])


def work(module, db):
    params = dict(module.params)
    if params['secret_placeholders']:
        params['placeholders'] = {**(params['placeholders'] or {}), **params['secret_placeholders']}
    result = apply(db, params, module.check_mode)
    diff = result.pop('diff', None)
    return finish_result(db, result, diff=diff)


def main():
    run_module(argument_spec(), work, validate=validate)


if __name__ == '__main__':
    main()
