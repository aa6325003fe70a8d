"""db_backup's check-mode preflight (plugins/module_utils/backup/preflight.py): the tools a backup and its restore
need, and the free space of dest against an estimate of the dump, per engine, in one ansible-playbook per engine.

The too-small destination is made with min_free (the documented threshold: bytes that must stay free after the
estimated dump) set beyond any file system, so no tiny tmpfs is needed; each failing case proves nothing was
written (dest not created, an existing dest left empty)."""

from __future__ import annotations

import math
import os
import stat
import sys

import pytest

from migration_batch import run_tasks

BACKUP = "dbops.maintenance.db_backup"
HUGE = 1 << 62  # bytes: more than any file system


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


@pytest.fixture
def engine_db(request, servers):
    engine = request.node.callspec.params["engine"]
    if engine == "sqlite":
        yield request.getfixturevalue("sqlite_db")
        return
    from conftest import DB  # pylint: disable=import-outside-toplevel
    names = ["pg16", "pg15"] if engine == "postgresql" else ["mariadb"]
    started = [servers[n] for n in names if n in servers]
    assert started, "none of %s started" % ", ".join(names)
    server = started[0]
    db = DB(server, server.create_database())
    yield db
    server.drop_database(db.name)


def seed(db):
    """About 300 KB of table data, so the estimate has something to measure."""
    if db.engine == "postgresql":
        db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        db.execute("INSERT INTO notes SELECT g, md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) "
                   "FROM generate_series(1, 3000) g")
        db.execute("CREATE TABLE other (id int PRIMARY KEY)")
    elif db.engine == "mysql":
        db.execute("CREATE TABLE notes (id int PRIMARY KEY, body varchar(200)) ENGINE=InnoDB")
        db.execute("INSERT INTO notes SELECT seq, CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2)) FROM seq_1_to_3000")
        db.execute("CREATE TABLE other (id int PRIMARY KEY)")
        db.execute("ANALYZE TABLE notes, other")
    else:
        db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
        db.execute("INSERT INTO notes (body) SELECT hex(randomblob(48)) FROM "
                   "(WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 3000) SELECT n FROM g)")


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_check_mode_preflight_tools_space_and_refusals(ansible, engine_db, engine, tmp_path):
    db = engine_db
    seed(db)
    conn = db.params
    missing = tmp_path / "not" / "yet" / "backups"          # the real run would create it
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o700)
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    modedir = tmp_path / "modedir"
    modedir.mkdir()
    os.chmod(modedir, 0o755)

    def case(name, check=True, env=None, **args):
        return {"name": name, "module": BACKUP, "check": check, "env": env, "args": dict(conn, **args)}

    tasks = [
        case("ok", dest=str(missing)),
        case("factor", dest=str(missing), space_factor=2.5),
        case("schema_only", dest=str(missing), schema_only=True),
        case("too_small", dest=str(missing), min_free=HUGE),
        case("too_small_existing", dest=str(existing), min_free=HUGE),
        # the preflight is check mode's: a real run is not refused by it
        case("real_run", check=False, dest=str(existing / "real"), min_free=HUGE, verify="checksum"),
        # ... unless it asks for it (preflight=true): refused before anything is written, or checked and taken
        case("real_refused", check=False, preflight=True, dest=str(tmp_path / "pf" / "new"), min_free=HUGE),
        case("real_preflight", check=False, preflight=True, dest=str(existing / "pf"), verify="checksum"),
        # dest_mode: a new dest gets it; an existing one with another mode is reported (check mode), then set
        case("mode_new", check=False, dest=str(tmp_path / "m" / "new"), dest_mode="0750", verify="checksum"),
        case("mode_check", dest=str(modedir), dest_mode="0700"),
        case("mode_set", check=False, dest=str(modedir), dest_mode="0700", verify="checksum"),
        case("mode_bad", check=False, dest=str(tmp_path / "bad"), dest_mode="0777"),
    ]
    if engine != "sqlite":
        tasks.append(case("only_other", dest=str(missing), tables=["other"]))
    if engine == "postgresql":
        tasks.append(case("no_tool", dest=str(missing), tool_path=str(empty_bin)))
    if engine == "mysql":
        # PATH without the client tools (the interpreter is an absolute path): the dump tool is not found
        tasks.append(case("no_tool", dest=str(missing), env={"PATH": str(empty_bin)}))
    if engine == "sqlite":
        # the compressor of the pipeline is a tool too
        tasks.append(case("no_compressor", dest=str(missing), compression="zstd", env={"PATH": str(empty_bin)}))
    r = run_tasks(ansible, tasks)

    ok = r["ok"]
    assert not ok["failed"], ok
    pf = ok["preflight"]
    assert pf["ok"] is True and pf["problems"] == [], pf
    assert pf["dest"] == str(missing) and pf["checked_path"] == str(tmp_path)
    assert pf["free_bytes"] > 0 and pf["space_factor"] == 1.0 and pf["min_free"] == 0
    # the data of ~3000 rows of ~96 characters, measured by the server (or the file), is in the estimate
    assert 250_000 <= pf["source_bytes"] <= 20_000_000, pf
    assert pf["estimated_bytes"] == pf["source_bytes"] and pf["needed_bytes"] == pf["estimated_bytes"]
    if engine == "sqlite":
        assert pf["tool_version"].startswith("SQLite ")
        assert pf["source_bytes"] == os.path.getsize(db.name)
    else:
        assert os.path.isabs(pf["tool"]) and os.access(pf["tool"], os.X_OK), pf
        assert pf["tool_version"], pf
        want = {"pg_restore", "psql"} if engine == "postgresql" else {"client"}
        assert set(pf["restore_tools"]) == want and all(os.access(p, os.X_OK) for p in pf["restore_tools"].values())
        name = os.path.basename(pf["tool"])
        assert name == "pg_dump" if engine == "postgresql" else name in ("mariadb-dump", "mysqldump")

    f = r["factor"]["preflight"]
    assert f["ok"] and f["space_factor"] == 2.5
    assert f["estimated_bytes"] == math.ceil(f["source_bytes"] * 2.5)
    assert r["schema_only"]["preflight"]["estimated_bytes"] == 0 and r["schema_only"]["preflight"]["ok"]
    if engine != "sqlite":
        # only the selected tables are measured: "other" is empty
        assert r["only_other"]["preflight"]["source_bytes"] < pf["source_bytes"] // 4, r["only_other"]["preflight"]

    for name in ("too_small", "too_small_existing"):
        t = r[name]
        assert t["failed"] and not t["changed"], t
        assert "Free some space" in t["msg"] and "MiB needed" in t["msg"] and "min_free" in t["msg"], t["msg"]
        assert t["preflight"]["ok"] is False and len(t["preflight"]["problems"]) == 1
        assert t["preflight"]["needed_bytes"] == t["preflight"]["estimated_bytes"] + HUGE
        assert "path" not in t  # nothing planned past the refusal
    assert "nearest existing parent" in r["too_small"]["msg"]
    # nothing was written: dest not created, the existing one empty (apart from the real runs' own directories)
    assert not (tmp_path / "not").exists()
    assert sorted(os.listdir(existing)) == ["pf", "real"]

    real = r["real_run"]
    assert not real["failed"] and real["changed"] and "preflight" not in real, real
    assert os.path.isfile(real["path"])
    # preflight=true in a real run: the same refusal, before dest is even created; or the findings and the backup
    t = r["real_refused"]
    assert t["failed"] and not t["changed"] and "Free some space" in t["msg"] and t["preflight"]["ok"] is False, t
    assert not (tmp_path / "pf").exists()
    t = r["real_preflight"]
    assert not t["failed"] and t["changed"] and t["preflight"]["ok"] is True and os.path.isfile(t["path"]), t
    assert t["preflight"]["dest"] == str(existing / "pf")
    # dest_mode
    t = r["mode_new"]
    assert not t["failed"] and "dest_mode" not in t, t
    assert stat.S_IMODE(os.stat(tmp_path / "m" / "new").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "m").st_mode) == 0o700
    assert r["mode_check"]["dest_mode"] == {"before": "0755", "after": "0700"}, r["mode_check"]
    t = r["mode_set"]
    assert not t["failed"] and t["dest_mode"] == {"before": "0755", "after": "0700"}, t
    assert stat.S_IMODE(os.stat(modedir).st_mode) == 0o700
    t = r["mode_bad"]
    assert t["failed"] and "o+w" in t["msg"] and not (tmp_path / "bad").exists(), t

    if engine != "sqlite":
        t = r["no_tool"]
        assert t["failed"] and t["preflight"]["ok"] is False, t
        assert ("has no pg_dump" if engine == "postgresql" else "was not found") in t["msg"], t["msg"]
    if engine == "sqlite":
        t = r["no_compressor"]
        assert t["failed"] and "zstd" in t["msg"], t
    # the secret reaches no result
    password = conn.get("login_password")
    if password:
        assert all(password not in str(v) for v in r.values())
    assert sys.executable  # the interpreter stays absolute whatever PATH the tasks get
