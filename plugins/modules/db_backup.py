#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: db_backup
short_description: Back up a PostgreSQL, MySQL/MariaDB or SQLite database, atomically, with a verified manifest
version_added: 0.2.0
description:
  - Takes a backup that is proven restorable, and only reports success when it is.
  - B(PostgreSQL) uses C(pg_dump) (formats C(custom), C(directory), C(plain)). The client tools are chosen by server
    version, as C(pg_dump) must be at least the server's major version; the smallest suitable major found in
    O(tool_path), C(/usr/lib/postgresql/*/bin), C(/usr/pgsql-*/bin), the C(pgserver) wheel and E(PATH) is used
    (between equal majors, the first in that order; Debian's C(pg_wrapper) link in C(/usr/bin) only when nothing
    else is found), and recorded in the manifest.
  - B(MySQL/MariaDB) uses C(mariadb-dump) (MariaDB) or C(mysqldump) (MySQL) with C(--single-transaction),
    routines, triggers, events and C(--hex-blob); the output is compressed by the C(gzip), C(zstd) or C(lz4) tool.
  - B(SQLite) uses the online backup API, which copies one consistent state of the database while the
    application keeps writing.
  - The dump streams into a temporary name in O(dest); the sha256 is computed while it streams. The backup
    counts only if every process of the pipeline (dump tool, compressor) exited 0 and it is not empty; it is
    then verified (O(verify)), fsynced and renamed into place, and a JSON manifest is written beside it
    (temporary name + rename). A failed, killed or partial dump leaves no file at the final name and no manifest;
    the exit code and stderr of every process are returned.
  - Backups are named C(<label>-<UTC timestamp><ext>) with the manifest C(<same>.manifest.json).
  - Passwords reach the tools only through the environment (PostgreSQL E(PGPASSWORD)) or a 0600 option
    file in a private directory that is removed afterwards (MySQL), never through a command line, and never
    appear in the manifest or the result.
