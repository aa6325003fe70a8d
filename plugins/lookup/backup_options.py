# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup role's variables as db_backup's options: one mapping, for the role's own task and for the
maintenance playbook's state_check (which takes the backup in its run on a first run)."""

from __future__ import annotations

DOCUMENTATION = r'''
name: backup_options
author: dbops.maintenance engineers (@dbops)
short_description: The backup role's variables of a host as the options of dbops.maintenance.db_backup
version_added: 0.3.0
description:
  - Reads the backup role's variables a host has (C(dbops_backup_dir), C(dbops_backup_dir_mode),
    C(dbops_backup_preflight), C(dbops_backup_label), C(dbops_backup_format), C(dbops_backup_compression),
    C(dbops_backup_jobs), C(dbops_backup_verify), C(dbops_backup_keep_last), C(dbops_backup_keep_days),
    C(dbops_backup_reuse_within), C(dbops_tool_path), and the preflight role's C(dbops_preflight_space_factor)
    and C(dbops_preflight_min_free_mb)) and returns them as the options of M(dbops.maintenance.db_backup).
    A variable that is not set takes the backup role's default (C(roles/backup/defaults/main.yml)), or the
    preflight role's for the two space variables, so the result is the same inside the roles and outside them.
  - An empty (or zero) label, format, compression, retention, reuse or tool path is left out, so the module's
    own default applies; C(jobs) is passed only with the C(directory) format; C(min_free) is the megabytes of
    C(dbops_preflight_min_free_mb) in bytes.
  - The backup role's task takes its backup with these options (through C(module_defaults)), and the maintenance
    playbook passes them as O(dbops.maintenance.state_check#module:backup), so the backup taken in state_check's
    run on a first run is the one the role would take.
options:
  _terms:
    description: Not used; give none.
    required: false
seealso:
  - module: dbops.maintenance.db_backup
  - module: dbops.maintenance.state_check
'''

EXAMPLES = r'''
- name: Back up with the backup role's variables
  dbops.maintenance.db_backup: {}
  module_defaults:
    group/dbops.maintenance.all: "{{ lookup('dbops.maintenance.connection') }}"
    dbops.maintenance.db_backup: "{{ lookup('dbops.maintenance.backup_options') }}"
'''

RETURN = r'''
_raw:
  description: One dictionary of db_backup options.
  type: list
  elements: dict
'''

import yaml

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.dbops.maintenance.plugins.lookup.role_file import role_file
from ansible_collections.dbops.maintenance.plugins.plugin_utils.host_vars import getter

# option, variable (unset: the role's default)
PASSED = (
    ('dest', 'dbops_backup_dir'),
    ('dest_mode', 'dbops_backup_dir_mode'),
    ('preflight', 'dbops_backup_preflight'),
    ('verify', 'dbops_backup_verify'),
)
# left out when empty or zero (the module's default applies)
OPTIONAL = (
    ('label', 'dbops_backup_label'),
    ('format', 'dbops_backup_format'),
    ('compression', 'dbops_backup_compression'),
    ('keep_last', 'dbops_backup_keep_last'),
    ('keep_days', 'dbops_backup_keep_days'),
    ('reuse_within', 'dbops_backup_reuse_within'),
    ('tool_path', 'dbops_tool_path'),
)


def role_defaults():
    """The backup role's defaults, and the preflight role's (its space variables), from the roles' files."""
    defaults = {}
    for term in ('preflight/defaults/main.yml', 'backup/defaults/main.yml'):
        defaults.update(yaml.safe_load(role_file(term)) or {})
    return defaults


def backup_options(get, defaults):
    """db_backup's options from ``get(variable_name)`` (None when unset) and the role's defaults."""
    def value(name):
        v = get(name)
        return defaults.get(name) if v is None else v

    args = dict((option, value(var)) for option, var in PASSED)
    for option, var in OPTIONAL:
        v = value(var)
        if v not in (None, '', 0):
            args[option] = v
    if args.get('format') == 'directory':
        args['jobs'] = value('dbops_backup_jobs')
    args['space_factor'] = value('dbops_preflight_space_factor')
    mb = value('dbops_preflight_min_free_mb')
    try:
        args['min_free'] = int(mb) * 1048576
    except (TypeError, ValueError):
        raise AnsibleError('dbops_preflight_min_free_mb must be a whole number of megabytes, not %r' % (mb,))
    return args


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleError('lookup dbops.maintenance.backup_options takes no terms')
        self.set_options(var_options=variables, direct=kwargs)
        get = getter(self._templar, variables)
        return [backup_options(get, role_defaults())]
