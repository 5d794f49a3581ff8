"""The KIS token cache: one token a day shared by every process, renewed only when needed."""

import hashlib
import json
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import run_cli
from tests.fakes.kis_server import FakeKis
from tests.kis_support import install_masters, install_prices, kis_env, kis_prices
from wombat_collect.collectors import kis
from wombat_collect.collectors.kis_token import KST, TokenUnavailable, cache_path, parse_token, read_cache
from wombat_collect.config import load_settings
from wombat_collect.errors import ConfigError

TOKEN_PATH = "/oauth2/tokenP"


@pytest.fixture
def fake():
    with FakeKis(rate_limit=None) as server:
        yield server


def open_cache(fake, state_dir, app_key=None, retry_wait="0.05", clock=None):
    """Given a FakeKis and a state directory, return the TokenCache a fresh process would use."""
    settings = load_settings({"KIS_API_URL": fake.url, "KIS_APP_KEY": app_key or fake.app_key,
                              "KIS_APP_SECRET": fake.app_secret, "WOMBAT_STATE_DIR": str(state_dir),
                              "KIS_TOKEN_RETRY_WAIT": retry_wait})
    cache = kis.open_client(settings).authenticator
    if clock:
        cache._clock = clock
    return cache


def test_token_is_cached_in_a_private_file_without_the_key(fake, tmp_path):
    cache = open_cache(fake, tmp_path)
    token = cache.token()
    assert cache.path.parent == tmp_path / "kis-tokens"
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    text = cache.path.read_text()
    assert fake.app_key not in text and fake.app_secret not in text and fake.app_key not in cache.path.name
    assert json.loads(text)["access_token"] == token.value == fake.tokens[0].token
    assert token.expires_at == fake.tokens[0].expires_at.replace(microsecond=0)
    assert [item.name for item in cache.path.parent.iterdir() if item.suffix == ".tmp"] == []


def test_token_headers_carry_bearer_key_and_secret(fake, tmp_path):
    headers = open_cache(fake, tmp_path).headers()
    assert headers == {"authorization": f"Bearer {fake.tokens[0].token}", "appkey": fake.app_key,
                       "appsecret": fake.app_secret}
    request = fake.requests[0]
    assert (request.method, request.path) == ("POST", TOKEN_PATH)


def test_token_is_reused_by_the_next_process(fake, tmp_path):
    first = open_cache(fake, tmp_path).token()
    second = open_cache(fake, tmp_path).token()
    assert second == first
    assert fake.tokens_issued == 1


def test_token_is_renewed_ten_minutes_before_expiry(fake, tmp_path):
    expiry = open_cache(fake, tmp_path).token().expires_at
    almost = open_cache(fake, tmp_path, clock=lambda: expiry - timedelta(minutes=11)).token()
    assert fake.tokens_issued == 1
    fake.token_throttle_seconds = None
    renewed = open_cache(fake, tmp_path, clock=lambda: expiry - timedelta(minutes=9)).token()
    assert fake.tokens_issued == 2 and renewed.value != almost.value


def test_token_cache_is_keyed_by_host_and_app_key(fake, tmp_path):
    path = cache_path(tmp_path, "https://openapi.koreainvestment.com:9443", "PSabc")
    digest = hashlib.sha256(b"PSabc").hexdigest()[:16]
    assert path == tmp_path / "kis-tokens" / f"openapi.koreainvestment.com_9443-{digest}.json"
    assert cache_path(tmp_path, "https://openapivts.koreainvestment.com:29443", "PSabc") != path
    assert cache_path(tmp_path, "https://openapi.koreainvestment.com:9443", "PSabd") != path