options:
  dest:
    description:
      - Directory for the backups. Created with mode 0700 when missing.
      - Refused (in check mode too, with nothing written) when it is a symbolic link to nothing, not a directory,
        writable by every user without the sticky bit, or owned by a user other than the module user and root, because
        another user could replace or remove the backups there.
      - Everything temporary of a run (the dump being written, the SQLite copy, the progress file) is created in
        a private directory of the run inside O(dest) (mode 0700, an unpredictable name C(.dbops-tmp-*)); files are
        created new with mode 0600 and never through a symbolic link; the final names are taken without replacing
        anything that appeared there (the run then fails and keeps nothing).
    type: path
    required: true
  label:
    description:
      - Name prefix of the backup files and the group that O(keep_last), O(keep_days) and O(reuse_within) work on.
        Defaults to the database name (for SQLite, the file name without extension).
    type: str
  format:
    description:
      - PostgreSQL C(custom) (default; one file, C(pg_restore)), C(directory) (one file per table, allows O(jobs)),
        or C(plain) (SQL). MySQL/MariaDB only has C(plain); SQLite only C(sqlite) (a database file).
        Defaults to the only or best one for the engine.
    type: str
    choices: [custom, directory, plain, sqlite]
  compression:
    description:
      - C(gzip), C(lz4), C(zstd) or C(none).
      - PostgreSQL C(custom)/C(directory) compress inside C(pg_dump). C(lz4) and C(zstd) need a C(pg_dump) 16 or
        later built with them; otherwise the module fails and says what to use (in check mode too). C(plain) and
        the other engines are compressed by the C(gzip)/C(lz4)/C(zstd) tool in the pipeline.
    type: str
    choices: [none, gzip, lz4, zstd]
    default: gzip
  compression_level:
    description:
      - Compression level (gzip and lz4 1-9, zstd 1-19). Default is the tool's.
    type: int
  jobs:
    description:
      - PostgreSQL C(directory) format only. Tables dumped in parallel (C(pg_dump --jobs)).
    type: int
    default: 1
  schema_only:
    description:
      - Dump the schema without the data.
    type: bool
    default: false
  tables:
    description:
      - Back up only these tables (exact names; PostgreSQL C(schema.table) or a name that is in only one schema).
        Not for SQLite.
    type: list
    elements: str
  exclude_tables:
    description:
      - Leave these tables out (same naming as O(tables)).
    type: list
    elements: str
  verify:
    description:
      - C(checksum) re-reads the file and compares it with the sha256 computed while streaming.
      - C(list) also reads the archive through (PostgreSQL C(pg_restore --list), or a plain dump read to its
        completion line; MySQL a parse of the whole dump for its completion line and every CREATE TABLE;
        SQLite C(PRAGMA integrity_check)).
      - C(restore) also restores the backup into a scratch database (named O(scratch_prefix)C(verify_<random>)) on
        the same server, compares the table list and the exact row counts with the source, and drops it.
        On PostgreSQL the source counts are taken in the very snapshot C(pg_dump) uses (C(--snapshot)); on MySQL in
        a consistent snapshot opened just before the dump.
      - Each level includes the ones before it. A backup that fails verification is not kept.
    type: str
    choices: [none, checksum, list, restore]
    default: list
  scratch_prefix:
    description:
      - Prefix of the scratch database used by O(verify=restore).
    type: str
    default: dbops_scratch_
  keep_last:
    description:
      - Retention. Keep the newest N backups of this O(label) in O(dest), remove older ones (oldest first).
      - Only files with this collection's manifest are ever considered; the new backup is always kept.
      - With O(keep_days) too, a backup is kept when either rule keeps it.
    type: int
  keep_days:
    description:
      - Retention. Remove backups of this O(label) older than this many days (fractions allowed).
    type: float
  reuse_within:
    description:
      - When a backup of this O(label) with the same settings, verified at least at the level of O(verify),
        finished less than this long ago and still matches its sha256, return it instead of taking a new one
        (C(changed=false)). Seconds, or a number with a unit C(s), C(m), C(h), C(d), C(w) (C(12h)).
      - This keeps a playbook that starts with "back up first" idempotent.
    type: str
  tool_path:
    description:
      - Directory searched first for the dump tools and compressors (non-default client binaries).
        For PostgreSQL, the bin directory whose C(pg_dump), C(pg_restore) and C(psql) are used.
    type: path
  stall_timeout:
    description:
      - Seconds without progress after which the dump (and the compressor, and the restore of O(verify=restore))
        is stopped. Progress is any byte through the pipe, any byte read or written by one of the pipeline's
        processes, or growth of the directory of the C(directory) format; this is not a limit on a long dump.
      - On a stall every process of the pipeline (with its children) is killed, nothing is kept, and the error
        names the tool, the server's host and port and the phase (dump, compress, verify=restore).
      - A dump waiting for a lock makes no progress either. During O(verify=restore), a statement the server is
        still executing for the restore (an index build) counts as progress. C(0) turns the watchdog off.
    type: float
    default: 300
  preflight:
    description:
      - Run the preflight (RV(preflight)) before the backup in a real run too, not only in check mode; the task fails
        with its findings, before anything is written, when a tool is missing or the estimated dump would not fit
        (O(space_factor), O(min_free)). The preflight and the backup then cost one module run and one connection
        (the maintenance playbook does this instead of a separate check-mode run).
      - Check mode always runs the preflight.
    type: bool
    default: false
  dest_mode:
    description:
      - 'The mode of O(dest), as a string of octal digits (C("0700")), like the I(mode) of C(ansible.builtin.file)
        with C(state=directory): a missing O(dest) is created with it (its missing
        parents C(0700)), and an existing one that has another mode is set to it (reported in RV(dest_mode); in
        check mode nothing is changed, the change is reported). Without it, a missing O(dest) is created C(0700)
        and an existing one is left as it is.'
      - The owner must keep read, write and search (C(u+rwx)), and other users may not write (C(o+w)); the backups
        hold all the data.
    type: str
  space_factor:
    description:
      - Check mode or O(preflight) only (the preflight, RV(preflight)). The dump is estimated at the size of the data
        it would hold times this factor; the backup is refused when the free space of O(dest) (or of its nearest existing
        parent) is less than that estimate plus O(min_free).
      - The data is, for PostgreSQL, the sum of C(pg_table_size()) (heap and TOAST, without indexes, which a dump
        does not hold) of the tables the backup selects; for MySQL/MariaDB the sum of their C(DATA_LENGTH) in
        C(information_schema.TABLES); for SQLite the size of the database file (and its WAL). O(schema_only) counts
        no data.
      - The default C(1.0) errs on the side of refusing (a dump's text is about the size of its data, much smaller
        compressed); a compressed dump of text-heavy tables is often a fifth of that, so C(0.3) is a tighter choice.
    type: float
    default: 1.0
  min_free:
    description:
      - Check mode or O(preflight) only (the preflight). Bytes that must stay free in O(dest) after the estimated dump
        (see O(space_factor)); C(0) = none.
      - A value larger than the file system makes the preflight fail whatever the data, which shows what the
        refusal looks like.
    type: int
    default: 0
