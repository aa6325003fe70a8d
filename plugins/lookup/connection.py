# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flat dbops_* connection variables as module arguments, for module_defaults."""

from __future__ import annotations

DOCUMENTATION = r'''
name: connection
author: dbops.maintenance engineers (@dbops)
short_description: The dbops_* connection variables of a host as dbops.maintenance module arguments
version_added: 0.3.0
description:
  - Reads the flat connection variables a host has (from inventory, group_vars, host_vars, Ansible Vault,
    an AWX credential or survey) and returns them as a dictionary of module arguments, with the variables
    that are not set left out, so the modules' own defaults apply.
  - Meant for C(module_defaults) of the C(group/dbops.maintenance.all) action group, which is how every role
    of this collection connects. Only connection options are returned, because every module of the group
    accepts them; safety options (O(dbops.maintenance.enum_add#module:lock_timeout) and the like) are passed
    by the tasks of the modules that change something.
  - 'Variables read, each mapped to the module option of the same name without the C(dbops_) prefix:
    C(dbops_engine), C(dbops_login_host), C(dbops_login_port), C(dbops_login_user), C(dbops_login_password),
    C(dbops_login_unix_socket), C(dbops_config_file), C(dbops_database), C(dbops_connect_timeout),
    C(dbops_ssl_mode), C(dbops_ca_cert), C(dbops_client_cert), C(dbops_client_key).'
  - C(dbops_engine) and C(dbops_database) are required; a missing one fails with the name of the variable to set.
options:
  _terms:
    description: Not used; give none.
    required: false
  database:
    description:
      - Use this database instead of C(dbops_database), for example a scratch copy during a rehearsal.
    type: str
notes:
  - The password is returned like any other value; the modules mark O(dbops.maintenance.db_verify#module:login_password)
    as C(no_log), so it is masked in their results. Do not print this lookup's result.
seealso:
  - module: dbops.maintenance.db_verify
'''

EXAMPLES = r'''
- name: Every dbops.maintenance module in this block connects with the host's dbops_* variables
  module_defaults:
    group/dbops.maintenance.all: "{{ lookup('dbops.maintenance.connection') }}"
  block:
    - name: Check the database
      dbops.maintenance.db_verify:
        tables_min: 1

- name: The same connection, to a scratch copy
  dbops.maintenance.db_verify:
    tables_min: 1
  module_defaults:
    group/dbops.maintenance.all: "{{ lookup('dbops.maintenance.connection', database='dbops_scratch_app') }}"
'''

RETURN = r'''
_raw:
  description: One dictionary of module arguments (C(engine), C(database) and whichever connection options are set).
  type: list
  elements: dict
'''

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.dbops.maintenance.plugins.plugin_utils.host_vars import getter

# variable -> module option; the order is the order of the docs above.
CONNECTION_VARS = (
    'engine', 'login_host', 'login_port', 'login_user', 'login_password', 'login_unix_socket',
    'config_file', 'database', 'connect_timeout', 'ssl_mode', 'ca_cert', 'client_cert', 'client_key',
)
REQUIRED = ('engine', 'database')


def connection_args(get, database=None):
    """Module arguments from ``get(variable_name)`` (returns None when unset)."""
    args = {}
    for option in CONNECTION_VARS:
        value = get('dbops_' + option)
        if value is None or (isinstance(value, str) and value == ''):
            continue
        args[option] = value
    if database not in (None, ''):
        args['database'] = database
    missing = ['dbops_' + o for o in REQUIRED if o not in args]
    if missing:
        raise AnsibleError(
            'dbops.maintenance: set %s for this host (inventory, group_vars or extra vars): the roles and playbooks '
            'connect with the dbops_* variables' % ' and '.join(missing))
    return args


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleError('lookup dbops.maintenance.connection takes no terms, only database=')
        self.set_options(var_options=variables, direct=kwargs)
        get = getter(self._templar, variables)
        return [connection_args(get, self.get_option('database'))]
