"""Bad operator input: every flag, environment variable, env file and lock directory done wrong.

Each must stop the run with exit 2 and one line on stderr naming what is wrong,
without a traceback, before anything happens: no table is created in the fresh
database and no request reaches the fake exchanges. The exceptions are noted:
`status` reports on stdout (monitoring-plugin style), and a world-readable env
file holding secrets only warns.
"""

import logging
import os
from datetime import date

import pytest

from tests.conftest import query, run_cli, upbit_env
from tests.fakes.kis_server import FakeKis
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles
from tests.fault_support import fresh_database, own_tables, public_tables
from tests.kis_support import kis_env
from wombat_collect.config import read_environment


@pytest.fixture(scope="module")
def pristine(server_dsn):
    """A fresh database shared by the module's tests: none may create anything in it."""
    with fresh_database(server_dsn) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def fakes():
    with FakeUpbit(rate_limit=None) as upbit, FakeKis(rate_limit=None) as kis:
        yield upbit, kis


@pytest.fixture
def env(pristine, fakes, tmp_path):
    """Return a complete, valid environment for both exchanges; fail the test if anything was touched."""
    upbit, kis = fakes
    upbit.clear_requests()
    kis.clear_requests()
    environment = kis_env(pristine, kis, tmp_path / "state", UPBIT_API_URL=upbit.url, UPBIT_RATE_LIMIT="1000")
    yield environment
    touched = public_tables(pristine) + own_tables(pristine)
    if touched:  # leave the next test a fresh database all the same
        query(pristine, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
                        " DROP SCHEMA IF EXISTS wombat_collect CASCADE; SELECT 1")
    assert touched == [], "a bad input created tables"
    assert (upbit.count(), kis.count()) == (0, 0), "a bad input reached an exchange"


