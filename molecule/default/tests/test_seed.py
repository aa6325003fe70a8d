"""The default scenario (the smoke test of the fleet): the fleet exists as create.yml promises, with its seed schema."""

import ipaddress
import os
import stat

import pytest

# testinfra: these tests get the ssh host (pg15b) through the ansible inventory.
testinfra_hosts = ["ansible://dbops_ssh"]


def test_fleet_shape(fleet):
    assert len(fleet.names("postgresql")) >= 3
    assert {fleet.host(n)["kind"] for n in fleet.names("postgresql")} == {"pg15", "pg16"}
    assert len(fleet.names("mysql")) >= 2
    assert len(fleet.names("sqlite")) >= 1
    assert fleet.names(connection="ssh"), "one host is reached over ssh"
    addresses = [h["address"] for h in fleet.hosts.values()]
    assert len(set(addresses)) == len(addresses), "each host has its own address"
    for name in fleet.names():
        h = fleet.host(name)
        assert ipaddress.ip_address(h["address"]) in ipaddress.ip_network("127.0.0.0/8")
        if h["engine"] != "sqlite":
            assert h["login_host"] == h["address"]


def test_password_only_in_private_file(fleet):
    name = fleet.names("postgresql")[0]
    path = fleet.host(name)["password_file"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    password = fleet.password(name)
    assert len(password) >= 24
    inventory = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory", "dbops_fleet.yml")
    with open(inventory, encoding="utf-8") as f:
        assert password not in f.read()
    with open(os.path.join(fleet.data["servers_state"], "servers.json"), encoding="utf-8") as f:
        assert password not in f.read()


@pytest.mark.parametrize("kind,pattern", [("pg15", "PostgreSQL 15."), ("pg16", "PostgreSQL 16.")])
def test_postgresql_versions(fleet, query, kind, pattern):
    names = fleet.names(kind=kind)
    assert names
    for name in names:
        (version,), = query(name, "SELECT version()")
        assert version.startswith(pattern), (name, version)


def test_postgresql_seed(fleet, query):
    for name in fleet.names("postgresql"):
        labels = [r[0] for r in query(name, "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                            "WHERE t.typname = 'CredentialType' ORDER BY e.enumsortorder")]
        assert labels == ["API_KEY", "COOKIE", "OAUTH_TOKEN"], name
        assert "PERSONAL_ACCESS_TOKEN" not in labels
        assert query(name, 'SELECT count(*) FROM "ExternalCredential"') == [(3,)], name


def test_mariadb_seed(fleet, query):
    for name in fleet.names("mysql"):
        (version,), = query(name, "SELECT VERSION()")
        assert "MariaDB" in version and version.startswith("10.11."), (name, version)
        (column_type,), = query(name, "SELECT column_type FROM information_schema.columns WHERE table_schema = DATABASE() "
                                      "AND table_name = 'shipment_records' AND column_name = 'status'")
        assert column_type == "enum('PENDING','SHIPPED','DELIVERED')", name
        assert query(name, "SELECT count(*) FROM shipment_records") == [(3,)], name


def test_sqlite_seed(fleet, query):
    for name in fleet.names("sqlite"):
        assert os.path.getsize(fleet.host(name)["database"]) > 0
        assert query(name, "SELECT count(*) FROM customers") == [(2,)], name


def test_ssh_host_runs_the_project_python(host, fleet):
    """Through testinfra's ansible backend, i.e. over the local sshd like Ansible itself."""
    name = fleet.names(connection="ssh")[0]
    assert host.backend.get_hostname() == name
    res = host.run("%s -c 'import psycopg, pymysql; print(psycopg.__version__)'",
                   host.ansible.get_variables()["ansible_python_interpreter"])
    assert res.rc == 0, res.stderr
    assert host.file(fleet.host(name)["molecule_dir"]).is_directory
