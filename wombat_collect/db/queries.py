"""Named SQL statements loaded from sql/*.sql (aiosql style: a `-- name:` header each)."""

import re
from functools import cache
from pathlib import Path

SQL_DIRECTORY = Path(__file__).with_name("sql")
NAME_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_named_statements(text):
    """Given the text of a .sql file, return {name: statement} for each `-- name:` block."""
    pieces = NAME_HEADER.split(text)
    statements = {}
    for name, body in zip(pieces[1::2], pieces[2::2], strict=False):
        statements[name] = body.strip().rstrip(";")
    return statements


@cache
def statement(name):
    """Given a statement name, return its SQL. Raise KeyError if no .sql file defines it."""
    return _all_statements()[name]


@cache
def _all_statements():
    statements = {}
    for path in sorted(SQL_DIRECTORY.glob("*.sql")):
        statements.update(parse_named_statements(path.read_text(encoding="utf-8")))
    return statements
