"""Monitoring hooks: healthchecks-style pings and Sentry, never failing or slowing a run."""

import logging
import sys
import types
from datetime import timedelta

import pytest

from tests.conftest import query, run_cli, upbit_env
from tests.fakes.upbit_server import make_upbit_candles
from tests.ops_support import TODAY, PingServer, closed_port_url, envelope_items, run
from wombat_collect.errors import DatabaseError
from wombat_collect.ops import healthchecks, monitor, sentry
from wombat_collect.ops.monitor import Check


@pytest.fixture
def one_market(fake_upbit):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", TODAY - timedelta(days=4), TODAY))
    return fake_upbit


def summary_line(output, job="prices"):
    """Given a run's output, return its summary line's message (without time and level)."""
    line = next(line for line in output.splitlines() if f"{job} upbit: " in line and " in " in line
                and "symbols (" in line)
    return line.split(" ", 2)[2]


def test_prices_pings_start_then_success_with_the_summary(database, one_market):
    with PingServer() as pings:
        result = run_cli("prices", "--exchange", "upbit", env=upbit_env(database, one_market,
                                                                        WOMBAT_PING_URL=pings.url + "/uuid-1"))
    assert result.exit_code == 0, result.output
    assert pings.paths() == ["/uuid-1/start", "/uuid-1"]
    (_, _, start_query, start_body), (_, _, end_query, end_body) = pings.requests
    assert start_body == "prices upbit: started"
    assert end_body == summary_line(result.stdout) and end_body.startswith("prices upbit: 1 symbols (1 ok), 4 rows")
    assert start_query == end_query and start_query.startswith("rid=")


def test_prices_failure_pings_fail_with_the_summary(database, one_market):
    env = upbit_env(database, one_market)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    one_market.set_blocked(True)
    with PingServer() as pings:
        result = run_cli("prices", "--exchange", "upbit", env=dict(env, WOMBAT_PING_URL=pings.url))
    assert result.exit_code == 1
    assert pings.paths() == ["/start", "/fail"]
    body = pings.requests[1][3]
    assert body == summary_line(result.stderr) and "; FAILED: upbit: " in body and "418" in body


def test_prices_error_raised_mid_run_pings_fail(database, one_market):
    env = upbit_env(database, one_market)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    with PingServer() as pings:
        result = run_cli("prices", "--exchange", "upbit", "--symbol", "NOPE/KRW",
                         env=dict(env, WOMBAT_PING_URL=pings.url))
    assert result.exit_code == 2
    assert pings.paths() == ["/start", "/fail"]
    assert pings.requests[1][3].startswith("prices upbit: 0 symbols (0 ok), 0 rows (0 new) in ")
    assert pings.requests[1][3].endswith("s; FAILED: unknown symbol(s): NOPE/KRW")


def test_prices_placeholders_give_one_check_per_job_and_exchange(database, one_market):
    with PingServer() as pings:
        env = upbit_env(database, one_market, WOMBAT_PING_URL=pings.url + "/key/wombat-collect-{job}-{exchange}")
        assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
        assert run_cli("prices", "--exchange", "upbit", env=env).exit_code == 0
    assert pings.paths() == ["/key/wombat-collect-symbols-upbit/start", "/key/wombat-collect-symbols-upbit",
                             "/key/wombat-collect-prices-upbit/start", "/key/wombat-collect-prices-upbit"]


def test_prices_dead_ping_url_neither_fails_nor_slows_the_run(database, one_market):
    url = closed_port_url()
    result = run_cli("prices", "--exchange", "upbit", env=upbit_env(database, one_market, WOMBAT_PING_URL=url))
    assert result.exit_code == 0
    assert result.stderr.count("ping to 127.0.0.1 failed (ConnectionError); the run goes on") == 2  # start, end
    assert "abcdef-secret-key" not in result.output
    assert query(database, "SELECT status FROM wombat_collect.collect_run") == [("succeeded",)]


def test_prices_ping_answering_500_only_warns(database, one_market):
    with PingServer(status=500) as pings:
        result = run_cli("prices", "--exchange", "upbit",
                         env=upbit_env(database, one_market, WOMBAT_PING_URL=pings.url))
    assert result.exit_code == 0
    assert result.stderr.count("ping to 127.0.0.1 answered HTTP 500; the run goes on") == 2
    assert pings.paths() == ["/start", "/"]


@pytest.mark.parametrize("failing_start", [{"statuses": {"/uuid-1/start": 503}}, {"hang": {"/uuid-1/start"}}],
                         ids=["http-503", "timeout"])
def test_prices_failed_start_ping_still_sends_the_end_ping(database, one_market, monkeypatch, failing_start):
    monkeypatch.setattr(healthchecks, "TIMEOUT_SECONDS", 0.5)
    with PingServer(**failing_start) as pings:
        result = run_cli("prices", "--exchange", "upbit",
                         env=upbit_env(database, one_market, WOMBAT_PING_URL=pings.url + "/uuid-1"))
        requests = list(pings.requests)
    assert result.exit_code == 0, result.output
    assert [path for _, path, _, _ in requests] == ["/uuid-1/start", "/uuid-1"]
    assert requests[1][3] == summary_line(result.stdout)
    assert requests[0][2] == requests[1][2]  # the same rid pairs them
    reason = "answered HTTP 503" if "statuses" in failing_start else "failed (ReadTimeout)"
    assert result.stderr.count(f"ping to 127.0.0.1 {reason}; the run goes on") == 1


