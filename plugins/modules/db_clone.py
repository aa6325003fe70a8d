#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: db_clone
short_description: Make (or drop) a scratch copy of a database on the same server
version_added: 0.2.0
description:
  - Creates O(name), a copy of O(database) on the same server, for rehearsing a change.
  - B(PostgreSQL) streams C(pg_dump --format=custom) into C(pg_restore --single-transaction --exit-on-error)
    (C(CREATE DATABASE ... TEMPLATE) would need the source to have no other sessions). B(MySQL/MariaDB) streams
    the dump tool into the client. B(SQLite) copies the file with the online backup API; O(name) is then the path
    of the new file.
  - Only names that start with O(scratch_prefix) are created or dropped, and O(state=absent) B(drops only a copy
    that db_clone itself created), whatever O(scratch_prefix) says - the copy is marked when it is created
    (PostgreSQL - C(COMMENT ON DATABASE) with a C(dbops.maintenance) JSON marker; MariaDB 10.5+ - the schema
    comment, older servers and MySQL - a C(dbops_marker) table in the copy; SQLite - a C(<file>.dbops.json) side
    record naming the file's inode, so a file put in its place is not taken for it). A database without the
    marker is refused, nothing changed; a copy made by an older version has none - drop it by hand. A failed
    copy is dropped again.
  - A SQLite copy is created with O_EXCL under an unpredictable temporary name, with the source's mode (0600
    from the start for a 0600 source) and, when run as root, its owner. A dangling symbolic link or a missing
    directory as O(name) is a clear error.
  - An existing copy is left alone (C(changed=false)); drop it with O(state=absent) for a fresh one.
options:
  name:
    description:
      - The scratch copy. Must start with O(scratch_prefix). For SQLite, a file path whose file name starts with it.
    type: str
    required: true
  state:
    description:
      - C(present) creates the copy when it does not exist; C(absent) drops it (PostgreSQL 13+ ends its sessions).
    type: str
    choices: [present, absent]
    default: present
  schema_only:
    description:
      - Copy the schema without the data.
    type: bool
    default: false
  scratch_prefix:
    description:
      - The prefix that marks scratch copies.
    type: str
    default: dbops_scratch_
  no_owner:
    description:
      - PostgreSQL. Do not copy ownership and privileges.
    type: bool
    default: false
  tool_path:
    description:
      - Directory searched first for the client tools.
    type: path
  stall_timeout:
    description:
      - Seconds without progress after which the copy is stopped. Progress is any byte through the pipe, any
        byte read or written by one of the pipeline's processes, or a statement the server is still executing for
        it (an index build); this is not a limit on a long copy.
      - On a stall every process of the pipeline (with its children) is killed, the error names the tool, the
        server's host and port and the phase, and the half-made clone is dropped. C(0) turns the watchdog off.
    type: float
    default: 300
extends_documentation_fragment:
  - dbops.maintenance.connection
attributes:
  check_mode:
    support: full
    description: Says whether it would create or drop the copy; changes nothing.
  diff_mode:
    support: none
    description: No diff; the result describes what was written.
seealso:
  - module: dbops.maintenance.db_backup
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Rehearse the migration on a copy
  dbops.maintenance.db_clone:
    engine: postgresql
    database: tdp
    name: dbops_scratch_tdp

- name: Drop the copy afterwards
  dbops.maintenance.db_clone:
    engine: postgresql
    database: tdp
    name: dbops_scratch_tdp
    state: absent
'''

RETURN = r'''
name:
  description: The scratch copy.
  returned: always
  type: str
tables:
  description: Tables of the new copy with their exact row counts.
  returned: when a copy was made
  type: list
  elements: dict
duration:
  description: Seconds the copy took.
  returned: when a copy was made
  type: float
processes:
  description: On failure, each process with its exit status and the end of its stderr.
  returned: failure of a copy process
  type: list
'''

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import dbops_argument_spec, run_module
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import install_signal_handlers
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.clone import Clone


def validate(module):
    if module.params['stall_timeout'] is not None and module.params['stall_timeout'] < 0:
        module.fail_json(msg='stall_timeout must be 0 (no watchdog) or more seconds.')


def main():
    argument_spec = dbops_argument_spec(
        changes=False,
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        schema_only=dict(type='bool', default=False),
        scratch_prefix=dict(type='str', default='dbops_scratch_'),
        no_owner=dict(type='bool', default=False),
        tool_path=dict(type='path'),
        stall_timeout=dict(type='float', default=300.0),
    )
    install_signal_handlers()
    run_module(argument_spec, lambda module, db: Clone(module, db).run(), validate=validate, maintenance_lock=False)


if __name__ == '__main__':
    main()