extends_documentation_fragment:
  - dbops.maintenance.connection
attributes:
  check_mode:
    support: full
    description: Says which file it would write, which tools it would use and which backups retention would
      remove; writes nothing. Refuses what the real run would refuse before dumping (a compression the
      C(pg_dump) lacks, a missing compressor). Runs the preflight (RV(preflight)), which fails the task when a
      tool is missing or the estimated dump would not fit (O(space_factor), O(min_free)).
  diff_mode:
    support: none
    description: No diff; the result describes what was written.
notes:
  - Progress of a long dump is in C(<dest>/.dbops-tmp-<pid>.<host>-<random>/progress.json) (size, seconds,
    throughput; updated every few seconds; readable by the module user only), for example when the task runs with
    C(async) and is polled; RV(progress) returns the samples and RV(size)/RV(throughput) the final figures.
  - MySQL/MariaDB option file values (user, password, host, socket, TLS files) are written quoted and escaped
    per the option-file grammar (newline, tab, carriage return, backspace, quotes and backslashes escaped), so no
    value can add a line; other control characters, and values longer than an option-file line, are refused with
    a message that names the option, never the value.
  - Backing up the MySQL/MariaDB C(mysql) system database, the dump tool writes only the structure of
    C(general_log), C(slow_log) and C(transaction_registry); the manifest lists them in C(tables_without_data)
    and verification expects them there without rows.
  - The directory format's sha256 is that of the list of its files' sha256 sums (C(pg_dump) writes the files
    itself; they are hashed once it has finished). The SQLite backup is hashed while it streams through the
    compressor.
  - For MySQL the option file given to the tools includes O(config_file) when it exists; tables that are not InnoDB
    get no consistent snapshot (a warning names them).
seealso:
  - module: dbops.maintenance.db_restore
  - module: dbops.maintenance.db_clone
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Back up first (reuses a verified backup of the last 12 hours, so the play stays idempotent)
  dbops.maintenance.db_backup:
    engine: postgresql
    login_host: db1.example.com
    login_user: backup
    login_password: "{{ vault_backup_password }}"
    database: tdp
    dest: /var/backups/dbops
    reuse_within: 12h
    keep_last: 7
  register: backup

- name: Parallel directory dump, restore-verified
  dbops.maintenance.db_backup:
    engine: postgresql
    database: app
    dest: /var/backups/dbops
    format: directory
    jobs: 2
    verify: restore

- name: MariaDB, zstd, without the audit table
  dbops.maintenance.db_backup:
    engine: mysql
    database: shop
    dest: /var/backups/dbops
    compression: zstd
    exclude_tables: [audit_log]
    keep_days: 14

- name: SQLite file while the application writes
  dbops.maintenance.db_backup:
    engine: sqlite
    database: /srv/app/app.db
    dest: /var/backups/dbops

- name: Check the tools and the free space, create the directory 0750 and back up, in one module run
  dbops.maintenance.db_backup:
    engine: postgresql
    database: app
    dest: /var/backups/dbops
    dest_mode: "0750"
    preflight: true
    min_free: "{{ 100 * 1048576 }}"
