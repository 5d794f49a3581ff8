"""KIS (Korea Investment & Securities) Open API: master-file listings, day/week/month/year prices and quotes.

Facts: ../shared/reference/kis-api.md. Symbols are KIS short codes as listed
(`005930`, `00680K`, `F70101786`); the listing comes from one master file per
market (kis_master), the prices from the daily chart endpoint, authenticated
with an access token shared by every run through a file cache (kis_token).

REBASE_ON_CHANGE is True: KIS serves adjusted prices by default (KIS_ADJUSTED),
and a split or rights issue rewrites the whole adjusted history, so a flagged
or changed candle makes the job re-collect the symbol's stored range. With
KIS_ADJUSTED=false the original prices never change basis; candles then carry
no corporate-action flag and only a corrected stored row triggers a (harmless)
re-collection.
"""

import itertools
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from wombat_collect.collectors import chunks, map_concurrently
from wombat_collect.collectors.kis_master import MAX_ZIP_BYTES, master_url, parse_master, read_member
from wombat_collect.collectors.kis_token import (
    CREDENTIAL_CODES,
    ISSUE_RATE,
    TOKEN_GROUP,
    TokenCache,
    classify_token,
)
from wombat_collect.collectors.paging import check_page_budget, page_budget
from wombat_collect.errors import ExchangeError
from wombat_collect.http import HttpClient, Verdict
from wombat_collect.http_text import flatten, snippet
from wombat_collect.ratelimit import RateLimiter
from wombat_collect.records import Candle, Covered, ExchangeInfo, Quote, RejectedCandle, RejectedQuote
from wombat_collect.timeframes import DAILY, next_start, period_start, utc_midnight
from wombat_collect.validate import EARLIEST_SANE_DATE, rounded_percent

EXCHANGE = ExchangeInfo(code="kis", name="Korea Investment & Securities", country="KR", timezone="Asia/Seoul")
MARKETS = ("KOSPI", "KOSDAQ", "KONEX")
SYMBOL_PATTERN = re.compile(r"[0-9A-Z]{6,9}")  # what `--symbol` may name: a short code (005930, 00680K, F70101786)
SYMBOL_EXAMPLE = "005930"
LISTING_GROUPS = MARKETS  # one master file per market
REBASE_ON_CHANGE = True  # adjusted history is rewritten after corporate actions (see above)
TRADES_EVERY_PERIOD = False  # KRX trades on its calendar, derived from the stored candles (gaps.py)
PRICES_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
PRICES_GROUP = "prices"
MASTER_GROUP = "master"
MASTER_DOWNLOAD_RATE = 5.0  # master downloads per second at most (three small files per run)
PRICES_HEADERS = {"content-type": "application/json; charset=utf-8", "tr_id": "FHKST03010100", "custtype": "P"}
MARKET_DIVISION = "J"  # KRX
PERIOD_DAILY = "D"
TIMEFRAMES = {"1d": PERIOD_DAILY, "1w": "W", "1M": "M", "1y": "Y"}  # timeframe -> FID_PERIOD_DIV_CODE
ADJUSTED_PRICES, ORIGINAL_PRICES = "0", "1"  # FID_ORG_ADJ_PRC
PAGE_SIZE = 100  # rows per answer at most, newest first, no continuation key
EARLIEST_DATE = date(1980, 1, 4)  # first KRX trading day of 1980: "all history"
DATE_FORMAT = "%Y%m%d"
KST = timezone(timedelta(hours=9), "KST")
FINAL_AFTER = timedelta(hours=9)  # 00:00 UTC + 9 h = 18:00 KST, the end of after-hours trading
SUCCESS = "0"  # rt_cd
RATE_CODE = "EGW00201"
TOKEN_CODES = {"EGW00121", "EGW00123"}  # invalid, expired token: renew once
TRANSIENT_CODES = {"EGW00002"}  # "server error": retry like a bare 5xx
NO_CORPORATE_ACTION = ("", "00")  # flng_cls_code
QUOTES_PATH = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
QUOTES_HEADERS = {"content-type": "application/json; charset=utf-8", "tr_id": "FHKST11300006", "custtype": "P"}
QUOTE_CODES_PER_REQUEST = 30  # FID_INPUT_ISCD_1 .. _30
QUOTE_WORKERS = 4  # multi-price requests in flight at once (the app key's pacer keeps the rate)
VIRTUAL_HOST_NOTE = "quotes need the multi-price TR FHKST11300006, which the virtual host (KIS_ENV=virtual) lacks"
QUOTE_FIELDS = {  # Quote field -> multi-price output field; change_rate is already in percent
    "current": "inter2_prpr",
    "bid": "inter2_bidp",
    "ask": "inter2_askp",
    "volume_24h": "acml_vol",  # the day's accumulated volume (KRX has no rolling 24 h)
    "change_rate": "prdy_ctrt",
}
OPTIONAL_QUOTE_FIELDS = ("bid", "ask")  # "0" or blank: nothing standing on that side
CANDLE_FIELDS = {
    "open": "stck_oprc",
    "high": "stck_hgpr",
    "low": "stck_lwpr",
    "close": "stck_clpr",
    "volume": "acml_vol",
    "quote_volume": "acml_tr_pbmn",
}


