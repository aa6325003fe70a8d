# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup's own options (beside the connection), and the one way to take a backup in a module run:
db_backup itself, and state_check's O(backup) (the maintenance playbook's first run takes its backup in the
run that found the host not in its desired state)."""

from __future__ import annotations

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import ModuleView
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import (
    Interrupted, install_signal_handlers,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError


def options():
    """The options of db_backup that are not the connection's."""
    return dict(
        dest=dict(type='path', required=True),
        label=dict(type='str'),
        format=dict(type='str', choices=['custom', 'directory', 'plain', 'sqlite']),
        compression=dict(type='str', default='gzip', choices=['none', 'gzip', 'lz4', 'zstd']),
        compression_level=dict(type='int'),
        jobs=dict(type='int', default=1),
        schema_only=dict(type='bool', default=False),
        tables=dict(type='list', elements='str'),
        exclude_tables=dict(type='list', elements='str'),
        verify=dict(type='str', default='list', choices=['none', 'checksum', 'list', 'restore']),
        scratch_prefix=dict(type='str', default='dbops_scratch_'),
        keep_last=dict(type='int', no_log=False),
        keep_days=dict(type='float', no_log=False),
        reuse_within=dict(type='str'),
        tool_path=dict(type='path'),
        stall_timeout=dict(type='float', default=300.0),
        preflight=dict(type='bool', default=False),
        dest_mode=dict(type='str'),
        space_factor=dict(type='float', default=1.0),
        min_free=dict(type='int', default=0),
    )


def validated(given, option='backup'):
    """db_backup's options from a dictionary given to another module (state_check's O(backup)), validated and
    defaulted by db_backup's own spec; ValueError says what is wrong."""
    if not isinstance(given, dict):
        raise ValueError('%s must be a dictionary of db_backup options, got %s' % (option, type(given).__name__))
    result = ArgumentSpecValidator(options()).validate(dict(given))
    if result.error_messages:
        raise ValueError('%s: %s (the options of db_backup)' % (option, '; '.join(result.error_messages)))
    return result.validated_parameters


def take(module, db, params=None):
    """db_backup's whole run: the preflight when asked (tools, free space: nothing is written when it fails),
    the dump, its verification and the retention. params: db_backup's options when the module is not
    db_backup (the connection stays the module's). Returns db_backup's result."""
    # pylint: disable=import-outside-toplevel
    from ansible_collections.dbops.maintenance.plugins.module_utils.backup.preflight import check as preflight_check
    from ansible_collections.dbops.maintenance.plugins.module_utils.backup.runner import Backup
    view = module if params is None else ModuleView(module, **params)
    # everything the backup creates, and what its tools create (pg_dump's directory-format files, SQLite's
    # journal), is private from its creation: 0600 files, 0700 directories
    os.umask(0o077)
    install_signal_handlers()
    job = Backup(view, db)
    try:
        # check mode: will it work here and fit (tools, free space against an estimate of the dump)? A failing
        # preflight fails the task with its findings, before anything else is planned.
        # preflight=true: the same before a real backup, in this run (nothing is written when it fails)
        found = preflight_check(view, db, job.tools) if view.check_mode or view.params['preflight'] else None
        result = job.run()
        if found is not None:
            result['preflight'] = found
        return result
    except Interrupted as e:
        raise DbopsError('The backup was interrupted (%s); its temporary file was removed, nothing was kept.' % e)
    finally:
        job.tools.cleanup()