'''

RETURN = r'''
path:
  description: The backup (a file; a directory for the PostgreSQL directory format).
  returned: success
  type: str
  sample: /var/backups/dbops/tdp-20250101T020000Z.dump
manifest_path:
  description: The manifest beside the backup.
  returned: success
  type: str
manifest:
  description: The manifest (engine, server, database, format, compression, size, sha256, start and end time,
    tools with versions, tables with row estimates, verification done).
  returned: success and not check mode
  type: dict
size:
  description: Size in bytes.
  returned: success and not check mode
  type: int
sha256:
  description: sha256 of the backup, computed while it was written.
  returned: success and not check mode
  type: str
duration:
  description: Seconds the backup took (dump and verification).
  returned: success and not check mode
  type: float
throughput:
  description: Bytes written per second.
  returned: success and not check mode
  type: int
verified:
  description: The verification level reached (none, checksum, list, restore).
  returned: success
  type: str
pruned:
  description: Backups removed (in check mode, that would be removed) by retention.
  returned: success
  type: list
  elements: str
reused:
  description: Whether an existing backup was returned (O(reuse_within)).
  returned: success
  type: bool
progress:
  description: Samples of size and throughput taken while the dump ran (in RV(manifest)).
  returned: in the manifest
  type: list
processes:
  description: On failure (a stall too), each process of the pipeline with its exit status and the end of its
    stderr.
  returned: failure of a dump or restore process
  type: list
  elements: dict
server:
  description: Engine, flavour and version of the server.
  returned: success
  type: dict
dest_mode:
  description:
    - The mode O(dest) had (C(before)) and was set to (C(after), O(dest_mode)); in check mode, the mode it would be
      set to. Only when it differed from O(dest_mode) (not for a O(dest) this run created).
  returned: when O(dest_mode) changed the mode of an existing O(dest)
  type: dict
  sample: {before: '0755', after: '0700'}
preflight:
  description:
    - Check mode, or O(preflight=true). Whether the backup would work here and fit in O(dest). Returned with the
      failure too when it is not C(ok).
    - C(ok); C(tool) and C(tool_version), the dump tool the real run would use (SQLite, the online backup API and
      the SQLite library's version); C(restore_tools), the client tools a restore of this backup needs (PostgreSQL
      C(pg_restore) and C(psql); MySQL/MariaDB C(client)); C(dest) and C(checked_path) (C(dest) or its nearest
      existing parent); C(free_bytes); C(source_bytes), the data the dump would hold; C(space_factor) and
      C(min_free); C(estimated_bytes) (C(source_bytes) x C(space_factor)); C(needed_bytes) (plus C(min_free));
      C(problems), a message for each thing that is not ok.
  returned: check mode, or with O(preflight=true)
  type: dict
  sample:
    ok: true
    tool: /usr/lib/postgresql/15/bin/pg_dump
    tool_version: pg_dump (PostgreSQL) 15.10
    restore_tools: {pg_restore: /usr/lib/postgresql/15/bin/pg_restore, psql: /usr/lib/postgresql/15/bin/psql}
    dest: /var/backups/dbops
    checked_path: /var/backups
    free_bytes: 52613349376
    source_bytes: 1335296
    space_factor: 1.0
    min_free: 0
    estimated_bytes: 1335296
    needed_bytes: 1335296
    problems: []
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import dbops_argument_spec, run_module
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import options as backup_options


def work(module, db):
    # AnsibleModule.exit_json() adds stat() facts of a result's `path` (or `dest`) and overwrites `size` with
    # st_size: 4096 for a directory-format backup, the dest directory's in check mode. The result's size is
    # the backup's total bytes, so the module reports its own keys only.
    module.add_path_info = lambda kwargs: kwargs
    return backup_options.take(module, db)


def main():
    # the options are backup/options.py's: state_check's backup option takes the same
    argument_spec = dbops_argument_spec(changes=False, **backup_options.options())
    run_module(argument_spec, work, maintenance_lock=False)


if __name__ == '__main__':
    main()
