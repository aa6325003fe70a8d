#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: db_restore
short_description: Restore a backup taken by db_backup, after checking it against its manifest
version_added: 0.2.0
description:
  - Restores a backup of M(dbops.maintenance.db_backup) (given by its manifest or its file) into O(database),
    by default the database it came from.
  - B(Everything is checked before anything is touched) - every field of the manifest (engine, format and
    compression from fixed lists; C(file) a plain name beside the manifest, not a symbolic link; sizes integers;
    C(sha256) hex; the table list's shape; C(database_facts) names looked up in the server's catalog and quoted),
    the backup's size and sha256, the decompressor, the target, and the free space for the side copy. A failed
    check changes nothing.
  - The target must not exist or be B(empty) - no user objects at all (PostgreSQL - tables, views, materialized
    views, sequences, foreign tables, composite/enum/domain/range types, functions, event triggers, schemas
    other than C(public), extensions other than C(plpgsql); MySQL - tables, views, triggers, routines, events;
    SQLite - tables, views, triggers, indexes) - unless O(replace=true).
  - B(The target is never lost.) The backup is restored into a side database C(dbops_restore_<target>_<time>)
    (cut to 63 bytes on PostgreSQL, 64 on MySQL, with a hash of the cut name), or for SQLite into a private 0600
    file created with O_EXCL beside the target. The side copy is checked - exactly the manifest's tables, and
    its exact row counts when the manifest records them (backups taken with C(verify=restore)). Only then is it
    swapped in. A failure at any stage drops the side copy and leaves the target as it was.
  - B(PostgreSQL swap), from the maintenance database - the side database gets the target's database-level
    properties (owner, GRANTs on the database, C(ALTER DATABASE/ROLE ... IN DATABASE ... SET) settings, comment,
    connection limit); C(ALTER DATABASE target ALLOW_CONNECTIONS false); its sessions are terminated
    (C(pg_terminate_backend)) until none is left; C(ALTER DATABASE target RENAME TO <target>_dbops_replaced_<time>);
    C(ALTER DATABASE side RENAME TO target); C(ALLOW_CONNECTIONS) as before. A failure renames back and allows
    connections again. The tablespace is not carried over (the side database is created in the default one).
  - B(MySQL/MariaDB swap) - other sessions on the target make the module refuse (stop the application first). The
    schema C(<target>_dbops_replaced_<time>) is created, then one atomic C(RENAME TABLE target.a TO replaced.a, ...,
    side.a TO target.a, ...) moves every table at once. Views, triggers, routines and events cannot move between
    schemas - they are recreated from their definitions (C(SHOW CREATE ...), with their C(sql_mode)). B(The window) -
    the target's triggers are dropped just before the C(RENAME TABLE) and the backup's are created right after
    it, followed by its views, routines and events; a write in that short window fires no trigger, and a view or
    routine may briefly be missing. A failure renames the tables back and recreates what was dropped.
  - B(SQLite swap) - the replaced file is first copied (backup API) to C(<target>_dbops_replaced_<time>) with the
    same owner and mode, then the checked file is copied into the live file with the backup API in one
    transaction, so the target keeps its inode, owner and mode, and open connections see the new content.
  - The replaced database is kept (O(keep_replaced)) and returned as RV(replaced). It is marked as this
    collection's (PostgreSQL - its COMMENT, a JSON document that keeps the original comment; MariaDB 10.5+ - its
    schema comment, else a C(dbops_marker) table; SQLite - a C(<file>.dbops.json) side record naming its inode).
    O(keep_replaced_last) removes older replaced copies of the same target, and only those that carry the marker.
  - B(Free space) for the side copy - SQLite - C(statvfs) of the target's directory against the expanded backup
    (its size uncompressed, 4 to 6 times it compressed, an estimate), the kept replaced copy and the journal of
    the write into the live file (each up to the target's size). PostgreSQL and MySQL - only when the server
    runs on this host and tells its data directory (C(data_directory), C(@@datadir)) - the same estimate or the
    target's current size, whichever is larger, against that file system; otherwise nothing can be known from
    here and RV(space) says it was not checked (PostgreSQL's size of a database is known remotely, free space on
    its file system is not). The estimate there is the backup's size times 2 (plain, custom) or 4 to 6
    (compressed plain dumps).
  - In check mode, lists the steps it would take (RV(steps)) and touches nothing.
  - For tests only - the environment variable C(DBOPS_TEST_FAIL_AT) (C(side_restored), C(checked), C(properties),
    C(between_renames), C(swapped)) makes the module fail at that stage; it is read only when set.
  - Returns the tables and exact row counts after the restore.
options:
  backup:
    description:
      - The manifest (C(*.manifest.json)) or the backup file/directory beside it. The RV(dbops.maintenance.db_backup#module:manifest_path)
        or RV(dbops.maintenance.db_backup#module:path) of M(dbops.maintenance.db_backup).
    type: path
    required: true
  database:
    description:
      - The database to restore into. Defaults to the one the backup came from. For SQLite, the target file (its
        directory must exist; a symbolic link must point to an existing file).
    type: str
    required: false
    aliases: [db, target]
  format:
    description:
      - When set, the backup must have this format (a guard for playbooks).
    type: str
    choices: [custom, directory, plain, sqlite]
  replace:
    description:
      - Replace a target that exists and is not empty (through the side database, see above).
    type: bool
    default: false
  keep_replaced:
    description:
      - Keep the replaced database as C(<target>_dbops_replaced_<time>). With V(false) it is dropped once the
        restored one is in place.
    type: bool
    default: true
  keep_replaced_last:
    description:
      - After a replace, keep only this many replaced copies of this target (the one just made included) and
        drop older ones - only copies this collection made and marked. Unset - keep them all (they are the way
        back after a bad restore; remove them when you no longer need them).
    type: int
  jobs:
    description:
      - PostgreSQL directory format only. Parallel C(pg_restore) jobs (without C(--single-transaction)).
    type: int
    default: 1
  no_owner:
    description:
      - PostgreSQL. Do not restore ownership and privileges (C(--no-owner --no-privileges)), for a server that
        lacks the source's roles.
    type: bool
    default: false
  tool_path:
    description:
      - Directory searched first for the client tools and decompressors.
    type: path
  stall_timeout:
    description:
      - Seconds without progress after which the restore into the side database is stopped. Progress is any byte through the pipe, any
        byte read or written by one of the pipeline's processes, or a statement the server is still executing for
        it (an index build); this is not a limit on a long restore.
      - On a stall every process of the pipeline (with its children) is killed, the error names the tool, the
        server's host and port and the phase, and the side database is dropped, so the target is left as it was. C(0) turns the watchdog off.
    type: float
    default: 300
extends_documentation_fragment:
  - dbops.maintenance.connection
  - dbops.maintenance.connection.safety
attributes:
  check_mode:
    support: full
    description: Checks the sha256, the engine, the format and the target, and says what it would do.
  diff_mode:
    support: none
    description: No diff; the result describes what was written.
seealso:
  - module: dbops.maintenance.db_backup
  - module: dbops.maintenance.db_clone
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Roll back to the backup taken at the start of the play
  dbops.maintenance.db_restore:
    engine: postgresql
    login_host: db1.example.com
    login_user: ops
    login_password: "{{ vault_ops_password }}"
    backup: "{{ backup.manifest_path }}"
    replace: true

- name: Roll back, keeping only the two newest replaced copies of shop
  dbops.maintenance.db_restore:
    engine: postgresql
    backup: "{{ backup.manifest_path }}"
    database: shop
    replace: true
    keep_replaced_last: 2
  register: restored

- name: Say where the replaced database went
  ansible.builtin.debug:
    msg: "The database before the rollback is kept as {{ restored.replaced }}"

- name: Restore into a new database to look at it
  dbops.maintenance.db_restore:
    engine: mysql
    backup: /var/backups/dbops/shop-20250101T020000Z.sql.zst
    database: shop_restored
'''

RETURN = r'''
database:
  description: The database (SQLite, file) restored into.
  returned: always
  type: str
backup:
  description: The backup file restored.
  returned: always
  type: str
replaced:
  description:
    - The name of the replaced database (SQLite, file) kept as C(<target>_dbops_replaced_<time>), or null when
      nothing was replaced or O(keep_replaced=false). In check mode, the name it would get.
  returned: success
  type: str
  sample: shop_dbops_replaced_20250101T020000Z
pruned_replaced:
  description: Older replaced copies removed by O(keep_replaced_last).
  returned: after a replace
  type: list
  elements: str
steps:
  description: The steps of the restore (in check mode, the steps it would take).
  returned: success
  type: list
  elements: str
space:
  description: The free-space check for the side copy (checked, directory, needed, free) or why it was not made.
  returned: success
  type: dict
queries:
  description: The statements that ran on the server (PostgreSQL, MySQL).
  returned: success and not check mode
  type: list
  elements: str
tables:
  description: Tables after the restore with their exact row counts.
  returned: success and not check mode
  type: list
  elements: dict
  sample: [{name: public.orders, rows: 1000}]
row_counts:
  description: The same as a mapping table -> rows.
  returned: success and not check mode
  type: dict
duration:
  description: Seconds the restore took (including the sha256 check).
  returned: success and not check mode
  type: float
processes:
  description: On failure, each process with its exit status and the end of its stderr.
  returned: failure of a restore process
  type: list
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    connection_argument_spec, run_module, safety_argument_spec, validate_safety,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import (
    Interrupted, install_signal_handlers,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.restore import Restore
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError


def validate(module):
    validate_safety(module)
    if module.params['keep_replaced_last'] is not None and module.params['keep_replaced_last'] < 1:
        module.fail_json(msg='keep_replaced_last must be 1 or more (the copy just replaced is always kept).')
    if module.params['stall_timeout'] is not None and module.params['stall_timeout'] < 0:
        module.fail_json(msg='stall_timeout must be 0 (no watchdog) or more seconds.')


def work(module, _db):
    try:
        return Restore(module).run()
    except Interrupted as e:
        raise DbopsError('The restore was interrupted (%s).' % e)


def main():
    spec = connection_argument_spec()
    spec.update(safety_argument_spec())
    spec['database'] = dict(type='str', aliases=['db', 'target'])
    spec.update(
        backup=dict(type='path', required=True),
        format=dict(type='str', choices=['custom', 'directory', 'plain', 'sqlite']),
        replace=dict(type='bool', default=False),
        keep_replaced=dict(type='bool', default=True),
        keep_replaced_last=dict(type='int'),
        jobs=dict(type='int', default=1),
        no_owner=dict(type='bool', default=False),
        tool_path=dict(type='path'),
        stall_timeout=dict(type='float', default=300.0),
    )
    install_signal_handlers()
    run_module(spec, work, validate=validate, connect=False)


if __name__ == '__main__':
    main()
