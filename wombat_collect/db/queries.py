"""Named SQL statements loaded from sql/*.sql (aiosql style: a `-- name:` header each).

A text two statements of a file share is a `-- fragment:` block, put in by `-- include:`.
"""

import re
from functools import cache
from pathlib import Path

SQL_DIRECTORY = Path(__file__).with_name("sql")
NAME_HEADER = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)
INCLUDE_LINE = re.compile(r"^-- include: (\w+)\s*$", re.MULTILINE)


def parse_named_statements(text):
    """Given the text of a .sql file, return {name: statement} for each `-- name:` block.

    A `-- fragment:` block is not a statement: each `-- include: <fragment>` line
    of the file's statements is replaced by the text of that fragment of the same
    file (fragments do not include fragments). Raise KeyError if a statement
    includes a fragment the file does not define.
    """
    pieces = NAME_HEADER.split(text)
    blocks = {"name": {}, "fragment": {}}
    for kind, name, body in zip(pieces[1::3], pieces[2::3], pieces[3::3], strict=False):
        blocks[kind][name] = body.strip().rstrip(";")
    fragments = blocks["fragment"]
    return {name: INCLUDE_LINE.sub(lambda include: fragments[include.group(1)], body)
            for name, body in blocks["name"].items()}


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
