"""The PostgreSQL backend: imported only when `[store] database_url` names a PostgreSQL server, so
the default install (SQLite) never needs psycopg."""
