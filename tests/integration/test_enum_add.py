"""enum_add through Ansible against real PostgreSQL 15/16, MariaDB 10.11 and SQLite."""

from __future__ import annotations

import pytest

MOD = "dbops.maintenance.enum_add"
SEED_VALUES = ["API_KEY", "OAUTH_TOKEN", "COOKIE", "PASSWORD", "ENCRYPTED"]


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def pg_enum(db, name, schema="public"):
    return [r[0] for r in db.query(
        "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
        "JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = %s AND t.typname = %s "
        "ORDER BY e.enumsortorder", (schema, name))]


def pg_catalog_snapshot(db):
    """Every enum label and user column of the database, to prove nothing changed."""
    return (db.query("SELECT t.typname, e.enumlabel, e.enumsortorder FROM pg_enum e JOIN pg_type t "
                     "ON t.oid = e.enumtypid ORDER BY 1, 3"),
            db.query("SELECT table_schema, table_name, column_name, data_type, udt_name, is_nullable, "
                     "column_default FROM information_schema.columns WHERE table_schema NOT IN "
                     "('pg_catalog', 'information_schema') ORDER BY 1, 2, 3"),
            db.query("SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                     "ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE 'pg\\_%%' AND "
                     "n.nspname <> 'information_schema' ORDER BY 1, 2"))


@pytest.fixture
def credential_db(pg_db):
    """The seed incident: a Prisma schema whose CredentialType lacks PERSONAL_ACCESS_TOKEN."""
    pg_db.execute('CREATE TYPE "CredentialType" AS ENUM (%s)' % ", ".join("'%s'" % v for v in SEED_VALUES))
    pg_db.execute('CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType" NOT NULL)')
    pg_db.execute('''INSERT INTO "ExternalCredential" (type) VALUES ('API_KEY')''')
    return pg_db


def test_seed_incident_fixed_check_then_apply_then_idempotent(ansible, credential_db):
    db = credential_db
    args = dict(db.params, name="CredentialType", values=["PERSONAL_ACCESS_TOKEN"])
    # The incident itself: 22P02 on insert.
    with pytest.raises(Exception, match="invalid input value for enum"):
        db.execute('''INSERT INTO "ExternalCredential" (type) VALUES ('PERSONAL_ACCESS_TOKEN')''')

    before = pg_catalog_snapshot(db)
    r = ansible.run(MOD, args, check=True, diff=True)
    assert r["changed"] is True and not r.get("failed")
    assert r["queries"] == [
        '''ALTER TYPE "public"."CredentialType" ADD VALUE IF NOT EXISTS 'PERSONAL_ACCESS_TOKEN\'''']
    assert r["added"] == ["PERSONAL_ACCESS_TOKEN"]
    assert r["diff"]["before"]["values"] == SEED_VALUES
    assert r["diff"]["after"]["values"] == SEED_VALUES + ["PERSONAL_ACCESS_TOKEN"]
    assert pg_catalog_snapshot(db) == before, "check mode changed the catalog"

    r = ansible.run(MOD, args)
    assert r["changed"] is True
    assert r["queries"] == [
        '''ALTER TYPE "public"."CredentialType" ADD VALUE IF NOT EXISTS 'PERSONAL_ACCESS_TOKEN\'''']
    assert r["values"] == SEED_VALUES + ["PERSONAL_ACCESS_TOKEN"]
    assert pg_enum(db, "CredentialType") == SEED_VALUES + ["PERSONAL_ACCESS_TOKEN"]
    # The application's insert now works.
    db.execute('''INSERT INTO "ExternalCredential" (type) VALUES ('PERSONAL_ACCESS_TOKEN')''')

    r = ansible.run(MOD, args, diff=True)
    assert r["changed"] is False and r["queries"] == [] and r["added"] == []
    assert r["diff"]["before"] == r["diff"]["after"]


