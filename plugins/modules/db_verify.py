#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: db_verify
short_description: Prove a database is what a deploy or fix should have left, with declarative checks
version_added: 0.2.0
description:
  - Runs declarative checks after a deploy, a migration or a fix, and reports each as passed or failed with the
    value it found. All checks run; then the task fails listing every failed check, not only the first.
  - Read-only. It never takes the maintenance lock and never writes. The operator's O(queries) are read-only by
    what each statement is, proven before it runs (see O(queries) for exactly what is allowed); a query that is not
    allowed fails its check with the reason, and nothing of it runs. As a second layer, a query runs as exactly one
    statement in a read-only transaction that is rolled back (PostgreSQL C(SET TRANSACTION READ ONLY) over the
    extended protocol, MySQL/MariaDB C(START TRANSACTION READ ONLY) in a session without multi-statements), or on a
    SQLite connection that cannot write.
  - 'Check kinds: O(tables_min), O(tables), O(columns), O(enum_values), O(migrations), O(queries), and row counts
    against a baseline (O(capture), O(baseline)).'
  - An empty database (no tables), and a zero-byte SQLite file, fail O(tables_min) with C(empty database - no
    tables) said plainly (a release that skipped its migrations). A SQLite file that does not exist is an error,
    and the module never creates one.
