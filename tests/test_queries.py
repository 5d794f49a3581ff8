"""Named statements: one per `-- name:` block, a shared `-- fragment:` put in by `-- include:`."""

import pytest

from wombat_collect.db.queries import parse_named_statements, statement

SQL_WITH_A_FRAGMENT = """-- the file's header
-- fragment: recent
recent AS (
    SELECT id FROM symbol WHERE updated_at > now() - interval '1 day'
)

-- name: recent_count
WITH
-- include: recent
SELECT count(*) FROM recent;

-- name: recent_ids
-- The ids.
WITH
-- include: recent
SELECT id FROM recent ORDER BY id;
"""


def test_parse_named_statements_puts_a_fragment_into_each_statement_including_it():
    fragment = "recent AS (\n    SELECT id FROM symbol WHERE updated_at > now() - interval '1 day'\n)"
    assert parse_named_statements(SQL_WITH_A_FRAGMENT) == {
        "recent_count": f"WITH\n{fragment}\nSELECT count(*) FROM recent",
        "recent_ids": f"-- The ids.\nWITH\n{fragment}\nSELECT id FROM recent ORDER BY id",
    }


def test_parse_named_statements_unknown_fragment_raises_key_error():
    with pytest.raises(KeyError, match="missing"):
        parse_named_statements("-- name: broken\nWITH\n-- include: missing\nSELECT 1;\n")


def test_statement_gaps_scans_share_the_block_walk():
    for name in ("gaps_every_period", "gaps_trading_calendar"):
        text = statement(name)
        assert "-- include:" not in text
        assert text.count("lag(newest_candle) OVER (PARTITION BY symbol_id ORDER BY first_candle)") == 1
        assert text.count('lag(p."timestamp") OVER (ORDER BY p."timestamp")') == 1