def test_prices_failed_start_ping_still_sends_the_fail_ping(database, one_market):
    env = upbit_env(database, one_market)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    one_market.set_blocked(True)
    with PingServer(statuses={"/start": 503}) as pings:
        result = run_cli("prices", "--exchange", "upbit", env=dict(env, WOMBAT_PING_URL=pings.url))
    assert result.exit_code == 1
    assert pings.paths() == ["/start", "/fail"]
    assert pings.requests[1][3] == summary_line(result.stderr)


def test_prices_dry_run_pings_nothing(database, one_market):
    with PingServer() as pings:
        result = run_cli("prices", "--exchange", "upbit", "--dry-run",
                         env=upbit_env(database, one_market, WOMBAT_PING_URL=pings.url))
    assert result.exit_code == 0
    assert pings.requests == []


def test_ping_url_appends_the_suffix_and_the_run_key():
    check = Check("prices", "kis", "r-1")
    assert healthchecks.ping_url("https://hc.example/p/k/{job}-{exchange}/", check, "/fail") == \
        "https://hc.example/p/k/prices-kis/fail?rid=r-1"
    assert healthchecks.ping_url("https://hc.example/x?create=1", check) == "https://hc.example/x?create=1&rid=r-1"


def broken_hook():
    """Return a hook module whose every function raises."""
    hook = types.ModuleType("wombat_collect.ops.broken")

    def explode(*arguments):
        raise RuntimeError("monitor exploded")

    hook.enabled, hook.start, hook.finish = (lambda settings: True), explode, explode
    return hook


def test_monitored_hook_failure_never_hides_the_runs_error(monkeypatch, caplog):
    monkeypatch.setattr(monitor, "enabled_hooks", lambda settings: [broken_hook()])
    with pytest.raises(DatabaseError, match="the real error"), caplog.at_level(logging.WARNING):
        with monitor.monitored(None, "prices", "upbit"):
            raise DatabaseError("the real error")
    assert [record.getMessage() for record in caplog.records] == [
        "monitoring broken: start failed: RuntimeError", "monitoring broken: finish failed: RuntimeError"]


def test_load_sdk_without_sentry_sdk_warns_once(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    monkeypatch.setattr(sentry, "_state", {"sdk": None, "warned": False})
    with caplog.at_level(logging.WARNING):
        assert sentry.load_sdk(None) is None
        assert sentry.load_sdk(None) is None
    assert [record.getMessage() for record in caplog.records] == [sentry.MISSING_HINT]


def test_prices_without_sentry_sdk_warns_and_succeeds(database, one_market, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    monkeypatch.setattr(sentry, "_state", {"sdk": None, "warned": False})
    result = run_cli("prices", "--exchange", "upbit",
                     env=upbit_env(database, one_market, SENTRY_DSN="http://public@127.0.0.1:9/1"))
    assert result.exit_code == 0
    assert result.stderr.count(sentry.MISSING_HINT) == 1


def sentry_items(env, *arguments):
    """Given an env and CLI arguments, run the CLI with SENTRY_DSN on a loopback server.

    Return (exit code, [(item type, payload)] of the envelopes received, raw request text).
    """
    pytest.importorskip("sentry_sdk")
    with PingServer() as server:
        dsn = f"http://publickey@{server.url.split('//')[1]}/42"
        completed = run(dict(env, SENTRY_DSN=dsn, KIS_APP_SECRET="Sentry-Hidden-Secret"), *arguments)
    items = [item for _, path, _, body in server.requests if path == "/api/42/envelope/"
             for item in envelope_items(body)]
    return completed, items, str(server.requests)


def check_ins(items):
    return [(payload["monitor_slug"], payload["status"]) for kind, payload in items if kind == "check_in"]


def test_prices_success_sends_sentry_check_ins_only(database, one_market):
    completed, items, _ = sentry_items(upbit_env(database, one_market), "prices", "--exchange", "upbit")
    assert completed.returncode == 0, completed.stderr
    assert check_ins(items) == [("wombat-collect-prices-upbit", "in_progress"), ("wombat-collect-prices-upbit", "ok")]
    assert [kind for kind, _ in items if kind != "check_in"] == []


def test_prices_failure_sends_an_error_check_in_and_the_summary(database, one_market):
    env = upbit_env(database, one_market)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    one_market.set_blocked(True)
    completed, items, raw = sentry_items(env, "prices", "--exchange", "upbit")
    assert completed.returncode == 1
    assert check_ins(items) == [("wombat-collect-prices-upbit", "in_progress"),
                                ("wombat-collect-prices-upbit", "error")]
    events = [payload for kind, payload in items if kind == "event"]
    assert [(event["level"], event["message"]) for event in events] == [("error", summary_line(completed.stderr))]
    assert "Sentry-Hidden-Secret" not in raw


def test_prices_exception_is_sent_to_sentry(database, one_market):
    env = upbit_env(database, one_market)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    completed, items, _ = sentry_items(env, "prices", "--exchange", "upbit", "--symbol", "NOPE/KRW")
    assert completed.returncode == 2
    events = [payload for kind, payload in items if kind == "event"]
    assert [(value["type"], value["value"]) for event in events for value in event["exception"]["values"]] == [
        ("ConfigError", "unknown symbol(s): NOPE/KRW")]
    assert all("vars" not in frame for event in events for value in event["exception"]["values"]
               for frame in value["stacktrace"]["frames"])
    assert check_ins(items)[-1] == ("wombat-collect-prices-upbit", "error")
