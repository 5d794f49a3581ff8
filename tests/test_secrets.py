"""Secret hygiene: recognisable secrets travel through every path and surface nowhere.

The database password, the KIS app key and secret, the KIS access tokens and the
ping URL's key are used by real runs (Upbit and KIS, succeeding and failing, a
database refusing the password, `status`, `status --json`, metrics, pings, text
and JSON logs at debug level). Every log line, error, metrics file, collect_run
row, status output and ping (body, path and query) is then searched for them,
also URL-encoded and JSON-escaped: there must be no hit. The KIS token cache
is checked to be private (file 0600, directory 0700).
"""

import contextlib
import json
import os
import re
import socketserver
import stat
import struct
import threading
import uuid
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import quote, quote_plus

import psycopg2.extensions
import pytest

from tests.conftest import query
from tests.fakes.common import HTML_CONTENT_TYPE, Response, json_response
from tests.fakes.kis_server import FakeKis
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles
from tests.fault_support import KIS_PRICES_PATH, TODAY, collect_runs, for_market, fresh_database, install_kis
from tests.ops_support import PingServer, run

DB_USER = f"wombat_secret_user_{uuid.uuid4().hex[:8]}"  # unique: test runs may share a server
DB_PASSWORD = "Wb-pw/Secr3t+Q7x"  # needs URL-encoding in a URI: travels both ways
KIS_KEY = "PSwombatKey" + "7" * 25
KIS_SECRET = "wombatAppSecret+/" + "Zq" * 80
WRONG_SECRET = "wrongAppSecret+/" + "Xy" * 80
PING_KEY = f"ping-key-{uuid.uuid4().hex}"
CODES = ("005930", "069500")
MARKETS = ("KRW-BTC", "BTC-ETH")


def variants(secret):
    """Given a secret, return the forms it could surface in: as is, URL-encoded, JSON-escaped."""
    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}


class EchoingKis(FakeKis):
    """A FakeKis whose error pages can echo the request's credentials back, as some gateways' debug pages do:
    `echoes[code]` lists the statuses of the next answers for that code (503 is retried, 400 is not)."""

    def __init__(self, **keywords):
        super().__init__(**keywords)
        self.echoes = {}

    def _answer_prices(self, request, stuck_cursor):
        statuses = self.echoes.get(request.query.get("FID_INPUT_ISCD"))
        if not statuses:
            return super()._answer_prices(request, stuck_cursor)
        echoed = [request.header(name) for name in ("appsecret", "authorization", "appkey")]
        page = f"<html>{statuses[0]} {' '.join(echoed)}</html>"  # the secret first: a cut message keeps its start
        return Response(statuses.pop(0), page.encode(), HTML_CONTENT_TYPE)


class PasswordRefusingServer:
    """A loopback server speaking just enough of the PostgreSQL protocol to ask for a cleartext
    password and refuse it, recording every password it was sent."""

    def __init__(self):
        self.passwords = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                while True:
                    length, code = struct.unpack("!ii", self._read(8))
                    if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not spoken here
                        self.request.sendall(b"N")
                        continue
                    parameters = self._read(length - 8).split(b"\0")
                    user = dict(zip(parameters[0::2], parameters[1::2], strict=False)).get(b"user", b"?")
                    break
                self.request.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
                kind, length = self._read(1), struct.unpack("!i", self._read(4))[0]
                if kind == b"p":
                    outer.passwords.append(self._read(length - 4).rstrip(b"\0").decode())
                fields = (b"SFATAL\0VFATAL\0C28P01\0M" + b'password authentication failed for user "' + user
                          + b'"\0\0')
                self.request.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)

            def _read(self, size):
                data = b""
                while len(data) < size:
                    chunk = self.request.recv(size - len(data))
                    if not chunk:
                        raise ConnectionError("client went away")
                    data += chunk
                return data

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


