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
  - Refuses, changing nothing, when the backup's sha256 no longer matches its manifest, when the backup's engine
    or format is not the task's, or when the target database exists and is not empty (unless O(replace=true)).
  - With O(replace=true) the target is dropped and recreated, holding the collection's maintenance lock on it;
    other sessions connected to it make the module refuse (stop the application first).
  - PostgreSQL restores stop at the first error (C(pg_restore --exit-on-error --single-transaction), or
    C(psql ON_ERROR_STOP) in one transaction for plain dumps), so a failed restore keeps nothing. MySQL/MariaDB
    restores stop at the first error (the client in batch mode); a failed restore empties the target again.
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
      - The database to restore into. Defaults to the one the backup came from. For SQLite, the target file.
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
      - Drop and recreate a target that exists and is not empty.
    type: bool
    default: false
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
  description: Whether an existing non-empty database was dropped and recreated.
  returned: success
  type: bool
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    connection_argument_spec, safety_argument_spec, validate_safety,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import (
    Interrupted, install_signal_handlers,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.restore import Restore
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError


def main():
    spec = connection_argument_spec()
    spec.update(safety_argument_spec())
    spec['database'] = dict(type='str', aliases=['db', 'target'])
    spec.update(
        backup=dict(type='path', required=True),
        format=dict(type='str', choices=['custom', 'directory', 'plain', 'sqlite']),
        replace=dict(type='bool', default=False),
        jobs=dict(type='int', default=1),
        no_owner=dict(type='bool', default=False),
        tool_path=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    validate_safety(module)
    install_signal_handlers()
    secret = module.params.get('login_password')
    try:
        result = Restore(module).run()
    except Interrupted as e:
        module.fail_json(msg='The restore was interrupted (%s).' % e)
    except DbopsError as e:
        msg = str(e).replace(secret, '********') if secret else str(e)
        module.fail_json(msg=msg, **e.details)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