def test_positions_and_order(ansible, credential_db):
    db = credential_db
    r = ansible.run(MOD, dict(db.params, name="CredentialType", values=["A1", "A2"], after="COOKIE"))
    assert r["changed"] and r["added"] == ["A1", "A2"]
    assert pg_enum(db, "CredentialType") == ["API_KEY", "OAUTH_TOKEN", "COOKIE", "A1", "A2", "PASSWORD", "ENCRYPTED"]
    r = ansible.run(MOD, dict(db.params, name="CredentialType", values=["B1", "B2"], before="API_KEY"))
    assert pg_enum(db, "CredentialType")[:3] == ["B1", "B2", "API_KEY"]
    assert r["values"] == pg_enum(db, "CredentialType")
    # Present values are left where they are, missing ones are added.
    r = ansible.run(MOD, dict(db.params, name="CredentialType", value=["A1", "Z"], before="API_KEY"))
    assert r["added"] == ["Z"]
    assert pg_enum(db, "CredentialType")[:4] == ["B1", "B2", "Z", "API_KEY"]


def test_create_and_schema(ansible, pg_db):
    pg_db.execute('CREATE SCHEMA "Billing"')
    args = dict(pg_db.params, schema="Billing", name="Invoice State", values=["draft", "paid"])
    r = ansible.run(MOD, args)
    assert r["failed"] and "does not exist" in r["msg"] and "create: true" in r["msg"]
    r = ansible.run(MOD, dict(args, create=True), check=True)
    assert r["changed"] and r["queries"] == [
        '''CREATE TYPE "Billing"."Invoice State" AS ENUM ('draft', 'paid')''']
    assert pg_enum(pg_db, "Invoice State", "Billing") == []
    r = ansible.run(MOD, dict(args, create=True))
    assert r["changed"] and r["created"] is True
    assert pg_enum(pg_db, "Invoice State", "Billing") == ["draft", "paid"]
    r = ansible.run(MOD, dict(args, create=True))
    assert r["changed"] is False


@pytest.mark.parametrize("case", ["missing_type", "wrong_case", "bad_anchor", "too_long", "duplicates",
                                  "not_enum", "empty"])
def test_errors_change_nothing(ansible, credential_db, case):
    db = credential_db
    db.execute("CREATE DOMAIN plain_domain AS text")
    args = dict(db.params, name="CredentialType", values=["NEW"])
    expect = {
        "missing_type": (dict(name="CredentialKind"), "Similar names found: CredentialType"),
        "wrong_case": (dict(name="credentialtype"), "Similar names found: CredentialType"),
        "bad_anchor": (dict(after="NOPE"), "'NOPE' is not a value of"),
        "too_long": (dict(values=["X" * 64]), "at most 63 bytes"),
        "duplicates": (dict(values=["NEW", "NEW"]), "more than once"),
        "not_enum": (dict(name="plain_domain"), "is a domain, not an enum"),
        "empty": (dict(values=[""]), "cannot be empty"),
    }[case]
    before = pg_catalog_snapshot(db)
    r = ansible.run(MOD, dict(args, **expect[0]))
    assert r["failed"], r
    assert expect[1] in r["msg"]
    assert r.get("changed") is False
    assert pg_catalog_snapshot(db) == before


def test_hostile_names_are_names(ansible, pg_db):
    name = 'Cred"Type; DROP TABLE victim; --'
    pg_db.execute("CREATE TABLE victim (id int)")
    pg_db.execute('CREATE TYPE "Cred""Type; DROP TABLE victim; --" AS ENUM (\'a\')')
    value = "it's; DROP TABLE victim; -- é"
    r = ansible.run(MOD, dict(pg_db.params, name=name, values=[value, "ünïcödé 🚀"]))
    assert r["changed"], r
    assert pg_enum(pg_db, name) == ["a", value, "ünïcödé 🚀"]
    assert pg_db.query("SELECT count(*) FROM victim") == [(0,)]


# ----------------------------------------------------------------------------- MariaDB