def uri_with_password(dsn, user, password):
    """Given a DSN, return it as a postgresql:// URI with `user` and a URL-encoded `password`."""
    parts = psycopg2.extensions.parse_dsn(dsn)
    host = parts.get("host", "")
    location = "" if host.startswith("/") else f"{host}:{parts.get('port', '5432')}"
    socket_query = f"?host={quote(host, safe='')}&port={parts.get('port', '5432')}" if host.startswith("/") else ""
    return f"postgresql://{quote(user)}:{quote(password, safe='')}@{location}/{parts['dbname']}{socket_query}"


@contextlib.contextmanager
def password_database(server_dsn):
    """Yield (URI with DB_PASSWORD, admin DSN) of a fresh database; on a server from WOMBAT_TEST_DATABASE_URL
    it is owned by a role with that password (the embedded server trusts every local user and ignores it)."""
    with contextlib.ExitStack() as stack:
        system = bool(os.environ.get("WOMBAT_TEST_DATABASE_URL", "").strip())
        if system:
            query(server_dsn, f"DROP ROLE IF EXISTS {DB_USER}; CREATE ROLE {DB_USER} LOGIN PASSWORD %s; SELECT 1",
                  (DB_PASSWORD,))
            stack.callback(query, server_dsn, f"DROP ROLE IF EXISTS {DB_USER}; SELECT 1")
        admin = stack.enter_context(fresh_database(server_dsn))
        user = DB_USER if system else psycopg2.extensions.parse_dsn(admin).get("user", "postgres")
        if system:
            query(server_dsn, f'ALTER DATABASE "{psycopg2.extensions.parse_dsn(admin)["dbname"]}" OWNER TO {DB_USER};'
                              " SELECT 1")
        yield uri_with_password(admin, user, DB_PASSWORD), admin