class KisClient(HttpClient):
    """An HttpClient for KIS that also knows which price series (adjusted or original) to ask for."""

    def __init__(self, *arguments, adjusted=True, virtual=False, **keywords):
        super().__init__(*arguments, **keywords)
        self.adjusted = adjusted
        self.virtual = virtual


def credentials_problem(settings):
    """Given Settings, return the line naming the credentials prices need that are missing, or None.

    The master files (the listing) are public: only prices need KIS_APP_KEY and KIS_APP_SECRET.
    """
    missing = [name for name, value in (("KIS_APP_KEY", settings.kis_app_key),
                                        ("KIS_APP_SECRET", settings.kis_app_secret)) if not value]
    return f"{' and '.join(missing)} must be set to collect prices from KIS" if missing else None


def open_client(settings):
    """Given Settings, return a KisClient with its pacers, and its token cache when the credentials are set.

    Without credentials the client can download the public master files only
    (credentials_problem says so before any price request).
    """
    if credentials_problem(settings):
        return new_client(settings, None)
    return new_client(settings, open_token_cache(settings))


def open_token_cache(settings, lock_wait=None):
    """Given Settings with the KIS credentials, return the TokenCache of their app key on the API host.

    `lock_wait` bounds the wait for another process's issuance (default: KIS_TOKEN_RETRY_WAIT + 120 s).
    Raise ConfigError if the cache path is a symbolic link.
    """
    token_client = HttpClient("kis token", settings.kis_api_url, {TOKEN_GROUP: RateLimiter(ISSUE_RATE)},
                              classify_token, settings.http_timeout, source_address=settings.source_address)
    return TokenCache(token_client, settings.kis_app_key, settings.kis_app_secret,
                      settings.state_dir, settings.kis_token_retry_wait, lock_wait=lock_wait)


def new_client(settings, authenticator):
    """Given Settings and a TokenCache (or None), return the KisClient with its pacers."""
    limiters = {PRICES_GROUP: RateLimiter(settings.kis_rate_limit), MASTER_GROUP: RateLimiter(MASTER_DOWNLOAD_RATE)}
    return KisClient("kis", settings.kis_api_url, limiters, classify, settings.http_timeout,
                     authenticator=authenticator, links={"master": settings.kis_master_url},
                     adjusted=settings.kis_adjusted, virtual=settings.kis_virtual,
                     source_address=settings.source_address)


def fetch_symbols(client, group=None):
    """Given a client and a market (None: all three), yield a SymbolRecord per listed security.

    Raise ExchangeError if a master file cannot be downloaded or unzipped.
    """
    for market in (group,) if group else MARKETS:
        url = master_url(client.links["master"], market)
        content = read_member(client.get_bytes(url, MASTER_GROUP, MAX_ZIP_BYTES), market)
        yield from parse_master(content, market)


def fetch_daily_candles(client, symbol, start=None):
    """Given a short code and a first date (None: all history), yield its daily candles (fetch_candles)."""
    first = utc_midnight(start) if start else None
    return (item for item in fetch_candles(client, symbol, DAILY, first) if not isinstance(item, Covered))


