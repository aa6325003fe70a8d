# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_diff's parts (issue 12).

snapshot.py    the snapshot model and its JSON file (format_version, engine, version), validated on load
postgresql.py  mysql.py  sqlite.py   one catalog reader per engine: database -> Snapshot (read only)
compare.py     Snapshot x Snapshot -> drift entries and the one-line summary
sqlgen.py      drift -> the statements that bring the database to the reference, each linted
shadow.py      the `migrations` reference: replay into a dbops_scratch_ shadow database, always dropped
"""