@pytest.fixture(scope="module")
def evidence(server_dsn, tmp_path_factory):
    """Run every scenario once; return what they left behind: outputs, run rows, metrics, status, pings, tokens."""
    root = tmp_path_factory.mktemp("secrets")
    with contextlib.ExitStack() as stack:
        dsn, admin = stack.enter_context(password_database(server_dsn))
        upbit = stack.enter_context(FakeUpbit(rate_limit=None))
        for market in MARKETS:
            upbit.set_candles(market, make_upbit_candles(market, TODAY - timedelta(days=10), TODAY))
        kis = stack.enter_context(EchoingKis(app_key=KIS_KEY, app_secret=KIS_SECRET, rate_limit=None,
                                          token_throttle_seconds=None))
        install_kis(kis, CODES, start=date(2024, 6, 3))
        pings = stack.enter_context(PingServer())
        refusing = stack.enter_context(PasswordRefusingServer())
        (root / "locks").mkdir()
        env_file = root / "wombat.env"
        env_file.write_text(f"KIS_APP_KEY={KIS_KEY}\nKIS_APP_SECRET={KIS_SECRET}\n")
        env_file.chmod(0o600)
        env = {"DATABASE_URL": dsn, "UPBIT_API_URL": upbit.url, "UPBIT_RATE_LIMIT": "1000",
               "KIS_API_URL": kis.url, "KIS_MASTER_URL": kis.master_url, "KIS_RATE_LIMIT": "200",
               "KIS_TOKEN_RETRY_WAIT": "0.1", "WOMBAT_STATE_DIR": str(root / "state"),
               "WOMBAT_METRICS_DIR": str(root), "WOMBAT_LOCK_DIR": str(root / "locks"),
               "WOMBAT_PING_URL": f"{pings.url}/ping/{PING_KEY}/{{job}}-{{exchange}}", "WOMBAT_HTTP_TIMEOUT": "5"}
        kis_env = dict(env, KIS_APP_KEY=KIS_KEY, KIS_APP_SECRET=KIS_SECRET)
        refused = dict(env, DATABASE_URL=f"postgresql://{DB_USER}:{quote(DB_PASSWORD, safe='')}@127.0.0.1:"
                                         f"{refusing.port}/wombat")
        postgres_variables = {name: value for name, value in env.items() if name != "DATABASE_URL"}
        postgres_variables.update(POSTGRES_SERVER="127.0.0.1", POSTGRES_PORT=str(refusing.port),
                                  POSTGRES_USER=DB_USER, POSTGRES_PASSWORD=DB_PASSWORD, POSTGRES_DB="wombat")
        outputs, statuses = [], []

        def batch(*calls):
            """Run (environment, arguments, is_status) calls side by side; return their exit codes."""
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=len(calls)) as executor:
                done = list(executor.map(lambda call: run(call[0], *call[1]), calls))
            for (_, arguments, is_status), completed in zip(calls, done, strict=True):
                outputs.append((arguments, completed.returncode, completed.stdout, completed.stderr))
                if is_status:
                    statuses.append(completed.stdout)
            return [completed.returncode for completed in done]

        for verbosity in (("-v",), ("-v", "--log-format", "json")):
            assert batch((env, (*verbosity, "prices", "--exchange", "upbit", "--days-back", "5"), False),
                         (kis_env, (*verbosity, "prices", "--exchange", "kis", "--since", "2024-06-03"), False),
                         ) == [0, 0]
        kis.expire_tokens()  # the cached token is refused (EGW00123): renewed on the fly
        assert batch((env, ("-v", "--env-file", str(env_file), "prices", "--exchange", "kis", "--days-back", "3"),
                      False)) == [0]
        kis.echoes = {CODES[0]: [503, 503], CODES[1]: [400]}  # retried, then fails: each echoing the credentials
        upbit.inject("503", count=2, match=for_market(MARKETS[0]))
        bad = make_upbit_candles(MARKETS[1], TODAY - timedelta(days=10), TODAY)
        bad[-2]["high_price"] = Decimal(-1)
        upbit.set_candles(MARKETS[1], bad)  # and one symbol fails: a rejected candle
        assert batch((kis_env, ("-v", "--log-format", "json", "prices", "--exchange", "kis", "--since", "2024-06-03"),
                      False),
                     (env, ("-v", "prices", "--exchange", "upbit", "--days-back", "3"), False)) == [1, 1]
        assert batch((dict(kis_env, KIS_APP_SECRET=WRONG_SECRET),
                      ("-v", "prices", "--exchange", "kis", "--symbol", CODES[1], "--days-back", "3"), False),
                     ) == [1]  # KIS refuses the secret
        kis.clear_faults()
        upbit.clear_faults()
        (root / "locks0").mkdir()
        (root / "locks1").mkdir()
        codes = batch((env, ("-v", "status"), True), (env, ("status", "--json"), True),
                      (env, ("-v", "--log-format", "json", "status", "--json"), True),
                      (dict(refused, WOMBAT_LOCK_DIR=str(root / "locks0")), ("-v", "prices", "--exchange", "upbit"),
                       False),
                      (dict(refused, KIS_APP_KEY=KIS_KEY, KIS_APP_SECRET=KIS_SECRET,
                            WOMBAT_LOCK_DIR=str(root / "locks1")),
                       ("-v", "--log-format", "json", "prices", "--exchange", "kis"), False),
                      (refused, ("-v", "status", "--json"), True),
                      (postgres_variables, ("-v", "--log-format", "json", "db", "init"), False),
                      (postgres_variables, ("-v", "status"), True))
        assert codes[3:] == [1, 1, 2, 1, 2]
        yield {
            "outputs": outputs, "statuses": statuses, "runs": collect_runs(admin), "root": root,
            "metrics": (root / "wombat_collect.prom").read_text(), "pings": list(pings.requests),
            "tokens": [token.token for token in kis.tokens], "refused passwords": list(refusing.passwords),
            "kis requests": kis.requests,
        }


