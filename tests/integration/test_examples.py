"""The examples operators copy: the multi-tenant inventory (one host per tenant database on one server) parses as
the playbooks read it, and the AWX export names playbooks and variables that exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_multi_tenant_inventory_one_host_per_tenant_database(tmp_path):
    vault_pass = tmp_path / "vault-pass"
    vault_pass.write_text("dbops-example\n")
    os.chmod(vault_pass, 0o600)
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(REPO / "examples" / "multi_tenant"), "--list",
                          "--vault-password-file", str(vault_pass)],
                         capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path).stdout
    inv = json.loads(out)
    hostvars = inv["_meta"]["hostvars"]
    tenants = sorted(inv["tenants"]["hosts"])
    assert len(tenants) == 5 and inv["canary"]["hosts"] == ["tenant-internal"], inv
    assert "tenants" in inv["dbops_databases"]["children"]
    databases = [hostvars[h]["dbops_database"] for h in tenants]
    assert len(set(databases)) == len(databases), databases
    # one server: the same host and login for every tenant; the password comes from the vault
    assert {(hostvars[h]["ansible_host"], hostvars[h]["dbops_login_host"]) for h in tenants} == {
        ("db-tenants-1.example.com", "127.0.0.1")}
    assert all(hostvars[h]["dbops_migration_tool"] == "prisma" for h in tenants)
    assert all("vault_dbops_tenants_password" in hostvars[h] for h in tenants)


def test_awx_export_names_playbooks_and_variables_that_exist():
    export = yaml.safe_load((REPO / "examples" / "awx" / "dbops_maintenance_workflow.yml").read_text())
    templates = {t["name"]: t for t in export["job_templates"]}
    for t in templates.values():
        assert (REPO / t["playbook"]).is_file(), t["playbook"]
    deploy = templates["dbops migration deploy"]
    assert deploy["playbook"] == "playbooks/migration_deploy.yml" and deploy["job_slice_count"] == 1
    known = (REPO / "playbooks" / "migration_deploy.yml").read_text() + \
        (REPO / "roles" / "migration_deploy" / "meta" / "argument_specs.yml").read_text()
    asked = [q["variable"] for q in deploy["related"]["survey_spec"]["spec"]]
    assert asked and all(v in known for v in asked), asked
    extra = yaml.safe_load(deploy["extra_vars"])
    assert all(k in known for k in extra), extra
    tools = next(q for q in deploy["related"]["survey_spec"]["spec"] if q["variable"] == "dbops_migration_tool")
    spec = yaml.safe_load((REPO / "roles" / "migration_deploy" / "meta" / "argument_specs.yml").read_text())
    assert set(tools["choices"]) == set(spec["argument_specs"]["main"]["options"]["dbops_migration_tool"]["choices"])
