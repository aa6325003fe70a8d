# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by migration_status and migration_resolve (plugins/module_utils/migrations/)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  tool:
    description:
      - The migration tool whose history table is read (and written), exactly as that tool creates and reads it.
      - C(prisma) uses C(_prisma_migrations), C(alembic) uses C(alembic_version), C(flyway) uses
        C(flyway_schema_history), C(django) uses C(django_migrations), C(golang-migrate) uses the single row of
        C(schema_migrations) (version, dirty), C(sqlx) uses C(_sqlx_migrations), C(knex) uses C(knex_migrations)
        (and C(knex_migrations_lock)), C(rails) and C(dbmate) use C(schema_migrations) (version),
        C(goose) uses C(goose_db_version).
    type: str
    required: true
    choices: [prisma, alembic, flyway, django, golang-migrate, sqlx, knex, rails, dbmate, goose]
  migrations_path:
    description:
      - The migrations directory B(on the host where the module runs) (copy it there first if needed).
      - C(prisma) the C(prisma/migrations) directory (one sub-directory per migration with C(migration.sql));
        C(alembic) the C(versions) directory of the revision scripts (read with the Python C(ast) module,
        never imported); C(flyway) the directory of C(V<version>__<description>.sql) files; C(django) the
        C(migrations) directory of the app O(app); C(golang-migrate) C(<version>_<title>.up.sql) files;
        C(sqlx) C(<version>_<description>.sql) files; C(knex) the migration files; C(rails) C(db/migrate);
        C(dbmate) C(db/migrations); C(goose) C(<version>_<name>.sql) files.
    type: path
  app:
    description:
      - C(django) only, and required for it. The app label whose migrations are meant (C(django_migrations.app)).
    type: str
  history_table:
    description:
      - Name of the history table when the tool was configured with another name (Prisma and sqlx cannot be, Flyway
        C(table), alembic C(version_table), knex C(tableName), dbmate C(--migrations-table), goose C(-table)).
        On PostgreSQL it may be C(schema.table).
      - The table's columns are checked against the tool's; a table of another tool is refused.
    type: str
'''
