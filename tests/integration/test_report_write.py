"""report_write (the report role's one controller-side step), through Ansible: it writes every file atomically
with its mode, never follows a symlink, refuses hostile names, unsafe directories and bad modes with nothing
written, changes nothing in check mode, and reports changed only when a file changed. All cases run in one
ansible-playbook (migration_batch.run_tasks)."""

from __future__ import annotations

import os
import stat

from migration_batch import run_tasks

MOD = "dbops.maintenance.report_write"
FILES = {"report.json": '{"a": 1}\n', "report.html": "<html>é</html>"}


def test_report_write_cases(ansible, tmp_path):
    d = tmp_path / "reports"
    good = d / "run1"
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    planted = d / "planted"
    planted.mkdir(parents=True)
    os.symlink(victim, planted / "report.json")  # a pre-planted symlink at the file's name
    linkdir_target = tmp_path / "elsewhere"
    linkdir_target.mkdir()
    os.symlink(linkdir_target, d / "linked")
    open_dir = d / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    (d / "afile").write_text("x")
    cases = [
        ("first", dict(path=str(good), files=FILES), False),
        ("again", dict(path=str(good), files=FILES), False),
        ("one changed", dict(path=str(good), files=dict(FILES, **{"report.json": '{"a": 2}\n'})), False),
        ("check", dict(path=str(d / "checked"), files=FILES), True),
        ("planted symlink", dict(path=str(planted), files=FILES), False),
        ("symlinked dir", dict(path=str(d / "linked"), files=FILES), False),
        ("world-writable dir", dict(path=str(open_dir), files=FILES), False),
        ("a file", dict(path=str(d / "afile"), files=FILES), False),
        ("relative", dict(path="reports/rel", files=FILES), False),
        ("dotdot name", dict(path=str(d / "n1"), files={"../escape.json": "x"}), False),
        ("slash name", dict(path=str(d / "n2"), files={"sub/x.json": "x"}), False),
        ("hidden name", dict(path=str(d / "n3"), files={".x": "x"}), False),
        ("no files", dict(path=str(d / "n4"), files={}), False),
        ("not a string", dict(path=str(d / "n5"), files={"a.json": [1, 2]}), False),
        ("mode 0666", dict(path=str(d / "n6"), files=FILES, mode="0666"), False),
        ("mode text", dict(path=str(d / "n7"), files=FILES, mode="rw-r-----"), False),
        ("dir mode 0777", dict(path=str(d / "n8"), files=FILES, directory_mode="0777"), False),
        ("unknown option", dict(path=str(d / "n9"), files=FILES, owner="root"), False),
    ]
    res = run_tasks(ansible, [dict(name=n, module=MOD, args=a, check=c) for n, a, c in cases])

    # written, with the modes, from creation; the second run changes nothing; one differing file is rewritten
    assert res["first"]["changed"] is True and res["first"]["written"] == ["report.html", "report.json"], res["first"]
    assert stat.S_IMODE(good.stat().st_mode) == 0o750
    for name, content in FILES.items():
        assert stat.S_IMODE((good / name).stat().st_mode) == 0o640
    assert (good / "report.json").read_text() == '{"a": 2}\n' and (good / "report.html").read_text() == FILES["report.html"]
    assert res["again"]["changed"] is False and res["again"]["unchanged"] == ["report.html", "report.json"], res["again"]
    assert res["one changed"]["changed"] is True and res["one changed"]["written"] == ["report.json"], res["one changed"]
    assert sorted(p.name for p in good.iterdir()) == ["report.html", "report.json"]  # no temporary file left
    # check mode: nothing written, the result says what would be
    assert res["check"]["changed"] is True and res["check"]["written"] == ["report.html", "report.json"]
    assert not (d / "checked").exists()
    # a symlink at the file's name is replaced, never followed
    assert res["planted symlink"]["changed"] is True, res["planted symlink"]
    assert victim.read_text() == "do not touch"
    assert not (planted / "report.json").is_symlink() and (planted / "report.json").read_text() == FILES["report.json"]
    # refused, with a message that says what is wrong, and nothing written
    refused = {
        "symlinked dir": "a symlink", "world-writable dir": "writable by every user", "a file": "not a directory",
        "relative": "absolute", "dotdot name": "plain file name", "slash name": "plain file name",
        "hidden name": "plain file name", "no files": "files is empty", "not a string": "must be a string",
        "mode 0666": "write bit for others", "mode text": "octal mode", "dir mode 0777": "write bit for others",
        "unknown option": "owner",
    }
    for name, words in refused.items():
        assert res[name].get("failed") is True and words in res[name]["msg"], (name, res[name])
    assert list(linkdir_target.iterdir()) == [] and list(open_dir.iterdir()) == []
    assert (d / "afile").read_text() == "x"
    assert not any((d / n).exists() for n in ("n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"))
    assert not (tmp_path / "escape.json").exists() and not (d / "escape.json").exists()