def json_record(line):
    """Given an output line, return it as a JSON log record (a dict with a message), or None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "message" in record else None


def secrets_of(evidence):
    found = {DB_PASSWORD, KIS_KEY, KIS_SECRET, WRONG_SECRET, PING_KEY, *evidence["tokens"]}
    return {form for secret in found for form in variants(secret)}


def hits(texts, secrets):
    """Given texts and secrets, return [(secret, text start)] for every secret, or its first 12 characters
    (what an error message cut short would keep), found in a text."""
    return [(secret[:12] + "…", text[:120]) for text in texts for secret in secrets if secret[:12] in text]


def test_secrets_were_really_used(evidence):
    """The hygiene checks below are only worth something if the secrets travelled: check that they did."""
    assert len(evidence["tokens"]) == 2  # issued, then renewed after EGW00123
    price_headers = [record.headers for record in evidence["kis requests"] if record.path == KIS_PRICES_PATH]
    assert {headers["appkey"] for headers in price_headers} == {KIS_KEY}
    assert {headers["appsecret"] for headers in price_headers} == {KIS_SECRET, WRONG_SECRET}
    assert {headers["authorization"] for headers in price_headers} == {
        f"Bearer {token}" for token in evidence["tokens"]}
    assert evidence["refused passwords"] == [DB_PASSWORD] * 5  # DATABASE_URL thrice, POSTGRES_PASSWORD twice
    assert any(" DEBUG " in stderr + stdout for _, _, stdout, stderr in evidence["outputs"])
    assert any("EGW00105" in stderr for _, _, _, stderr in evidence["outputs"])
    assert any(f'password authentication failed for user \\"{DB_USER}\\"' in stdout + stderr
               or f'password authentication failed for user "{DB_USER}"' in stdout + stderr
               for _, _, stdout, stderr in evidence["outputs"])
    assert len(evidence["runs"]) == 8 and evidence["pings"]


def test_logs_and_errors_hold_no_secret(evidence):
    texts = [text for _, _, stdout, stderr in evidence["outputs"] for text in (stdout, stderr)]
    decoded = [record["message"] for text in texts for record in map(json_record, text.splitlines()) if record]
    assert len(decoded) > 10, "the JSON runs logged nothing"
    assert hits(texts + decoded, secrets_of(evidence)) == []


def test_run_history_holds_no_secret(evidence):
    assert hits(evidence["runs"], secrets_of(evidence)) == []


def test_metrics_file_holds_no_secret(evidence):
    assert "wombat_collect_last_run_status" in evidence["metrics"]
    assert hits([evidence["metrics"]], secrets_of(evidence)) == []


def test_status_output_holds_no_secret(evidence):
    assert len(evidence["statuses"]) == 5
    assert hits(evidence["statuses"], secrets_of(evidence)) == []


def test_pings_hold_no_secret(evidence):
    secrets = secrets_of(evidence) - variants(PING_KEY)  # the key is the pings' own address
    assert {path for _, path, _, _ in evidence["pings"]} >= {f"/ping/{PING_KEY}/prices-kis/fail",
                                                              f"/ping/{PING_KEY}/prices-upbit"}
    assert hits([" ".join(ping) for ping in evidence["pings"]], secrets) == []


def test_token_cache_is_private(evidence):
    directory = evidence["root"] / "state" / "kis-tokens"
    files = [path for path in directory.iterdir() if path.suffix == ".json"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert KIS_KEY not in files[0].name and json.loads(files[0].read_text())["access_token"] == evidence["tokens"][-1]
    assert all(stat.S_IMODE(path.stat().st_mode) & 0o077 == 0 for path in directory.iterdir())


SENTRY_KEY = f"sentrypublic{uuid.uuid4().hex}"


class EchoingUpbit(FakeUpbit):
    """A FakeUpbit whose candles of one market answer HTTP 400 with `echo` as Upbit's error message."""

    def __init__(self, market, **keywords):
        super().__init__(**keywords)
        self.market = market
        self.echo = ""

    def _answer_candles(self, request, stuck_cursor):
        if request.query.get("market") != self.market:
            return super()._answer_candles(request, stuck_cursor)
        return json_response(400, {"error": {"name": 400, "message": self.echo}})


