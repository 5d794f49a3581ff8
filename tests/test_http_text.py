"""The text helpers of every answer: JSON that never raises, one masked line, URLs without secrets."""

import pytest

from tests.fakes.common import HOSTILE_MESSAGE
from wombat_collect.http_text import display_url, flatten, parse_json


@pytest.mark.parametrize(("text", "expected"), [
    ("[" * 100_000 + "]" * 100_000, None),
    ("[1" + "0" * 5000 + "]", None),
    ('{"price": 1e99999999999999999999}', {"price": "NaN"}),
    ('{"price": 1.5e3}', {"price": "1.5E+3"}),
], ids=["deep", "long_integer", "huge_exponent", "decimal"])
def test_parse_json_never_raises(text, expected):
    parsed = parse_json(text)
    assert (parsed if parsed is None else {key: str(value) for key, value in parsed.items()}) == expected


def test_flatten_leaves_no_control_character_and_masks_secrets():
    assert flatten(HOSTILE_MESSAGE) == "bad request <0>wombat: FORGED EMERGENCY [31mred next line"
    assert flatten("a\tb\u202ec\x7fd  e\n") == "a b c d e"


def test_display_url_drops_userinfo_and_query():
    assert display_url("https://user:secret@example.com:8443/common/master?key=1#x") == \
        "https://example.com:8443/common/master"
    assert display_url("http://u:p@[::1]:80") == "http://[::1]:80"