def test_token_concurrent_processes_issue_one(fake, tmp_path):
    fake.latency = 0.2  # issuance is slow: every cache waits on the first one's lock
    caches = [open_cache(fake, tmp_path) for _ in range(6)]
    tokens = []
    threads = [threading.Thread(target=lambda cache=cache: tokens.append(cache.token().value)) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.tokens_issued == 1 and len(set(tokens)) == 1 and len(tokens) == 6


def test_invalidate_keeps_a_token_another_process_renewed(fake, tmp_path):
    fake.token_throttle_seconds = None
    stale, renewer = open_cache(fake, tmp_path), open_cache(fake, tmp_path)
    old = stale.headers()["authorization"]
    renewer.headers()
    renewer.invalidate()
    new = renewer.headers()["authorization"]
    stale.invalidate()  # a late rejection of the old token must not drop the new one
    assert stale.headers()["authorization"] == new != old
    assert read_cache(stale.path).value == new.split(" ", 1)[1]
    assert fake.tokens_issued == 2


def test_invalidate_drops_the_rejected_token_from_the_file(fake, tmp_path):
    cache = open_cache(fake, tmp_path)
    cache.headers()
    cache.invalidate()
    assert not cache.path.exists()


def test_token_throttled_issuance_waits_then_retries_once(fake, tmp_path):
    fake.token_throttle_seconds = 0.5
    start = datetime.now(timezone.utc)  # the fake's clock moves 0.3 s per token request, however slow the machine
    fake.now = lambda: start + timedelta(seconds=0.3 * fake.count(TOKEN_PATH))
    open_cache(fake, tmp_path / "first").token()
    token = open_cache(fake, tmp_path / "second", retry_wait="0.6").token()
    assert token.value == fake.tokens[-1].token
    assert [request.status for request in fake.requests] == [200, 403, 200]


def test_token_still_throttled_fails_clearly(fake, tmp_path):
    open_cache(fake, tmp_path / "first").token()
    cache = open_cache(fake, tmp_path / "second")
    with pytest.raises(TokenUnavailable, match=r"still throttled \(EGW00133\) after waiting"):
        cache.token()
    with pytest.raises(TokenUnavailable):
        cache.headers()  # the failure sticks: no request per symbol
    assert [request.status for request in fake.requests] == [200, 403, 403]


def test_token_invalid_app_key_fails_without_retry(fake, tmp_path):
    cache = open_cache(fake, tmp_path, app_key="PSwrongkey")
    wanted = "^kis token: HTTP 403: EGW00103 .*check KIS_APP_KEY and KIS_APP_SECRET"
    with pytest.raises(TokenUnavailable, match=wanted) as error:
        cache.token()
    assert "PSwrongkey" not in str(error.value) and fake.app_secret not in str(error.value)
    assert fake.count(TOKEN_PATH) == 1


def test_parse_token_reads_the_expiry_as_kst():
    now = datetime(2025, 7, 1, 0, 0, tzinfo=timezone.utc)
    token = parse_token({"access_token": "abcd", "access_token_token_expired": "2025-07-02 09:00:00",
                         "expires_in": 3}, now)
    assert token.expires_at == datetime(2025, 7, 2, tzinfo=timezone.utc)
    assert token.renew_at == datetime(2025, 7, 2, 9, 0, tzinfo=KST) - timedelta(minutes=10)


def test_parse_token_huge_expires_in_is_an_unreadable_expiry():
    now = datetime(2025, 7, 1, 0, 0, tzinfo=timezone.utc)
    for payload in ({"access_token": "abcd", "expires_in": 10 ** 30},
                    {"access_token": "abcd", "access_token_token_expired": "0001-01-01 00:00:00", "expires_in": "x"}):
        with pytest.raises(TokenUnavailable, match="^kis: the token answer has no readable expiry$"):
            parse_token(payload, now)


def test_token_cache_refuses_a_symlinked_directory(fake, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "kis-tokens").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="kis-tokens is a symbolic link; refusing to follow it"):
        open_cache(fake, tmp_path / "state")
    result = run_cli("prices", "--exchange", "kis", env=kis_env("postgresql://nobody@127.0.0.1:1/none", fake,
                                                                   tmp_path / "state"))
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "kis-tokens is a symbolic link; refusing to follow it" in result.stderr
    assert fake.requests == [] and list((tmp_path / "elsewhere").iterdir()) == []


def test_token_cache_never_follows_a_lock_file_planted_after_start(fake, tmp_path):
    cache = open_cache(fake, tmp_path)
    target = tmp_path / "target"
    target.write_text("")
    cache.path.parent.mkdir(mode=0o700)
    cache.lock_path.symlink_to(target)  # planted between start-up and the first token
    with pytest.raises(TokenUnavailable, match=r"^kis: cannot use the token cache .*: a symbolic link, refused$"):
        cache.token()
    assert fake.requests == [] and target.read_text() == "" and not cache.path.exists()