def test_registered_secrets_are_masked_in_every_encoded_form(database, tmp_path):
    """The ping URL, the Sentry DSN and the database URL's userinfo are registered, and every secret is masked
    JSON-escaped and hex-encoded too: an exchange echoing them all leaves none in the log or the run history.
    (The test server trusts local users: the password travels in the URL but is not asked for.)"""
    user = psycopg2.extensions.parse_dsn(database).get("user", "postgres")
    dsn, admin = uri_with_password(database, user, DB_PASSWORD), database
    with contextlib.ExitStack() as stack:
        upbit = stack.enter_context(EchoingUpbit(MARKETS[0], rate_limit=None))
        for market in MARKETS:
            upbit.set_candles(market, make_upbit_candles(market, TODAY - timedelta(days=5), TODAY))
        ping_url = f"http://127.0.0.1:1/ping/{PING_KEY}/{{job}}-{{exchange}}"
        sentry_dsn = f"http://{SENTRY_KEY}@127.0.0.1:1/42"
        userinfo = dsn.split("//", 1)[1].rsplit("@", 1)[0]
        echoed = [ping_url.replace("{job}-{exchange}", "prices-upbit"), sentry_dsn, userinfo,
                  json.dumps(ping_url)[1:-1].replace("/", "\\/"), json.dumps(sentry_dsn),
                  re.sub("%[0-9A-F]{2}", lambda match: match.group(0).lower(), quote(DB_PASSWORD, safe="")),
                  DB_PASSWORD.encode().hex(), DB_PASSWORD.encode().hex().upper()]
        upbit.echo = " | ".join(echoed)
        env = {"DATABASE_URL": dsn, "UPBIT_API_URL": upbit.url, "UPBIT_RATE_LIMIT": "1000",
               "WOMBAT_LOCK_DIR": str(tmp_path), "WOMBAT_PING_URL": ping_url, "SENTRY_DSN": sentry_dsn,
               "WOMBAT_HTTP_TIMEOUT": "5"}
        outputs = [run(env, *verbosity, "prices", "--exchange", "upbit", "--days-back", "3")
                   for verbosity in (("-v",), ("-v", "--log-format", "json"))]
        assert [completed.returncode for completed in outputs] == [1, 1]
        texts = [text for completed in outputs for text in (completed.stdout, completed.stderr)]
        shown = 'upbit: HTTP 400: ***prices-upbit | *** | *** | ***{job}-{exchange} | "***" | *** | *** | ***'
        assert shown in texts[1] and json.dumps(shown)[1:-1] in texts[3]  # the whole echo reached the log, masked
        runs = collect_runs(admin)
        assert len(runs) == 2
        found = {PING_KEY, SENTRY_KEY, DB_PASSWORD, userinfo}
        forms = {form for secret in found for form in variants(secret) | {secret.encode().hex()}}
        assert hits(texts + runs, forms) == []


def test_kis_key_pair_read_from_files_is_masked(tmp_path):
    from wombat_collect.commands.common import App
    from wombat_collect.logging_setup import redact

    key, secret = "PSkeyfromafile" + "7" * 22, "secretfromafile" + "7" * 165
    (tmp_path / "key").write_text(key)
    (tmp_path / "secret").write_text(secret)
    env_file = tmp_path / "env"
    env_file.write_text(f"KIS_APP_KEY_FILE={tmp_path / 'key'}\nKIS_APP_SECRET_FILE={tmp_path / 'secret'}\n")
    env_file.chmod(0o600)

    App(str(env_file)).settings()

    assert redact(f"appkey={key} appsecret={secret}") == "appkey=*** appsecret=***"
