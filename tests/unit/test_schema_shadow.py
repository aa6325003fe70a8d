"""schema_diff's code-tool replay: the {shadow_*} tokens (hostile passwords and names stay inside the URL's parts,
no other brace is read) and the refusal of an environment that does not name the shadow."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import shadow


def test_shadow_url_percent_encodes_every_part():
    params = dict(login_host="db.internal", login_port=5433, login_user="app@x", login_password="p@ss:/w?#%{x}",
                  database="dbops_scratch_diff_ab12")
    v = shadow.shadow_values("postgresql", params)
    url = urlsplit(v["shadow_url"])
    assert url.scheme == "postgresql" and url.hostname == "db.internal" and url.port == 5433
    assert unquote(url.username) == "app@x" and unquote(url.password) == "p@ss:/w?#%{x}"
    assert url.path == "/dbops_scratch_diff_ab12" and not url.query and not url.fragment
    assert v["shadow_password"] == "p@ss:/w?#%{x}" and v["shadow_port"] == "5433"
    assert shadow.shadow_values("mysql", dict(database="d"))["shadow_url"] == "mysql://127.0.0.1:3306/d"
    assert shadow.shadow_values("sqlite", dict(database="/tmp/x/s.db"))["shadow_url"] == "sqlite:////tmp/x/s.db"
    assert shadow.shadow_values("postgresql", dict(login_host="::1", database="d"))["shadow_url"] == \
        "postgresql://[::1]:5432/d"


def test_shadow_environment_replaces_only_the_tokens():
    values = shadow.shadow_values("postgresql", dict(login_user="u", login_password="{shadow_database}", database="s"))
    env = shadow.shadow_environment({"URL": "{shadow_url}", "DB": "{shadow_database}", "OTHER": "{0} {x} %s",
                                     "PW": "{shadow_password}"}, values)
    assert env["DB"] == "s" and env["OTHER"] == "{0} {x} %s"
    # a value that itself looks like a token is not expanded again (one pass), whatever the order
    assert env["PW"] == "{shadow_database}"
    values = shadow.shadow_values("postgresql", dict(login_user="{shadow_password}", login_password="pw", database="s"))
    assert shadow.shadow_environment({"U": "{shadow_user}"}, values) == {"U": "{shadow_password}"}
    assert env["URL"] == "postgresql://u:%7Bshadow_database%7D@127.0.0.1:5432/s"


@pytest.mark.parametrize("params, message", [
    (dict(tool="alembic"), "give command"),
    (dict(tool="django", command=["manage.py", "migrate"]), "names no shadow token"),
    (dict(tool="knex", command=["knex"], environment={"DATABASE_URL": "postgres://prod/app"}), "names no shadow token"),
])
def test_code_tool_without_the_shadow_named_is_refused(params, message):
    with pytest.raises(DbopsError, match=message):
        shadow.refuse_code_tool(params)


def test_sql_tools_and_a_named_shadow_pass():
    shadow.refuse_code_tool(dict(tool="dbmate"))
    shadow.refuse_code_tool(dict(tool="rails", command=["bin/rails", "db:migrate"],
                                 environment={"DATABASE_URL": "{shadow_url}"}))
