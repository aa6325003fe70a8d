# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""migration_lint's engine: parser front-ends per dialect, a rule table, sources.

postgres_parser.py PostgreSQL, with pglast (libpg_query: PostgreSQL's own parser)
sqlglot_parser.py  MySQL/MariaDB and SQLite, with sqlglot (its mysql/sqlite dialects)
model.py         what a front-end hands to the rules: Statement and Event
rules.py         the rule table (id, severity, engines, why, safe alternative) and the checks
sources.py       what to lint: SQL strings, files, globs, directories, migration tools
runner.py        lint(): sources -> front-end -> rules -> findings and summary
"""