def assert_usage_error(result, message):
    """Given a CLI result, check exit 2 and one stderr line holding `message`, no traceback, nothing on stdout."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


# --------------------------------------------------------------------------- flags

FLAG_CASES = [
    (["--log-format", "xml", "prices"], "Invalid value for '--log-format'"),
    (["--log-format", "", "prices"], "Invalid value for '--log-format'"),
    (["--bogus", "prices"], "No such option '--bogus'"),
    (["--env-file", "/nonexistent/wombat.env", "prices"],
     "cannot read env file /nonexistent/wombat.env: No such file or directory"),
    (["--env-file", "/etc", "prices"], "Invalid value for '--env-file': File '/etc' is a directory."),
    (["nope"], "No such command 'nope'"),
    (["symbols", "--exchange", "bitfinex"], "Invalid value for '--exchange': 'bitfinex' is not one of"),
    (["symbols", "--exchange", ""], "Invalid value for '--exchange'"),
    (["symbols", "--wait", "-1"], "Invalid value for '--wait': -1.0 is not in the range x>=0."),
    (["symbols", "--wait", "soon"], "Invalid value for '--wait': 'soon' is not a valid float range."),
    (["symbols", "--wait", "nan"], "Invalid value for '--wait': 'nan' is not a finite number."),
    (["symbols", "--wait", "inf"], "Invalid value for '--wait': 'inf' is not a finite number."),
    (["symbols", "upbit"], "Got unexpected extra argument (upbit)"),
    (["prices", "--exchange", "binance"], "Invalid value for '--exchange'"),
    (["prices", "--market", "NYSE"], "Invalid value for --market: unknown market NYSE (known: BTC, KONEX, KOSDAQ"),
    (["prices", "--market", "krw"], "unknown market krw"),
    (["prices", "--exchange", "upbit", "--market", "KOSPI"], "unknown market KOSPI (known: BTC, KRW, USDT)"),
    (["prices", "--exchange", "kis", "--market", "KRW"], "unknown market KRW (known: KONEX, KOSDAQ, KOSPI)"),
    (["prices", "--symbol", "KRW-BTC"], "Invalid value for --symbol: no selected exchange has a symbol like KRW-BTC "
                                        "(symbols look like upbit: BTC/KRW; kis: 005930)"),
    (["prices", "--symbol", "btc/krw"], "no selected exchange has a symbol like btc/krw"),
    (["prices", "--symbol", "BTC/EUR"], "no selected exchange has a symbol like BTC/EUR"),
    (["prices", "--symbol", "'; DROP TABLE symbol; --"], "no selected exchange has a symbol like '; DROP TABLE"),
    (["prices", "--symbol", ""], "no selected exchange has a symbol like "),
    (["prices", "--exchange", "upbit", "--symbol", "005930"], "symbols look like upbit: BTC/KRW)"),
    (["prices", "--exchange", "kis", "--symbol", "BTC/KRW"], "symbols look like kis: 005930)"),
    (["prices", "--market", "KOSPI", "--symbol", "BTC/KRW"], "--market and --symbol select no exchange together"),
    (["prices", "--days-back", "-3"], "Invalid value for '--days-back': -3 is not in the range 1<=x<=36500."),
    (["prices", "--days-back", "0"], "Invalid value for '--days-back'"),
    (["prices", "--days-back", "x"], "Invalid value for '--days-back': 'x' is not a valid integer range."),
    (["prices", "--days-back", "1.5"], "Invalid value for '--days-back'"),
    (["prices", "--days-back", "99999999"], "Invalid value for '--days-back': 99999999 is not in the range"),
    (["prices", "--since", "2025-13-01"], "Invalid value for '--since'"),
    (["prices", "--since", "yesterday"], "Invalid value for '--since'"),
    (["prices", "--since", "2999-01-01"], "Invalid value for --since: 2999-01-01 is in the future"),
    (["prices", "--since", "1969-12-31"], "Invalid value for --since: 1969-12-31 is before 1980-01-01 "
                                          "(use --full for all history)"),
    (["prices", "--since", "0001-01-01"], "0001-01-01 is before 1980-01-01"),
    (["prices", "--days-back", "3", "--full"], "--days-back and --full exclude each other"),
    (["prices", "--since", "2025-01-01", "--days-back", "3"], "--days-back and --since exclude each other"),
    (["prices", "--since", "2025-01-01", "--full"], "--since and --full exclude each other"),
    (["prices", "--wait", "-0.5"], "Invalid value for '--wait'"),
    (["prices", "--include-open=yes"], "Option '--include-open' does not take a value."),
    (["status", "--exchange", "nyse"], "Invalid value for '--exchange'"),
    (["status", "--max-age", "0"], "Invalid value for '--max-age': 0.0 is not in the range x>0."),
    (["status", "--max-age", "-1"], "Invalid value for '--max-age'"),
    (["status", "--max-age", "abc"], "Invalid value for '--max-age': 'abc' is not a valid float range."),
    (["status", "--max-age", "nan"], "Invalid value for '--max-age': 'nan' is not a finite number."),
    (["status", "--lag-days", "-1"], "Invalid value for '--lag-days': -1 is not in the range x>=0."),
    (["status", "--lag-days", "x"], "Invalid value for '--lag-days'"),
    (["status", "--lag-days", "2.5"], "Invalid value for '--lag-days'"),
    (["db", "init", "--force"], "No such option '--force'"),
    (["db", "upgrade"], "No such command 'upgrade'"),
    (["--env-file", "/nonexistent/wombat.env", "db", "init"], "cannot read env file /nonexistent/wombat.env"),
    (["--env-file", "/nonexistent/wombat.env", "symbols"], "cannot read env file /nonexistent/wombat.env"),
]


@pytest.mark.parametrize(("arguments", "message"), FLAG_CASES, ids=[" ".join(args) for args, _ in FLAG_CASES])
def test_cli_bad_flag_exits_2_with_one_line(env, arguments, message):
    assert_usage_error(run_cli(*arguments, env=env), message)


def test_prices_symbol_missing_from_the_stored_listing_exits_2_before_any_candle_request(database, fake_upbit):
    """A well-formed symbol can only be found unknown once the listing is stored: the run is recorded as failed."""
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 5)))
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    fake_upbit.clear_requests()
    result = run_cli("prices", "--symbol", "DOGE/KRW", "--symbol", "BTC/KRW", env=env)  # upbit only: no KIS key
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].endswith("ERROR prices upbit: unknown symbol(s): DOGE/KRW")
    assert "Traceback" not in result.output
    assert fake_upbit.count() == 0
    assert query(database, "SELECT job, exchange, status, error_summary"
                           " FROM wombat_collect.collect_run ORDER BY id")[1:] == [
        ("prices", "upbit", "failed", "unknown symbol(s): DOGE/KRW")]
    assert query(database, "SELECT count(*) FROM pricedata") == [(0,)]


def test_status_bad_env_file_is_critical_on_stdout(env):
    result = run_cli("--env-file", "/nonexistent/wombat.env", "status", env=env)
    assert result.exit_code == 2
    assert result.stdout.strip().splitlines() == [
        "WOMBAT-COLLECT CRITICAL - cannot read env file /nonexistent/wombat.env: No such file or directory"]
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- environment

ENV_CASES = [
    ("WOMBAT_WORKERS", "abc", "WOMBAT_WORKERS must be a whole number, not 'abc'"),
    ("WOMBAT_WORKERS", "0", "WOMBAT_WORKERS must be between 1 and 64, not 0"),
    ("WOMBAT_WORKERS", "65", "WOMBAT_WORKERS must be between 1 and 64, not 65"),
    ("WOMBAT_WORKERS", "1.5", "WOMBAT_WORKERS must be a whole number, not '1.5'"),
    ("WOMBAT_BACKFILL_DAYS", "-1", "WOMBAT_BACKFILL_DAYS must be between 1 and 36500, not -1"),
    ("WOMBAT_BACKFILL_DAYS", "1e3", "WOMBAT_BACKFILL_DAYS must be a whole number, not '1e3'"),
    ("WOMBAT_BACKFILL_DAYS", "36501", "WOMBAT_BACKFILL_DAYS must be between 1 and 36500, not 36501"),
    ("WOMBAT_HTTP_TIMEOUT", "x", "WOMBAT_HTTP_TIMEOUT must be a number, not 'x'"),
    ("WOMBAT_HTTP_TIMEOUT", "0", "WOMBAT_HTTP_TIMEOUT must be between 0.1 and 600, not 0"),
    ("WOMBAT_HTTP_TIMEOUT", "nan", "WOMBAT_HTTP_TIMEOUT must be between 0.1 and 600, not nan"),
    ("WOMBAT_HTTP_TIMEOUT", "inf", "WOMBAT_HTTP_TIMEOUT must be between 0.1 and 600, not inf"),
    ("WOMBAT_HTTP_TIMEOUT", "-5", "WOMBAT_HTTP_TIMEOUT must be between 0.1 and 600, not -5"),
    ("WOMBAT_LOCK_TIMEOUT", "soon", "WOMBAT_LOCK_TIMEOUT must be a number, not 'soon'"),
    ("WOMBAT_LOCK_TIMEOUT", "60s", "WOMBAT_LOCK_TIMEOUT must be a number, not '60s'"),
    ("WOMBAT_LOCK_TIMEOUT", "-1", "WOMBAT_LOCK_TIMEOUT must be between 0 and 86400, not -1"),
    ("WOMBAT_LOCK_TIMEOUT", "nan", "WOMBAT_LOCK_TIMEOUT must be between 0 and 86400, not nan"),
    ("WOMBAT_STATEMENT_TIMEOUT", "5min", "WOMBAT_STATEMENT_TIMEOUT must be a number, not '5min'"),
    ("WOMBAT_STATEMENT_TIMEOUT", "86401", "WOMBAT_STATEMENT_TIMEOUT must be between 0 and 86400, not 86401"),
    ("UPBIT_RATE_LIMIT", "fast", "UPBIT_RATE_LIMIT must be a number, not 'fast'"),
    ("UPBIT_RATE_LIMIT", "0", "UPBIT_RATE_LIMIT must be between 0.1 and 1000, not 0"),
    ("KIS_RATE_LIMIT", "twenty", "KIS_RATE_LIMIT must be a number, not 'twenty'"),
    ("KIS_RATE_LIMIT", "5000", "KIS_RATE_LIMIT must be between 0.1 and 1000, not 5000"),
    ("KIS_TOKEN_RETRY_WAIT", "-1", "KIS_TOKEN_RETRY_WAIT must be between 0 and 600, not -1"),
    ("KIS_ENV", "paper", "KIS_ENV must be 'real' or 'virtual', not 'paper'"),
    ("KIS_ADJUSTED", "maybe", "KIS_ADJUSTED must be true or false, not 'maybe'"),
    ("KIS_ADJUSTED", "2", "KIS_ADJUSTED must be true or false, not '2'"),
    ("UPBIT_API_URL", "ftp://x", "UPBIT_API_URL must be an http(s) URL"),
    ("UPBIT_API_URL", "http://", "UPBIT_API_URL must be an http(s) URL"),
    ("UPBIT_API_URL", "api.upbit.com", "UPBIT_API_URL must be an http(s) URL"),
    ("UPBIT_API_URL", "https://api.upbit.com:99999", "UPBIT_API_URL must be an http(s) URL"),
    ("UPBIT_API_URL", "https://api.upbit.com:port", "UPBIT_API_URL must be an http(s) URL"),
    ("UPBIT_API_URL", "http://api upbit.com", "UPBIT_API_URL must be an http(s) URL"),
    ("KIS_API_URL", "file:///etc/passwd", "KIS_API_URL must be an http(s) URL"),
    ("KIS_MASTER_URL", "ftp://dws.co.kr/master", "KIS_MASTER_URL must be an http(s) URL"),
    ("WOMBAT_PING_URL", "hc-ping.com/secret-key", "WOMBAT_PING_URL must be an http(s) URL"),
    ("DATABASE_URL", "postgresql://u:pw@[::1/x", "DATABASE_URL is not a valid libpq connection URI"),
    ("DATABASE_URL", "mysql://root@localhost/wombat", "DATABASE_URL is not a valid libpq connection URI"),
    ("DATABASE_URL", "postgresql://u:p%ZZsecret@h/db", "DATABASE_URL is not a valid libpq connection URI"),
    ("DATABASE_URL", "postgresql://u:pw@h:notaport/db",
     "DATABASE_URL has a port that is not a number between 1 and 65535"),
    ("DATABASE_URL", "postgresql://h:99999/db", "DATABASE_URL has a port that is not a number between 1 and 65535"),
    ("DATABASE_URL", "host=h port=x dbname=d", "DATABASE_URL has a port that is not a number between 1 and 65535"),
    ("DATABASE_URL", "postgresql://h/db?sslmode=bogus", "DATABASE_URL has an unknown sslmode"),
    ("POSTGRES_PORT", "x", "POSTGRES_PORT must be a whole number, not 'x'"),
    ("POSTGRES_PORT", "0", "POSTGRES_PORT must be between 1 and 65535, not 0"),
    ("POSTGRES_PORT", "70000", "POSTGRES_PORT must be between 1 and 65535, not 70000"),
    ("WOMBAT_LOCK_DIR", "/nonexistent/locks", "lock directory /nonexistent/locks does not exist (set WOMBAT_LOCK_DIR)"),
    ("WOMBAT_LOCK_DIR", "/etc/hostname", "lock directory /etc/hostname is not a directory (set WOMBAT_LOCK_DIR)"),
    ("WOMBAT_ENV_FILE", "/nonexistent/wombat.env", "cannot read env file /nonexistent/wombat.env: "
                                                   "No such file or directory"),
    ("WOMBAT_ENV_FILE", "/etc", "cannot read env file /etc: Is a directory"),
    *((variable, value, f"{variable} must be an https URL (http only for a loopback host such as 127.0.0.1)")
      for variable, value in (("UPBIT_API_URL", "http://api.upbit.com"),
                              ("KIS_API_URL", "http://openapi.koreainvestment.com:9443"),
                              ("KIS_MASTER_URL", "http://new.real.download.dws.co.kr/common/master"))),
]


@pytest.mark.parametrize(("unset", "message"), [
    (("KIS_APP_KEY",), "KIS_APP_KEY must be set to collect prices from KIS"),
    (("KIS_APP_SECRET",), "KIS_APP_SECRET must be set to collect prices from KIS"),
    (("KIS_APP_KEY", "KIS_APP_SECRET"), "KIS_APP_KEY and KIS_APP_SECRET must be set to collect prices from KIS"),
], ids=["key", "secret", "both"])
def test_prices_kis_without_keys_exits_2_with_one_line(env, unset, message):
    """Only KIS selected (by --exchange or by --market): a usage error, nothing written (the env fixture checks)."""
    for arguments in (("--exchange", "kis"), ("--market", "KOSPI")):
        assert_usage_error(run_cli("prices", *arguments, env=dict(env, **dict.fromkeys(unset, " "))), message)


def with_variable(env, variable, value):
    """Given a valid env, return it with one variable set (POSTGRES_PORT only counts without DATABASE_URL)."""
    changed = dict(env, **{variable: value})
    if variable == "POSTGRES_PORT":
        changed.update(DATABASE_URL="", POSTGRES_SERVER="127.0.0.1")
    return changed


@pytest.mark.parametrize("command", [["prices"], ["symbols"]], ids=["prices", "symbols"])
@pytest.mark.parametrize(("variable", "value", "message"), ENV_CASES,
                         ids=[f"{variable}={value}" for variable, value, _ in ENV_CASES])
def test_cli_bad_env_value_exits_2_with_one_line(env, command, variable, value, message):
    result = run_cli(*command, env=with_variable(env, variable, value))
    assert_usage_error(result, message)
    assert result.stderr.strip().endswith(message) or variable in ("DATABASE_URL", "WOMBAT_ENV_FILE")
    if variable == "DATABASE_URL":
        assert "pw" not in result.stderr and "secret" not in result.stderr


@pytest.mark.parametrize(("variable", "value", "message"), [
    case for case in ENV_CASES if case[0] != "WOMBAT_LOCK_DIR"
], ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None)
def test_db_init_bad_env_value_exits_2_with_one_line(env, variable, value, message):
    assert_usage_error(run_cli("db", "init", env=with_variable(env, variable, value)), message)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_prices_read_only_lock_dir_exits_2(env, tmp_path):
    locked = tmp_path / "locks"
    locked.mkdir(mode=0o555)
    assert_usage_error(run_cli("prices", env=dict(env, WOMBAT_LOCK_DIR=str(locked))),
                       f"lock directory {locked} is not writable (set WOMBAT_LOCK_DIR)")


# --------------------------------------------------------------------------- env files


def test_prices_env_file_with_invalid_utf8_exits_2(env, tmp_path):
    path = tmp_path / "latin1.env"
    path.write_bytes(b"WOMBAT_WORKERS=4\nKIS_APP_SECRET=caf\xe9\n")
    assert_usage_error(run_cli("--env-file", str(path), "prices", env=env),
                       f"cannot read env file {path}: not UTF-8 text (byte 35)")


def test_prices_env_file_bad_value_exits_2(env, tmp_path):
    path = tmp_path / "bad.env"
    path.write_text("WOMBAT_WORKERS=lots\n")
    path.chmod(0o600)
    env = {name: value for name, value in env.items() if name != "WOMBAT_WORKERS"}
    assert_usage_error(run_cli("--env-file", str(path), "prices", env=env),
                       "WOMBAT_WORKERS must be a whole number, not 'lots'")


def test_db_init_world_readable_env_file_with_secrets_warns_once_and_runs(database, tmp_path):
    path = tmp_path / "wombat.env"
    path.write_text(f"DATABASE_URL={database}\nKIS_APP_SECRET=Secr3tValueForTheWarningTest\n")
    path.chmod(0o644)
    result = run_cli("--env-file", str(path), "db", "init", env={"DATABASE_URL": None,
                                                                  "WOMBAT_DATA_DIR": str(tmp_path / "never")})
    assert result.exit_code == 0, result.output
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1
    assert warnings[0].endswith(f"WARNING env file {path} holds secrets (KIS_APP_SECRET) but every user may read it "
                                f"(mode 0644); run: chmod 600 {path}")
    assert "Secr3tValue" not in result.output
    assert "pricedata" in public_tables(database)


@pytest.mark.parametrize(("mode", "content", "named"), [
    (0o644, "POSTGRES_PASSWORD=hunter22\n", "POSTGRES_PASSWORD"),
    (0o604, "KIS_APP_KEY=PSabcdefgh\nKIS_APP_SECRET=xyz12345\n", "KIS_APP_KEY, KIS_APP_SECRET"),
    (0o604, "DATABASE_URL=postgresql://u:hunter22@db/wombat\n", "DATABASE_URL"),
    (0o600, "POSTGRES_PASSWORD=hunter22\n", None),
    (0o640, "POSTGRES_PASSWORD=hunter22\n", None),  # group-readable: the usual root:wombat 0640 deployment
    (0o644, "DATABASE_URL=postgresql://u@db/wombat\nWOMBAT_WORKERS=4\n", None),
    (0o644, "POSTGRES_PASSWORD=\n", None),
], ids=["password", "kis-key-and-secret", "dsn-with-password", "private", "group-only", "no-secret", "empty-secret"])
def test_read_environment_warns_about_a_world_readable_env_file_with_secrets(tmp_path, caplog, mode, content, named):
    path = tmp_path / "x.env"
    path.write_text(content)
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="wombat_collect.config"):
        read_environment(str(path), environ={})
    messages = [record.getMessage() for record in caplog.records]
    if named is None:
        assert messages == []
    else:
        assert messages == [f"env file {path} holds secrets ({named}) but every user may read it "
                            f"(mode {mode:04o}); run: chmod 600 {path}"]
        assert "hunter22" not in messages[0] and "xyz12345" not in messages[0]

