"""Create the database named by DATABASE_URL if it does not exist (PostgreSQL only)."""
import os

import dj_database_url
import psycopg
from psycopg import sql

config = dj_database_url.parse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/revplan"))
params = {"host": config["HOST"] or None, "port": config["PORT"] or None, "user": config["USER"] or None,
          "password": config["PASSWORD"] or None, "dbname": "postgres", "autocommit": True}
with psycopg.connect(**{key: value for key, value in params.items() if value is not None}) as connection:
    exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone()
    if not exists:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
        print(f"created database {config['NAME']}")
