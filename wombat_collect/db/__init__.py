"""The database layer: connections, migrations and raw-SQL upserts.

Only this package talks SQL; its statements live in sql/*.sql and migrations/*.sql.
"""
