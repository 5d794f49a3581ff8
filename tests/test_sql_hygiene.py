"""No SQL is built by formatting values into strings: every statement comes from db/sql or db/migrations.

The package's source is parsed (not imported or run): each call that sends SQL
(`execute`, `executemany`, `copy_expert`, `copy_from`, `mogrify`, `execute_values`)
must take a named statement, `statement(name)` (which only ever returns the text
of a db/sql/*.sql file; a literal name must be defined there), or (db/migrate.py
only) the text of a migration file.
"""

import ast
from pathlib import Path

import pytest

from wombat_collect.db.queries import _all_statements

PACKAGE = Path(__file__).resolve().parent.parent / "wombat_collect"
SQL_METHODS = {"execute", "executemany", "copy_expert", "copy_from", "mogrify"}
MIGRATION_RUNNER = "db/migrate.py"


def sql_argument(call):
    """Given an ast.Call, return the node of the SQL it sends, or None if it sends none."""
    function = call.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    if name == "execute_values":
        return call.args[1] if len(call.args) > 1 else None
    if isinstance(function, ast.Attribute) and name in SQL_METHODS:
        return call.args[0] if call.args else None
    return None


def formatted(node):
    """Given an expression, return how it formats values into text (f-string, %, .format, +), or None."""
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return "a %-formatted string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return "a concatenation"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
        return f"a .{node.func.attr}() call"
    return None


def problems_in(source, relative_path, known_statements):
    """Given a module's source and its path under the package, return what is wrong with each SQL call."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        sql = sql_argument(node)
        if sql is None:
            continue
        where = f"{relative_path}:{node.lineno}"
        how = formatted(sql)
        if how:
            found.append(f"{where}: SQL built from {how}")
        elif isinstance(sql, ast.Call) and isinstance(sql.func, ast.Name) and sql.func.id == "statement":
            name = sql.args[0] if len(sql.args) == 1 else None
            if isinstance(name, ast.Constant) and name.value not in known_statements:
                found.append(f"{where}: statement {name.value!r} is in no db/sql/*.sql file")
        elif not (relative_path == MIGRATION_RUNNER and isinstance(sql, ast.Call)
                  and isinstance(sql.func, ast.Attribute) and sql.func.attr == "read_text"):
            found.append(f"{where}: SQL from {ast.unparse(sql)!r}, not from db/sql or db/migrations")
    return found


def package_modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_problems_in_package_sql_calls_none():
    known = _all_statements()
    found = [problem for path in package_modules()
             for problem in problems_in(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix(), known)]
    assert found == []


def test_problems_in_package_finds_the_sql_calls_it_checks():
    """The scan is only worth something if it sees the calls: count them."""
    calls = [node for path in package_modules() for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and sql_argument(node) is not None]
    assert len(calls) >= 25


def test_migrations_are_sql_files_only():
    directory = PACKAGE / "db" / "migrations"
    assert sorted(path.suffix for path in directory.iterdir() if path.is_file()) == [".sql"] * len(
        [path for path in directory.iterdir() if path.is_file()])


@pytest.mark.parametrize(("line", "problem"), [
    ('cursor.execute(f"SELECT * FROM symbol WHERE symbol = \'{name}\'")', "SQL built from an f-string"),
    ('cursor.execute("SELECT * FROM symbol WHERE id = %s" % symbol_id)', "SQL built from a %-formatted string"),
    ('cursor.execute("SELECT * FROM {}".format(table))', "SQL built from a .format() call"),
    ('cursor.execute("SELECT * FROM " + table)', "SQL built from a concatenation"),
    ('execute_values(cursor, f"INSERT INTO {table} VALUES %s", rows)', "SQL built from an f-string"),
    ('cursor.copy_expert(f"COPY {table} FROM STDIN", buffer)', "SQL built from an f-string"),
    ('cursor.execute("DELETE FROM pricedata")', "SQL from \"'DELETE FROM pricedata'\", not from db/sql"),
    ('cursor.execute(text)', "SQL from 'text', not from db/sql or db/migrations"),
    ('cursor.execute(statement("no_such_statement"))', "statement 'no_such_statement' is in no db/sql/*.sql file"),
    ('cursor.execute(path.read_text())', "SQL from 'path.read_text()', not from db/sql or db/migrations"),
])
def test_problems_in_flags_sql_built_in_python(line, problem):
    found = problems_in(line, "ops/example.py", _all_statements())
    assert len(found) == 1 and problem in found[0], found


@pytest.mark.parametrize("line", [
    'cursor.execute(statement("upsert_symbols"), {"rows": rows})',
    'cursor.execute(statement(name), {"job": job})',
    'execute_values(cursor, statement("upsert_symbols"), rows)',
    'executor.submit(work, item)',
    'execute(context, exchange)',
])
def test_problems_in_accepts_named_statements(line):
    assert problems_in(line, "ops/example.py", _all_statements()) == []


def bare_transactions(source):
    """Given Python source, return the line numbers of `with <connection>:` blocks not opened by transaction()."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.With):
            lines += [item.context_expr.lineno for item in node.items
                      if isinstance(item.context_expr, ast.Name) and "connection" in item.context_expr.id]
    return lines


def test_bare_transactions_in_package_none():
    """Every transaction goes through db.connection.transaction(), which sets the lock and statement timeouts."""
    found = {str(path.relative_to(PACKAGE)): bare_transactions(path.read_text(encoding="utf-8"))
             for path in PACKAGE.rglob("*.py") if path.name != "connection.py"}
    assert {path: lines for path, lines in found.items() if lines} == {}
    assert bare_transactions("with connection:\n    pass\nwith transaction(connection):\n    pass\n") == [1]