def fetch_candles(client, symbol, timeframe, start=None, end=None):
    """Given a short code, a timeframe of TIMEFRAMES and a first period (None: all history), yield its candles.

    Newest first; each candle stored at the start of its period whatever trading
    day KIS dates the row with. Pages backwards 100 rows at a time until a short
    page or the start (aligned down to its period's start), continuing from the
    start of the oldest returned period minus one day; skips `{}` padding and
    duplicate periods. An empty page after a full one ends the history only if
    asking again confirms it. Ends with one Covered marker (KIS series are
    short: one transaction). Pages start at `end`'s trade date in Asia/Seoul
    (None: today; a repair of a past range pages back from its end). Raise
    ExchangeError if a page is malformed, does not move backwards, or the window
    takes more pages than it can need (collectors.paging). Rows are whole
    periods up to `last`, so N distinct periods always move back N periods; a
    page of repeated periods is caught by the budget.
    """
    first = max(period_start(start, timeframe).date() if start else EARLIEST_DATE, EARLIEST_DATE)
    today = datetime.now(KST).date()
    last = min(today, end.astimezone(KST).date()) if end else today
    covered_end = datetime.now(timezone.utc) if last == today else end
    budget = page_budget(first, last, PAGE_SIZE, timeframe)
    seen = set()
    for pages in itertools.count(1):
        if first > last:
            break
        check_page_budget(pages, budget, "kis", symbol, first)
        rows = fetch_page(client, symbol, first, last, TIMEFRAMES[timeframe])
        if not rows and seen:
            rows = fetch_page(client, symbol, first, last, TIMEFRAMES[timeframe])
        periods = [period_of(day, timeframe) for day in map(trade_date, rows) if day and day >= first]
        oldest = min(periods, default=None)
        if oldest is not None and oldest > last:
            raise ExchangeError(f"kis: prices of {symbol} did not move back past {last:%Y-%m-%d}")
        yield from page_candles(rows, first, seen, client.adjusted, timeframe)
        if len(rows) < PAGE_SIZE or oldest is None or oldest <= first:
            break
        last = oldest - timedelta(days=1)
    yield Covered(start=utc_midnight(first), end=covered_end)


def period_of(day, timeframe):
    """Given a trade date and a timeframe, return the first day of the period holding it."""
    return period_start(utc_midnight(day), timeframe).date()


def fetch_page(client, symbol, first, end, period_code=PERIOD_DAILY):
    """Given a code and an inclusive date range, return the non-empty rows of one answer.

    Raise ExchangeError if output2 is not a list.
    """
    params = {
        "FID_COND_MRKT_DIV_CODE": MARKET_DIVISION, "FID_INPUT_ISCD": symbol,
        "FID_INPUT_DATE_1": first.strftime(DATE_FORMAT), "FID_INPUT_DATE_2": end.strftime(DATE_FORMAT),
        "FID_PERIOD_DIV_CODE": period_code,
        "FID_ORG_ADJ_PRC": ADJUSTED_PRICES if client.adjusted else ORIGINAL_PRICES,
    }
    payload = client.request_json("GET", PRICES_PATH, PRICES_GROUP, params=params, headers=PRICES_HEADERS)
    rows = payload.get("output2")
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise ExchangeError(f"kis: prices of {symbol}: output2 is not a list: {snippet(str(rows))}")
    return [row for row in rows if row != {}]


def page_candles(rows, first, seen, adjusted, timeframe=DAILY):
    """Given a page's rows, yield a Candle or RejectedCandle per period not yet seen and not before `first`.

    A day before any sane date (validate.EARLIEST_SANE_DATE) is yielded all the
    same, so validation rejects and counts it instead of it vanishing unnoticed.
    A halted day without trades (no volume, zero open/high/low) has no candle.
    """
    for row in rows:
        day = trade_date(row)
        if day is not None:
            day = period_of(day, timeframe)
            if day in seen or EARLIEST_SANE_DATE.date() <= day < first:
                continue
            seen.add(day)
            if is_day_without_trades(row):
                continue
        yield parse_candle(row, day, adjusted)


def is_day_without_trades(row):
    """Given a row, return whether it records no trades: zero volume and zero open, high and low.

    KRX reports a trading-halt day (거래정지) that way, with the last close carried
    over; storing it would invent a candle (and fail validation every night).
    """
    fields = ("acml_vol", "stck_oprc", "stck_hgpr", "stck_lwpr")
    return all(decimal_of(row.get(field)) == 0 for field in fields)


def trade_date(row):
    """Given a row, return its stck_bsop_date as a date, or None if it is missing or malformed."""
    text = row.get("stck_bsop_date") if isinstance(row, dict) else None
    try:
        return datetime.strptime(text, DATE_FORMAT).date() if isinstance(text, str) and len(text) == 8 else None
    except ValueError:
        return None


def parse_candle(row, day, adjusted):
    """Given a row and its trade date (None if unreadable), return a Candle or a RejectedCandle saying why.

    The candle starts at 00:00 UTC of the trade date. A corporate action is
    flagged only on the adjusted series (the original one never re-bases).
    """
    if day is None:
        shown = row.get("stck_bsop_date") if isinstance(row, dict) else row
        return RejectedCandle(f"bad stck_bsop_date: {snippet(repr(shown))}")
    values = {}
    for field, source in CANDLE_FIELDS.items():
        values[field] = decimal_of(row.get(source))
        if values[field] is None:
            return RejectedCandle(f"{day:%Y-%m-%d}: {source} is not a number: {snippet(repr(row.get(source)))}")
    timestamp = utc_midnight(day)
    return Candle(timestamp=timestamp, corporate_action=adjusted and is_corporate_action(row), **values)