options:
  tables_min:
    description:
      - The database must have at least this many tables (PostgreSQL, all schemas except the system ones).
    type: int
  tables:
    description:
      - Tables that must exist. On PostgreSQL C(schema.table), or C(table) in O(schema).
    type: list
    elements: str
  columns:
    description:
      - Columns that must exist, optionally with a type and nullability.
      - The expected O(columns[].type) is compared after the server's own normalisation, so C(int) matches
        C(integer) and C(varchar(191)) matches C(character varying(191)) on PostgreSQL, and C(int) matches
        C(int(11)) on MariaDB. PostgreSQL reads the normalised type from the result description of
        C(SELECT NULL::type) in a rolled-back read-only transaction (nothing is created, it works on a hot standby);
        MySQL/MariaDB define the type on a session-private temporary table that is dropped at once (as
        column_ensure does; it needs the CREATE TEMPORARY TABLES privilege, and only when the text differs);
        SQLite compares the declared types as written (case and spaces aside).
    type: list
    elements: dict
    suboptions:
      table:
        description: The table (PostgreSQL C(schema.table) allowed).
        type: str
        required: true
      column:
        description: The column.
        type: str
        required: true
      schema:
        description: PostgreSQL schema of the table.
        type: str
      type:
        description: Expected type.
        type: str
      nullable:
        description: Expected nullability.
        type: bool
  enum_values:
    description:
      - Values an enum must accept (others may exist too). PostgreSQL, an enum type (O(enum_values[].name));
        MySQL/MariaDB, an ENUM column (O(enum_values[].table), O(enum_values[].column)).
    type: list
    elements: dict
    suboptions:
      name:
        description: PostgreSQL enum type, as in the catalog (case-sensitive).
        type: str
      schema:
        description: PostgreSQL schema of the type.
        type: str
      table:
        description: MySQL table of the ENUM column.
        type: str
      column:
        description: MySQL ENUM column.
        type: str
      values:
        description: Values that must be present.
        type: list
        elements: str
        required: true
  migrations:
    description:
      - The migration history must be clean, as migration_status sees it - no pending, failed, unknown (applied
        but not on disk) or modified (checksum changed) migration.
    type: dict
    suboptions:
      tool:
        description: The migration tool.
        type: str
        required: true
        choices: [prisma, alembic, flyway, django, golang-migrate, sqlx, knex, rails, dbmate, goose]
      path:
        description:
          - The migrations directory on the host the module runs on. Without it, only failed migrations
            are found (nothing is known about pending ones).
        type: path
      history_table:
        description: The tool's history table, when not the tool's default.
        type: str
  queries:
    description:
      - Application-specific checks, each an SQL query whose first column of the first row must be truthy
        (not NULL, 0, false or an empty string). A query that returns no row, fails, or is not allowed fails
        the check.
      - 'What is allowed (an allowlist; anything else is refused with nothing run). B(Every engine): exactly one
        statement, parsed (pglast, the PostgreSQL server''s own parser; sqlglot in the C(mysql) / C(sqlite) dialect),
        that is a C(SELECT), C(WITH ... SELECT), a set operation (C(UNION), C(INTERSECT), C(EXCEPT)) or C(VALUES),
        and, on MySQL/MariaDB, C(SHOW). Never C(SELECT ... INTO) (a table, C(OUTFILE), C(DUMPFILE), variables),
        C(FOR UPDATE) / C(FOR SHARE) / C(LOCK IN SHARE MODE), a data-modifying C(WITH) (C(INSERT), C(UPDATE),
        C(DELETE), C(MERGE)), C(EXPLAIN) (with or without C(ANALYZE)), C(COPY), C(SET), C(PRAGMA), C(ATTACH),
        C(VACUUM), C(CALL), C(DO), C(LOAD), C(HANDLER) or any DDL. Text nested too deeply for the parser is refused.'
      - 'B(PostgreSQL): every function and operator the query calls is looked up by name in the catalog (pg_proc,
        pg_operator, in the schema it names or on the search path), and every overload it could resolve to must
        be immutable or stable (C(provolatile) C(i) or C(s)), built in (schema C(pg_catalog)) or compiled code of
        an extension (language C or internal, which only a superuser can install, e.g. the operators of citext),
        and not on the deny list of functions that act or read outside the database even though stable:
        C(pg_read_file), C(pg_read_binary_file), C(pg_stat_file), C(pg_ls_*), C(lo_*), C(pg_terminate_backend),
        C(pg_cancel_backend), C(set_config), C(dblink*), C(pg_advisory_*), C(pg_try_advisory_*), C(pg_notify),
        C(pg_sleep*), C(txid_current*), C(pg_current_xact_id*), C(pg_export_snapshot), C(pg_logical_*),
        C(pg_replication_*), C(query_to_xml*), C(cursor_to_xml*), C(table_to_xml*), C(schema_to_xml*),
        C(database_to_xml*), C(ts_stat), C(pg_config), C(nextval), C(setval), C(currval), C(lastval),
        C(pg_create_*), C(pg_drop_*), C(pg_backup_*), C(pg_start_backup), C(pg_stop_backup), C(pg_stat_reset*),
        C(pg_wal_replay_*), C(pg_file_*), C(pg_copy_*), C(pg_read_*), C(pg_write_*), C(pg_reload_conf),
        C(pg_rotate_logfile), C(pg_switch_wal), C(pg_promote), C(pg_log_backend_memory_contexts),
        C(pg_import_system_collations), C(pg_nextoid), C(loread), C(lowrite), C(pg_describe_object). Checking
        every candidate overload, rather than guessing the argument types, is
        exact: if any function the name could resolve to might act, the query is refused. Functions and operators
        written in SQL, PL/pgSQL or another procedural language outside C(pg_catalog) are user code and are refused,
        stable or not (a function can be declared stable and still act); so is a cast to a type whose input or cast
        functions are such user code, or to a domain with CHECK constraints (enum and composite types are
        fine). Volatile built-ins such as C(random()) and C(clock_timestamp()) are refused too.'
      - 'B(MySQL/MariaDB): functions on the deny list are refused (C(GET_LOCK), C(RELEASE_LOCK),
        C(RELEASE_ALL_LOCKS), C(IS_FREE_LOCK), C(SLEEP), C(BENCHMARK), C(LOAD_FILE), C(MASTER_POS_WAIT),
        C(SOURCE_POS_WAIT), C(MASTER_GTID_WAIT), C(WAIT_FOR_EXECUTED_GTID_SET), C(NEXTVAL), C(SETVAL), C(LASTVAL),
        C(LAST_INSERT_ID), ...); a function sqlglot does not know as a built-in is allowed only if it is on the
        module''s list of known pure built-ins (so a loadable UDF is refused); a stored function is always refused,
        even one declared C(DETERMINISTIC) with C(READS SQL DATA) or C(NO SQL), since such declarations are not
        enforced by the server; so is a function of another schema (C(db.f())), an executable comment
        (C(/*! ... */)) and assigning a variable.'
      - 'B(SQLite): the query runs on a connection of its own opened with C(mode=ro), C(PRAGMA query_only),
        C(SQLITE_LIMIT_ATTACHED) set to 0 and an authorizer (C(set_authorizer)) that allows only reading
        (C(SQLITE_SELECT), C(SQLITE_READ), C(SQLITE_RECURSIVE)) and the core, date and time, math, JSON and window
        functions (not C(load_extension)); SQLite denies everything else itself.'
      - Views and the functions they call are part of the database and are not inspected; the read-only
        transaction still applies to them.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the check in the report.
        type: str
      sql:
        description: The query (one reading statement, as described above).
        type: str
        required: true
  schema_snapshot:
    description:
      - The live schema must equal a snapshot written by M(dbops.maintenance.schema_diff) (O(schema_snapshot.snapshot)),
        compared as schema_diff compares - except for the declared change (O(schema_snapshot.expected)), which must be
        found exactly. Take a snapshot before a change and check after it - the check fails on anything else that
        changed, and on a declared change that did not happen.
    type: dict
    suboptions:
      snapshot:
        description: The snapshot file (schema_diff O(dbops.maintenance.schema_diff#module:snapshot_dest)).
        type: path
        required: true
      expected:
        description:
          - The declared change, as drift entries in the format schema_diff returns them - C(kind), C(name), C(what)
            (C(missing) - in the snapshot only, C(unexpected) - new in the database, or the attribute that
            changed) and, optionally, C(reference) and C(actual), which must then be equal too.
          - "An entry without C(what) allows a change of the whole object (C(kind) and C(name)), for example
            C({kind: enum, name: CredentialType}) - every difference of that object is declared, and none is required
            (the verify role declares so every object the fixes of the maintenance playbook may touch)."
        type: list
        elements: dict
        default: []
      ignore:
        description: Objects left out, as schema_diff O(dbops.maintenance.schema_diff#module:ignore).
        type: list
        elements: str
        default: []
  capture:
    description:
      - Count the rows of every table (or of O(row_count_tables)) and return them as RV(baseline), to pass as
        O(baseline) to a later run (for example before and after a deploy).
    type: bool
    default: false
  baseline:
    description:
      - A RV(baseline) returned by an earlier run with O(capture=true). Every table in it must still exist, and must
        not have lost more rows than O(tolerance) allows. New tables and more rows are fine.
    type: dict
  tolerance:
    description:
      - Percentage of a table's baseline rows it may lose before the row count check fails. C(0) means no row may
        be lost.
    type: float
    default: 0
  row_count_tables:
    description:
      - Count only these tables (default all). Counting is exact (C(count(*))), which reads whole tables; limit it on
        big databases.
    type: list
    elements: str
  schema:
    description:
      - PostgreSQL schema of unqualified table names and enum types. Defaults to the first schema of the search path.
    type: str
  statement_timeout:
    description:
      - Seconds any single query of the checks may run (PostgreSQL C(statement_timeout), MariaDB C(max_statement_time),
        MySQL C(max_execution_time)). Unset means no limit.
    type: float
extends_documentation_fragment:
  - dbops.maintenance.connection
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs every check the same way.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to show a difference of.
notes:
  - Give at least one check option, or O(capture).
seealso:
  - module: dbops.maintenance.migration_lint
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Capture row counts before the deploy
  dbops.maintenance.db_verify:
    engine: postgresql
    database: app
    capture: true
  register: before

- name: After the deploy - prove the result
  dbops.maintenance.db_verify:
    engine: postgresql
    database: app
    tables_min: 10
    tables: [users, public.orders]
    columns:
      - {table: users, column: email, type: "varchar(255)", nullable: false}
    enum_values:
      - {name: CredentialType, values: [PERSONAL_ACCESS_TOKEN]}
    migrations:
      tool: prisma
      path: /srv/app/prisma/migrations
    queries:
      - name: an admin exists
        sql: "SELECT count(*) > 0 FROM users WHERE role = 'admin'"
    baseline: "{{ before.baseline }}"
    tolerance: 1

- name: The empty-SQLite case - a release that skipped migrations fails here, not with a 500 later
  dbops.maintenance.db_verify:
    engine: sqlite
    database: /var/lib/app/app.db
    tables_min: 1

- name: Nothing but the intended change happened (snapshot taken before with schema_diff snapshot_dest)
  dbops.maintenance.db_verify:
    engine: postgresql
    database: app
    schema_snapshot:
      snapshot: /var/lib/dbops/app-before.json
      expected:
        - {kind: column, name: shipment_records.shipmentFile, what: unexpected}
'''

RETURN = r'''
checks:
  description: Every check, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: What was checked (C(table users), C(column users.email), C(row_count public.orders), ...).
      type: str
    kind:
      description: The option it comes from.
      type: str
    ok:
      description: Whether it passed.
      type: bool
    expected:
      description: What was expected.
      type: raw
    actual:
      description: What was found.
      type: raw
    message:
      description: The finding in words.
      type: str
  sample:
    - {name: tables_min, kind: tables_min, ok: false, expected: 1, actual: 0, message: "empty database: no tables"}
summary:
  description: One line per failed check, after a count.
  returned: always
  type: str
  sample: "db_verify: 1 of 3 check(s) failed"
failed_checks:
  description: Number of failed checks.
  returned: always
  type: int
baseline:
  description: With O(capture=true), the row counts to pass as O(baseline) later.
  returned: when capture
  type: dict
  sample: {engine: postgresql, database: app, captured_at: "2026-11-24T03:00:00+00:00", tables: {public.users: 1042}}
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
'''

from ansible_collections.dbops.maintenance.plugins.module_utils import verify
from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    ModuleFailure, dbops_argument_spec, finish_result, run_module,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.names import NAMES as TOOL_NAMES

CHECK_OPTIONS = ('tables_min', 'tables', 'columns', 'enum_values', 'migrations', 'queries', 'baseline', 'capture',
                 'schema_snapshot')


def argument_spec():
    return dbops_argument_spec(
        changes=False,
        tables_min=dict(type='int'),
        tables=dict(type='list', elements='str'),
        columns=dict(type='list', elements='dict', options=dict(
            table=dict(type='str', required=True), column=dict(type='str', required=True),
            schema=dict(type='str'), type=dict(type='str'), nullable=dict(type='bool'))),
        enum_values=dict(type='list', elements='dict', options=dict(
            name=dict(type='str'), schema=dict(type='str'), table=dict(type='str'), column=dict(type='str'),
            values=dict(type='list', elements='str', required=True))),
        migrations=dict(type='dict', options=dict(
            tool=dict(type='str', required=True, choices=list(TOOL_NAMES)), path=dict(type='path'),
            history_table=dict(type='str'))),
        queries=dict(type='list', elements='dict', options=dict(
            name=dict(type='str'), sql=dict(type='str', required=True))),
        schema_snapshot=dict(type='dict', options=dict(
            snapshot=dict(type='path', required=True), expected=dict(type='list', elements='dict', default=[]),
            ignore=dict(type='list', elements='str', default=[]))),
        capture=dict(type='bool', default=False),
        baseline=dict(type='dict'),
        tolerance=dict(type='float', default=0),
        row_count_tables=dict(type='list', elements='str'),
        schema=dict(type='str'),
        statement_timeout=dict(type='float'),
    )


def validate(module):
    p = module.params
    if not any(p[o] for o in CHECK_OPTIONS) and p['tables_min'] is None:
        module.fail_json(msg='Nothing to verify: give at least one of %s.' % ', '.join(CHECK_OPTIONS))
    if p['tolerance'] < 0 or p['tolerance'] > 100:
        module.fail_json(msg='tolerance is a percentage of rows a table may lose: 0 to 100 (it is %s).' % p['tolerance'])
    for spec in p['enum_values'] or []:
        if p['engine'] == 'postgresql' and not spec['name']:
            module.fail_json(msg='enum_values: on PostgreSQL give the enum type as name (values %s).' % spec['values'])
        if p['engine'] == 'mysql' and not (spec['table'] and spec['column']):
            module.fail_json(msg='enum_values: on MySQL/MariaDB an ENUM belongs to a column: give table and column.')
        if p['engine'] == 'sqlite':
            module.fail_json(msg='enum_values: SQLite has no enum types; check a CHECK constraint with queries '
                                 'instead.')
    if p['schema'] and p['engine'] != 'postgresql':
        module.fail_json(msg='schema is for PostgreSQL; on MySQL the database is the schema.')
    if p['baseline'] is not None:
        validate_baseline(module, p['baseline'])


def validate_baseline(module, baseline):
    """A baseline is input: its tables must map names to whole row counts (nothing is read before this)."""
    tables = baseline.get('tables')
    if not isinstance(tables, dict):
        module.fail_json(msg='baseline is not a baseline of db_verify: it has no "tables" mapping. Pass the '
                             '"baseline" value returned by an earlier run with capture: true. Nothing was checked.')
    for name, count in tables.items():
        ok = isinstance(count, int) and not isinstance(count, bool) and count >= 0
        if isinstance(count, str) and count.strip().isdigit():
            tables[name] = int(count.strip())
            ok = True
        if not ok:
            module.fail_json(msg='baseline.tables[%r] is %r, not a row count (a whole number, 0 or more). Pass the '
                                 '"baseline" value returned by an earlier run with capture: true, unchanged. Nothing '
                                 'was checked.' % (name, count))


def migrations_status(db, spec):
    """Check results of the migrations check, from migration_status' reading of the history."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import status as pending
    return pending.verify_checks(db, spec)


def work(module, db):
    p = module.params
    checks, baseline = verify.run_checks(db, p, migrations_status=migrations_status)
    result = finish_result(db, dict(changed=False, checks=checks, summary=verify.summary(checks),
                                    failed_checks=len([c for c in checks if not c['ok']])), queries=False)
    if baseline is not None:
        result['baseline'] = baseline
    if result['failed_checks']:
        raise ModuleFailure(result['summary'], **result)
    return result


def main():
    run_module(argument_spec(), work, validate=validate, maintenance_lock=False)


if __name__ == '__main__':
    main()
