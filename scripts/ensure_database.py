"""Create the database named by DATABASE_URL if it does not exist (PostgreSQL only)."""
import sys
from pathlib import Path

import dj_database_url
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The settings' URL: the environment's DATABASE_URL, else a private server's (var/services.env), else the default.
from revplan.settings import DATABASE_URL

config = dj_database_url.parse(DATABASE_URL)
params = {"host": config["HOST"] or None, "port": config["PORT"] or None, "user": config["USER"] or None,
          "password": config["PASSWORD"] or None, "dbname": "postgres", "autocommit": True}
with psycopg.connect(**{key: value for key, value in params.items() if value is not None}) as connection:
    exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone()
    if not exists:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
        print(f"created database {config['NAME']}")
