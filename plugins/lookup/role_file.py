# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A file of one of this collection's roles (argument specs, defaults), wherever the collection is installed."""

from __future__ import annotations

DOCUMENTATION = r'''
name: role_file
author: dbops.maintenance engineers (@dbops)
short_description: The text of a file of one of this collection's roles
version_added: 0.3.0
description:
  - Returns the text of C(meta/argument_specs.yml) or C(defaults/main.yml) of a role of this collection, read from
    the installed collection itself (the C(roles/) directory beside this plugin), not from the playbook's directory.
  - The maintenance playbook uses it to validate the roles' argument specs and read their defaults once at the play's
    start (its fast path includes no role). A copy of the playbook in a project (for example an AWX project, with the
    collection installed from a requirements file) finds the same files, which a path relative to C(playbook_dir)
    does not.
options:
  _terms:
    description:
      - C(ROLE/meta/argument_specs.yml) or C(ROLE/defaults/main.yml), ROLE one of the collection's roles.
    required: true
    type: list
    elements: str
seealso:
  - plugin: dbops.maintenance.connection
    plugin_type: lookup
'''

EXAMPLES = r'''
- name: The verify role's options, as its argument spec declares them
  ansible.builtin.debug:
    msg: "{{ (lookup('dbops.maintenance.role_file', 'verify/meta/argument_specs.yml') | from_yaml).argument_specs.main.options | list }}"
'''

RETURN = r'''
_raw:
  description: The text of each file, in the order of the terms.
  type: list
  elements: str
'''

import os
import re

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

ROLES = os.path.realpath(os.path.join(os.path.dirname(os.path.realpath(__file__)), '..', '..', 'roles'))
TERM = re.compile(r'\A([a-z][a-z0-9_]*)/(meta/argument_specs\.yml|defaults/main\.yml)\Z')


def role_file(term):
    """The text of one role file; term as in the docs (anything else is refused, nothing outside roles/ is read)."""
    if not isinstance(term, str) or not TERM.match(term):
        raise AnsibleError('dbops.maintenance.role_file: %r is not ROLE/meta/argument_specs.yml or '
                           'ROLE/defaults/main.yml (ROLE: one of the roles in %s).' % (term, ROLES))
    path = os.path.realpath(os.path.join(ROLES, term))
    if os.path.commonpath([path, ROLES]) != ROLES or not os.path.isfile(path):
        roles = sorted(d for d in os.listdir(ROLES) if os.path.isdir(os.path.join(ROLES, d))) if os.path.isdir(ROLES) else []
        raise AnsibleError('dbops.maintenance.role_file: no file %s in the collection (roles: %s).'
                           % (term, ', '.join(roles) or 'none found in %s' % ROLES))
    with open(path, encoding='utf-8') as f:
        return f.read()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        return [role_file(t) for t in terms]
