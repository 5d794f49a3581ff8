"""Running the wombat backend's own code (its alembic migrations, initial_data.py) against a test database.

The backend's `backend/` folder, as published, is read from WOMBAT_BACKEND_SOURCE and run with
the Python of WOMBAT_BACKEND_PYTHON (a virtualenv holding its locked dependencies: `.ci/run`
builds one from its uv.lock). Nothing of it is copied into this project. Without the variables,
or on a server the backend cannot use (a Unix socket only; no uuid-ossp, which its revision
d98dd8ec85a3 creates), the tests that need it skip and say why.
"""

import os
import re
import subprocess
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import query

SOURCE_VARIABLE = "WOMBAT_BACKEND_SOURCE"
PYTHON_VARIABLE = "WOMBAT_BACKEND_PYTHON"
BACKEND_TIMEOUT = 300  # seconds for one backend command; its whole chain takes a few
# `alembic check` lists its operations as ('remove_index', Index('name', ...)) or ('remove_table', Table('name', ...)).
OPERATION = re.compile(r"\('(\w+)', (?:Index|Table|Column|UniqueConstraint|ForeignKeyConstraint)\('(\w+)'")
FIRST_SUPERUSER = "admin@example.com"


def backend_or_skip(dsn):
    """Given a test database DSN, return (source folder, python) to run the backend with; skip the test if none."""
    source, python = os.environ.get(SOURCE_VARIABLE), os.environ.get(PYTHON_VARIABLE)
    if not source or not python:
        pytest.skip(f"set {SOURCE_VARIABLE} (the backend's folder) and {PYTHON_VARIABLE} (a Python with its "
                    "dependencies) to run the backend's migrations; .ci/run sets both")
    if not (Path(source) / "alembic.ini").is_file() or not Path(python).is_file():
        pytest.fail(f"{SOURCE_VARIABLE}={source} holds no alembic.ini, or {PYTHON_VARIABLE}={python} does not exist")
    if psycopg2.extensions.parse_dsn(dsn).get("host", "/").startswith("/"):
        pytest.skip("the backend connects over TCP only (POSTGRES_SERVER); this test server has only a Unix socket")
    if not query(dsn, "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp')")[0][0]:
        pytest.skip("this test server lacks the uuid-ossp extension, which the backend's revision d98dd8ec85a3 creates")
    return Path(source), python


def run_backend(backend, dsn, *arguments):
    """Given (source, python), a DSN and a command of the backend (a module path or `-m alembic ...`), run it there.

    Return the CompletedProcess (text output).
    """
    source, python = backend
    parts = psycopg2.extensions.parse_dsn(dsn)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(source), "PYTHONDONTWRITEBYTECODE": "1",
        "POSTGRES_SERVER": parts["host"], "POSTGRES_PORT": parts.get("port", "5432"),
        "POSTGRES_USER": parts.get("user", "postgres"), "POSTGRES_PASSWORD": parts.get("password", ""),
        "POSTGRES_DB": parts["dbname"], "PROJECT_NAME": "wombat", "FIRST_SUPERUSER": FIRST_SUPERUSER,
        "FIRST_SUPERUSER_PASSWORD": "changethis-in-tests",
    }
    return subprocess.run([python, *arguments], cwd=source, env=env, capture_output=True, text=True,
                          timeout=BACKEND_TIMEOUT, check=False)


def alembic(backend, dsn, *arguments):
    """Given (source, python), a DSN and alembic arguments, run the backend's alembic; return the CompletedProcess."""
    return run_backend(backend, dsn, "-m", "alembic", *arguments)


def autogenerate_operations(backend, dsn):
    """Given (source, python) and a DSN, return the (operation, object name) pairs the backend's autogenerate proposes.

    Read from `alembic check`, which compares its models with the database without writing a migration.
    """
    checked = alembic(backend, dsn, "check")
    if checked.returncode == 0:
        return []
    found = OPERATION.findall(checked.stderr.split("New upgrade operations detected:", 1)[-1].splitlines()[0])
    assert found, checked.stderr[-2000:]
    return sorted(set(found))
