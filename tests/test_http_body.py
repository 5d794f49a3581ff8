"""Reading an answer's body: the size cap, the total deadline, the charset, the refused redirect."""

import time
from datetime import date

import pytest
import requests

from tests.fakes.upbit_server import make_upbit_candles
from tests.fault_support import CANDLES_PATH
from wombat_collect.http_body import DeadlinePassed, RefusedAnswer, decode_text, read_capped, redirect_problem

BODY_BYTES = 1000


def streamed(fake):
    """Given a fake Upbit, return its streamed answer to a candles request (redirects not followed)."""
    return requests.get(f"{fake.url}{CANDLES_PATH}", params={"market": "KRW-BTC"}, timeout=(5.0, 2.0),
                        stream=True, allow_redirects=False)


@pytest.mark.parametrize("kind", ["oversized", "oversized_unsized"])
def test_read_capped_body_at_the_cap_is_returned_whole(fake_upbit, kind):
    fake_upbit.inject(kind, size=BODY_BYTES)
    with streamed(fake_upbit) as response:
        body = read_capped(response, BODY_BYTES, time.monotonic() + 10, 2.0)
    assert body == b"[" + b" " * (BODY_BYTES - 2) + b"]"


@pytest.mark.parametrize(("kind", "reason"), [
    ("oversized", f"answer of {BODY_BYTES:,} bytes is over the {BODY_BYTES - 1:,}-byte cap (refused)"),
    ("oversized_unsized", f"answer is over the {BODY_BYTES - 1:,}-byte cap (refused)"),
], ids=["with_length", "without_length"])
def test_read_capped_body_over_the_cap_is_refused(fake_upbit, kind, reason):
    fake_upbit.inject(kind, size=BODY_BYTES)
    with streamed(fake_upbit) as response, pytest.raises(RefusedAnswer) as raised:
        read_capped(response, BODY_BYTES - 1, time.monotonic() + 10, 2.0)
    assert str(raised.value) == reason


def test_read_capped_trickling_body_passes_its_deadline(fake_upbit):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
    fake_upbit.inject("trickle", seconds=0.05)
    began = time.monotonic()
    with streamed(fake_upbit) as response, pytest.raises(DeadlinePassed):
        read_capped(response, BODY_BYTES * 1000, time.monotonic() + 0.5, 2.0)
    assert time.monotonic() - began < 5


@pytest.mark.parametrize(("content", "encoding", "expected"), [
    ("삼성전자".encode("euc-kr"), "euc-kr", "삼성전자"),
    ("삼성전자".encode(), None, "삼성전자"),
    ("삼성전자".encode(), "no-such-charset", "삼성전자"),
    (b"ok \xff", "utf-8", "ok \ufffd"),
], ids=["named", "unnamed", "unknown", "undecodable"])
def test_decode_text_reads_the_named_charset_else_utf_8(content, encoding, expected):
    assert decode_text(content, encoding) == expected


def test_redirect_problem_names_only_the_target_host(fake_upbit):
    fake_upbit.inject("redirect", location="http://operator:hunter22@127.0.0.1:9")
    with streamed(fake_upbit) as response:
        problem = redirect_problem(response, response.url)
    assert problem == "HTTP 302 redirect to 127.0.0.1:9 refused (redirects are never followed)"
