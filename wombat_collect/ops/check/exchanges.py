"""The exchange checks: one cheap request to each exchange (reachability), the host clock against its HTTP
Date header, and the KIS token (the cached one; a new one only with --issue-token)."""

import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from wombat_collect.errors import WombatError
from wombat_collect.ops.check.results import CRITICAL, OK, WARNING, guarded, result, skipped
from wombat_collect.ops.status import SEOUL

TOKEN_LOCK_WAIT_SECONDS = 30.0  # --issue-token: how long to wait for another process's issuance
SKEW_WARNING_SECONDS = 5.0
SKEW_CRITICAL_SECONDS = 60.0
DATE_RESOLUTION_SECONDS = 1.0  # an HTTP Date header is cut to the whole second
UPBIT_PROBE = ("/v1/market/all", "market")  # the listing without details: one small public request
KIS_MASTER_PROBE_MARKET = "KONEX"  # the smallest master zip


def exchange_check_names(exchanges):
    """Given exchange codes, return the names of their checks, in order."""
    names = {"upbit": ("upbit", "upbit clock"), "kis": ("kis master", "kis clock", "kis token")}
    return [name for code in exchanges for name in names[code]]


def exchange_checks(settings, exchanges, issue_token):
    """Given Settings, exchange codes and --issue-token, return each exchange's reachability, clock and token."""
    results = []
    if "upbit" in exchanges:
        results += probe_checks("upbit", upbit_probe, settings)
    if "kis" in exchanges:
        results += probe_checks("kis master", kis_master_probe, settings)
        results += guarded("kis token", check_kis_token, settings, issue_token)
    return results


def probe_checks(name, probe, settings):
    """Given a check name and probe(settings) -> (Answer, seconds, host time, URL), return reachability and clock."""
    from wombat_collect.http_text import snippet

    exchange = name.split()[0]
    clock = f"{exchange} clock"
    try:
        answer, seconds, host_time, url = probe(settings)
    except WombatError as error:
        return [result(name, CRITICAL, f"{str(error).removeprefix(f'{name}: ')}; check the network, DNS, a proxy "
                                       "or firewall, and the URL variable"), skipped(clock, f"{name} did not answer")]
    if answer.status != 200:
        found = result(name, CRITICAL, f"{url} answered HTTP {answer.status} in {seconds:.2f} s: {snippet(answer.text)}"
                                       "; is the URL variable right?")
    else:
        found = result(name, OK, f"{url} answered HTTP 200 in {seconds:.2f} s")
    return [found, clock_skew(clock, name, answer.date, host_time)]


def timed_probe(client, path, group):
    """Given an HttpClient, a path and its pacer group, return (Answer, seconds, host time at mid-request, URL)."""
    from wombat_collect.http_text import display_url

    started, started_clock = time.monotonic(), time.time()
    answer = client.probe(path, group)
    seconds = time.monotonic() - started
    return answer, seconds, started_clock + seconds / 2, display_url(client.base_url + path)


def upbit_probe(settings):
    """Given Settings, return timed_probe of Upbit's market listing."""
    from wombat_collect.collectors import upbit

    return timed_probe(upbit.open_client(settings), *UPBIT_PROBE)


def kis_master_probe(settings):
    """Given Settings, return timed_probe of the smallest KIS master zip on the master-file host."""
    from wombat_collect.collectors import kis
    from wombat_collect.collectors.kis_master import MASTER_FILES
    from wombat_collect.http import HttpClient
    from wombat_collect.ratelimit import RateLimiter

    limiters = {kis.MASTER_GROUP: RateLimiter(kis.MASTER_DOWNLOAD_RATE)}
    client = HttpClient("kis master", settings.kis_master_url, limiters, kis.classify, settings.http_timeout)
    return timed_probe(client, f"/{MASTER_FILES[KIS_MASTER_PROBE_MARKET]}", kis.MASTER_GROUP)


def clock_skew(name, exchange, date_header, host_time):
    """Given an answer's Date header and the host's time when it was sent, return the clock CheckResult.

    Positive skew: the host clock is behind. WARNING above SKEW_WARNING_SECONDS,
    CRITICAL above SKEW_CRITICAL_SECONDS. The Date header is cut to the second:
    its middle is compared.
    """
    try:
        server_time = parsedate_to_datetime(date_header).timestamp() + DATE_RESOLUTION_SECONDS / 2
    except (TypeError, ValueError, IndexError):
        return skipped(name, f"{exchange} sent no readable Date header")
    skew = server_time - host_time
    found = (f"host clock ({datetime.fromtimestamp(host_time, SEOUL):%Y-%m-%d %H:%M:%S %Z}) is {abs(skew):.1f} s "
             f"{'behind' if skew > 0 else 'ahead of'} {exchange}'s (HTTP Date)")
    if abs(skew) <= SKEW_WARNING_SECONDS:
        return result(name, OK, f"{found}, within {SKEW_WARNING_SECONDS:g} s")
    limit = SKEW_CRITICAL_SECONDS if abs(skew) > SKEW_CRITICAL_SECONDS else SKEW_WARNING_SECONDS
    return result(name, CRITICAL if limit == SKEW_CRITICAL_SECONDS else WARNING,
                  f"{found}, more than {limit:g} s; synchronise it (timedatectl set-ntp true, or chrony)")


def check_kis_token(settings, issue_token):
    """Given Settings, return the KIS credentials' CheckResult: the cached token and its expiry.

    Only with issue_token is a token issued (when none valid is cached) and cached:
    KIS throttles issuance and notifies the account holder each time.
    """
    from wombat_collect.collectors import kis
    from wombat_collect.collectors.kis_token import KST, cache_path, read_cache

    problem = kis.credentials_problem(settings)
    if problem:
        return result("kis token", WARNING, f"{problem} (the listing needs none); set them in the env file")
    if issue_token:
        token = kis.open_token_cache(settings, lock_wait=TOKEN_LOCK_WAIT_SECONDS).token()
        return result("kis token", OK, f"the KIS key works: token valid until "
                                       f"{token.expires_at.astimezone(KST):%Y-%m-%d %H:%M %Z}")
    path = cache_path(settings.state_dir, settings.kis_api_url, settings.kis_app_key)
    token = read_cache(path)
    if token is not None and datetime.now(timezone.utc) < token.renew_at:
        return result("kis token", OK, f"cached token valid until {token.expires_at.astimezone(KST):%Y-%m-%d %H:%M %Z}"
                                       f" ({path})")
    found = (f"cached token expired at {token.expires_at.astimezone(KST):%Y-%m-%d %H:%M %Z}" if token
             else f"no cached token in {path.parent}")
    return result("kis token", WARNING, f"{found}: the KIS key is unverified until the next KIS run issues one; "
                                        "to verify it now: wombat-collect check --exchange kis --issue-token "
                                        "(KIS throttles issuance and notifies the account holder)")
