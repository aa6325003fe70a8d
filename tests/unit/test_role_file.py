"""The role_file lookup: the maintenance playbook reads the roles' argument specs and defaults through it, so a copy
of the playbook in an AWX project (the collection installed elsewhere) finds them."""

from __future__ import annotations

import os

import pytest
import yaml
from ansible.errors import AnsibleError

from ansible_collections.dbops.maintenance.plugins.lookup.role_file import ROLES, role_file

REPO_ROLES = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "roles"))


def test_every_role_file_the_playbook_reads_is_found_and_is_the_file():
    assert ROLES == REPO_ROLES
    for term in ("preflight/meta/argument_specs.yml", "schema_fix/meta/argument_specs.yml",
                 "migration_repair/meta/argument_specs.yml", "verify/meta/argument_specs.yml",
                 "schema_fix/defaults/main.yml", "migration_repair/defaults/main.yml", "verify/defaults/main.yml"):
        text = role_file(term)
        with open(os.path.join(REPO_ROLES, term), encoding="utf-8") as f:
            assert text == f.read()
        assert yaml.safe_load(text)


@pytest.mark.parametrize("term", ["../galaxy.yml", "verify/../../galaxy.yml", "/etc/passwd", "verify/tasks/main.yml",
                                  "verify/meta/argument_specs.yml\n", "Verify/defaults/main.yml", "", None, 3])
def test_anything_but_a_role_spec_or_defaults_is_refused(term):
    with pytest.raises(AnsibleError, match="is not ROLE/meta/argument_specs.yml"):
        role_file(term)


def test_an_unknown_role_names_the_roles_there_are():
    with pytest.raises(AnsibleError, match="no file nosuchrole/defaults/main.yml .*verify"):
        role_file("nosuchrole/defaults/main.yml")