@pytest.fixture
def shipment_db(mysql_db):
    mysql_db.execute(
        "CREATE TABLE shipment_records (id int AUTO_INCREMENT PRIMARY KEY, "
        "status enum('PENDING','SHIPPED','it''s') CHARACTER SET latin1 COLLATE latin1_bin NOT NULL "
        "DEFAULT 'PENDING' COMMENT 'delivery state', note varchar(20)) DEFAULT CHARSET=utf8mb4")
    mysql_db.execute("INSERT INTO shipment_records (status) VALUES ('SHIPPED'), ('PENDING')")
    return mysql_db


def show_create(db, table="shipment_records"):
    return db.query("SHOW CREATE TABLE `%s`" % table)[0][1]


def test_mysql_append_keeps_everything_else(ansible, shipment_db):
    db = shipment_db
    args = dict(db.params, table="shipment_records", column="status", values=["DELIVERED", "RETURNED"])
    before = show_create(db)
    r = ansible.run(MOD, args, check=True, diff=True)
    assert r["changed"] and show_create(db) == before
    expected_sql = ("ALTER TABLE `shipment_records` MODIFY COLUMN `status` enum('PENDING','SHIPPED','it''s',"
                    "'DELIVERED','RETURNED') CHARACTER SET latin1 COLLATE latin1_bin NOT NULL DEFAULT 'PENDING' "
                    "COMMENT 'delivery state', ALGORITHM=INSTANT")
    assert r["queries"] == [expected_sql]
    assert "'DELIVERED','RETURNED'" in r["diff"]["after"]["definition"]

    r = ansible.run(MOD, args)
    assert r["changed"] and r["queries"] == [expected_sql]
    assert r["values"] == ["PENDING", "SHIPPED", "it's", "DELIVERED", "RETURNED"]
    after = show_create(db)
    # SHOW CREATE TABLE identical except the value list.
    assert after == before.replace("'it''s')", "'it''s','DELIVERED','RETURNED')")
    assert db.query("SELECT status FROM shipment_records ORDER BY id") == [("SHIPPED",), ("PENDING",)]
    r = ansible.run(MOD, args)
    assert r["changed"] is False and r["queries"] == []


def test_mysql_insert_in_middle_needs_allow_copy(ansible, shipment_db):
    db = shipment_db
    args = dict(db.params, table="shipment_records", column="status", values=["PACKED"], after="PENDING")
    before = show_create(db)
    r = ansible.run(MOD, args)
    assert r["failed"] and "allow_copy" in r["msg"] and show_create(db) == before
    r = ansible.run(MOD, dict(args, allow_copy=True))
    assert r["changed"] and r["queries"][0].endswith("ALGORITHM=COPY")
    assert r["values"] == ["PENDING", "PACKED", "SHIPPED", "it's"]
    # Stored rows keep their values although the indexes moved.
    assert db.query("SELECT status FROM shipment_records ORDER BY id") == [("SHIPPED",), ("PENDING",)]


@pytest.mark.parametrize("case", ["no_column", "not_enum", "no_table", "too_long", "missing_table_opts"])
def test_mysql_errors_change_nothing(ansible, shipment_db, case):
    db = shipment_db
    args = dict(db.params, table="shipment_records", column="status", values=["X"])
    expect = {
        "no_column": (dict(column="Status"), "Similar names found: status"),
        "not_enum": (dict(column="note"), "not an ENUM"),
        "no_table": (dict(table="shipment_record"), "Similar names found: shipment_records"),
        "too_long": (dict(values=["x" * 256]), "at most 255 characters"),
        "missing_table_opts": (dict(column=None), "give table and column"),
    }[case]
    before = show_create(db)
    r = ansible.run(MOD, {k: v for k, v in dict(args, **expect[0]).items() if v is not None})
    assert r["failed"] and expect[1] in r["msg"], r
    assert show_create(db) == before


def test_sqlite_says_no_enums(ansible, sqlite_db):
    sqlite_db.execute("CREATE TABLE t (id integer)")
    r = ansible.run(MOD, dict(sqlite_db.params, name="x", values=["a"]))
    assert r["failed"] and "SQLite has no enum types" in r["msg"] and "CHECK" in r["msg"]