def decimal_of(value):
    """Given a KIS value (a string of digits, normally), return it as a finite Decimal, or None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def is_corporate_action(row):
    """Given a row, return whether KIS flags a corporate action that day (flng_cls_code, mod_yn)."""
    lock_code = str(row.get("flng_cls_code") or "").strip()
    return lock_code not in NO_CORPORATE_ACTION or str(row.get("mod_yn") or "").strip() == "Y"


def candle_closes_at(timestamp, timeframe=DAILY):
    """Given a candle's start and timeframe, return when it is final: 18:00 KST of its period's last calendar day."""
    return next_start(timestamp, timeframe) - timedelta(days=1) + FINAL_AFTER


def quotes_unavailable(client):
    """Given a client, return why it cannot fetch quotes (the virtual host), or None."""
    return VIRTUAL_HOST_NOTE if client.virtual else None


def fetch_quotes(client, symbols):
    """Given short codes, return a Quote (or RejectedQuote) for each one the answers hold.

    QUOTE_CODES_PER_REQUEST codes a multi-price request, QUOTE_WORKERS requests
    at once. KIS gives no quote time: it is the time of each answer. Codes
    absent from the answers are left out. Raise ExchangeError if an answer
    cannot be had or its output is not a list.
    """
    return map_concurrently(lambda batch: fetch_quote_batch(client, batch),
                            chunks(list(symbols), QUOTE_CODES_PER_REQUEST), QUOTE_WORKERS)


def fetch_quote_batch(client, codes):
    """Given at most 30 codes, return the Quotes and RejectedQuotes of one multi-price answer."""
    params = {}
    for number, code in enumerate(codes, start=1):
        params[f"FID_COND_MRKT_DIV_CODE_{number}"] = MARKET_DIVISION
        params[f"FID_INPUT_ISCD_{number}"] = code
    payload = client.request_json("GET", QUOTES_PATH, PRICES_GROUP, params=params, headers=QUOTES_HEADERS)
    answered_at = datetime.now(timezone.utc)
    rows = payload.get("output")
    if not isinstance(rows, list):
        raise ExchangeError(f"kis: multi-price output is not a list: {snippet(str(rows))}")
    wanted = set(codes)
    return [parse_quote(row, answered_at) for row in rows
            if isinstance(row, dict) and str(row.get("inter_shrn_iscd") or "").strip() in wanted]


def parse_quote(row, answered_at):
    """Given one multi-price output row and the answer's time, return a Quote or a RejectedQuote."""
    code = str(row["inter_shrn_iscd"]).strip()
    values = {}
    for field, source in QUOTE_FIELDS.items():
        values[field] = decimal_of(row.get(source))
        if field in OPTIONAL_QUOTE_FIELDS and not values[field]:
            values[field] = None  # no bid or ask standing ("0" or blank)
        elif values[field] is None:
            return RejectedQuote(code, f"{code}: {source} is not a number: {snippet(repr(row.get(source)))}")
    values["change_rate"] = rounded_percent(values["change_rate"])
    return Quote(code, quoted_at=answered_at, **values)


def classify(answer):
    """Given an Answer of a KIS data call, return (Verdict, message); rt_cd decides whatever the status."""
    payload = answer.payload
    if not isinstance(payload, dict):
        verdict = Verdict.RETRY if answer.status == 200 or answer.status >= 500 else Verdict.FAIL
        kind = "not JSON" if payload is None else "not a JSON object"
        return verdict, f"HTTP {answer.status}, {kind} ({answer.content_type or 'no type'}): {snippet(answer.text)}"
    code = str(payload.get("msg_cd") or payload.get("error_code") or "").strip()
    if payload.get("rt_cd") == SUCCESS:
        return Verdict.OK, ""
    if code == RATE_CODE:
        return Verdict.THROTTLED, f"HTTP {answer.status}: {code} over the rate limit"
    if code in TOKEN_CODES:
        return Verdict.AUTH, f"HTTP {answer.status}: {code} access token rejected"
    message = f"HTTP {answer.status}: {error_message(payload, code, answer.text)}"
    if code in CREDENTIAL_CODES:
        return Verdict.FAIL, f"{message} (check KIS_APP_KEY and KIS_APP_SECRET)"
    if code in TRANSIENT_CODES or (answer.status >= 500 and "rt_cd" not in payload):
        return Verdict.RETRY, message
    return Verdict.FAIL, message


def error_message(payload, code, text):
    """Given an error answer's JSON, its code and body, return `CODE message` (msg1 stripped)."""
    description = flatten(payload.get("msg1") or payload.get("error_description") or "")
    if not code and not description:
        return snippet(text) or "(empty body)"
    return f"{flatten(code) or 'no msg_cd'} {description}".rstrip()