def test_token_cache_ignores_a_symlinked_token_file(fake, tmp_path):
    cache = open_cache(fake, tmp_path)
    cache.path.parent.mkdir(mode=0o700)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"access_token": "stolen", "expires_at": "2099-01-01T00:00:00+00:00",
                                  "renew_at": "2099-01-01T00:00:00+00:00"}))
    cache.path.symlink_to(secret)
    token = cache.token()  # the link is neither read nor written through: a new token replaces it
    assert token.value == fake.tokens[0].token and not cache.path.is_symlink()
    assert json.loads(secret.read_text())["access_token"] == "stolen"


def test_token_lock_held_by_another_process_is_waited_for_a_bounded_time(fake, tmp_path):
    cache = open_cache(fake, tmp_path)
    cache.lock_wait = 0.3
    cache.path.parent.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         " fcntl.flock(descriptor, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(cache.lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(TokenUnavailable, match=r"^kis: another process held the token lock .*\.lock for more "
                                                   r"than 0.3s; giving up$"):
            cache.token()
    finally:
        holder.communicate("")
    assert fake.requests == []
    assert open_cache(fake, tmp_path).token().value == fake.tokens[0].token  # once released, it is taken


def test_prices_every_token_rejected_stops_after_two_tokens(database, fake, tmp_path):
    fake.token_throttle_seconds = None
    fake.reject_tokens = "EGW00121"
    install_masters(fake)
    install_prices(fake, ["005930", "069500", "035720"])
    env = kis_env(database, fake, tmp_path / "state")
    assert run_cli("symbols", "--exchange", "kis", env=env).exit_code == 0
    for tokens in (2, 1):  # the next run starts with the cached token, rejected, then replaced once
        issued = fake.tokens_issued
        result = run_cli("prices", "--exchange", "kis", "--since", "2024-06-01", env=env)
        assert result.exit_code == 1, result.output
        assert fake.tokens_issued - issued == tokens
        errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and errors[0].endswith(
            "ERROR kis: the replacement access token was rejected too (EGW00121/EGW00123); stopping without "
            "issuing another (is the system clock right? is the app key still valid?)")
        assert len(result.stderr.splitlines()) == 2 and "FAILED: kis: the replacement" in result.stderr
    assert kis_prices(database) == []


def test_prices_huge_expires_in_fails_with_one_line(database, fake, tmp_path):
    fake.token_fields = {"access_token_token_expired": "", "expires_in": 10 ** 30}
    install_masters(fake)
    install_prices(fake, ["005930"])
    result = run_cli("prices", "--exchange", "kis", "--since", "2024-06-01",
                     env=kis_env(database, fake, tmp_path / "state"))
    assert result.exit_code == 1, result.output
    assert [line.split(" ERROR ")[1] for line in result.stderr.splitlines() if " ERROR " in line] == [
        "kis: the token answer has no readable expiry"]
    assert "Traceback" not in result.output and fake.count(TOKEN_PATH) == 1


def test_prices_three_runs_issue_one_token(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ["005930"])
    env = kis_env(database, fake, tmp_path / "state")
    for arguments in (("--since", "2024-05-01"), (), ()):
        result = run_cli("prices", "--exchange", "kis", *arguments, env=env)
        assert result.exit_code == 0, result.output
    assert fake.tokens_issued == 1
    files = list((tmp_path / "state" / "kis-tokens").glob("*.json"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    assert fake.app_key.encode() not in files[0].read_bytes()


def test_prices_expired_token_is_replaced_silently(database, fake, tmp_path):
    fake.token_throttle_seconds = None
    install_masters(fake)
    install_prices(fake, ["005930", "069500"])
    env = kis_env(database, fake, tmp_path / "state")
    assert run_cli("symbols", "--exchange", "kis", env=env).exit_code == 0
    assert run_cli("prices", "--exchange", "kis", "--since", "2024-06-01", env=env).exit_code == 0
    fake.expire_tokens()
    result = run_cli("prices", "--exchange", "kis", "--since", "2024-05-01", env=env)
    assert result.exit_code == 0, result.output
    assert fake.tokens_issued == 2 and fake.count(status=500) >= 1
    assert len([row for row in kis_prices(database) if row[1].month == 5]) == 2 * 23
    assert result.stderr == ""


def test_prices_secrets_never_reach_the_log(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ["005930"])
    result = run_cli("-v", "prices", "--exchange", "kis", "--since", "2024-06-01",
                     env=kis_env(database, fake, tmp_path / "state"))
    assert result.exit_code == 0, result.output
    output = result.stdout + result.stderr
    assert fake.app_key not in output and fake.app_secret not in output and fake.tokens[0].token not in output
