"""FakeKis: a fake KIS Open API host (token, daily prices, multi-price quotes) that also serves
the master files.

Follows shared/reference/kis-api.md. Choices where the reference is silent or uncertain:

- One server plays both the API host and the master-file host: ``master_url`` is
  ``f"{url}/common/master"``. Master downloads need no auth and are not rate limited;
  a market whose zip was not set answers 404 (text/html). The "empty" fault on a master file
  answers a zip holding an empty ``.mst`` member.
- Error codes other than EGW00103/121/123/133/201 are plausible picks, not confirmed:
  EGW00102/EGW00104 (app key / secret missing), EGW00105 (wrong secret), EGW00205 (no
  ``Bearer`` authorization), EGW00208 (custtype not P), OPSQ0002 (tr_id missing or wrong),
  OPSQ2001 (a bad query parameter; answered with HTTP 200 and rt_cd "1", so a client must
  check rt_cd even on 200), MCA00124 (unknown path, HTTP 404), EGW00002 (the "500" fault).
- Check order on the price endpoint: rate limit (per ``appkey`` header value) -> app key and
  secret -> authorization/token -> tr_id, custtype -> query parameters.
- Token issuance is throttled per app key by ``token_throttle_seconds`` measured with ``now``;
  ``token_reuse_seconds`` (default None = off) models "asking again within ~6 h returns the
  same token". ``tokens_issued`` counts successful tokenP answers (a reused token counts).
  ``reject_tokens`` (default None) set to "EGW00121" or "EGW00123" rejects every token on use;
  ``token_fields`` (default empty) overrides fields of the tokenP answer (e.g. a huge ``expires_in``).
- ``FID_PERIOD_DIV_CODE`` D, W, M and Y are modelled (others answer OPSQ2001). A W/M/Y row
  aggregates the daily rows of its week (Monday to Sunday), month or year: open of the first
  day, highest high, lowest low, close and change of the last day, summed volume and value;
  it is dated on the period's **last trading day in the series** (as the one real monthly
  answer found does), so the running period is a partial row dated mid-period. The date
  range filters on that date. FID_COND_MRKT_DIV_CODE
  may be J, NX or UN; all serve the same rows. Query names are matched case-insensitively.
- ``pad_empty=True`` appends ``PAD_EMPTY_COUNT`` ``{}`` entries to a page holding fewer than
  100 rows (a page never exceeds 100 entries); ``duplicate_rows=True`` repeats the newest row
  of each page right after it (the oldest row is then cut to keep 100).
- Splits (``apply_split``): the row on the split day gets ``mod_yn`` "Y" and a non-"00"
  ``flng_cls_code`` (default "01"; the reference lists no split code); the original series
  (FID_ORG_ADJ_PRC=1) is otherwise unchanged. The adjusted series (0) divides prices of rows
  before the split day by the ratio (rounded half-up to whole won), multiplies their volumes,
  keeps traded values, and recomputes ``prdy_vrss``/``prdy_vrss_sign`` from adjusted closes.
- Multi-price quotes (``intstock-multprice``, tr_id FHKST11300006): the same header and rate
  checks as daily prices; pairs ``FID_COND_MRKT_DIV_CODE_n``/``FID_INPUT_ISCD_n`` for n = 1..30
  (a gap, more than 30, or a division code other than J/NX/UN: OPSQ2001). ``output`` holds one
  row per code that has a quote (``set_quote``) or daily rows (then derived from the newest row:
  price = close, bid = close, ask = close + one tick), in the order asked; other codes are left
  out. Field names are those of the reference plus, as seen in the official sample's column
  list, ``inter_kor_isnm``, ``inter2_prdy_vrss``, ``prdy_vrss_sign``, ``inter2_oprc``,
  ``inter2_hgpr``, ``inter2_lwpr`` and ``acml_tr_pbmn``. ``virtual=True`` plays the virtual
  host, which lacks this TR: MCA00124 (HTTP 404).
- The KONEX tail layout (38 fields, 184 bytes) is the official sample's (그룹코드 first, no
  그룹사코드); the reference only gives its total.
"""

from __future__ import annotations

import secrets
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from tests.fakes.common import (
    HTML_CONTENT_TYPE,
    KST,
    Admission,
    FakeService,
    Request,
    Response,
    SlidingWindowLimiter,
    json_response,
)
from tests.fakes.kis_auth import (
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    DEFAULT_TOKEN_LIFETIME_SECONDS,
    DEFAULT_TOKEN_THROTTLE_SECONDS,
    TOKEN_EXPIRY_FORMAT,
    IssuedToken,
    oauth_error,
)
from tests.fakes.kis_candles import (
    ROW_KEYS,
    SPLIT_FLNG_CLS_CODE,
    adjusted_rows,
    make_kis_rows,
    output1_snapshot,
    parse_price_query,
    period_rows,
)
from tests.fakes.kis_master_files import (
    LYING_ACTUAL_BYTES,
    MASTER_MARKETS,
    build_hostile_master_zip,
    build_master_row,
    build_master_zip,
    master_field_slices,
    master_file_name,
    master_market,
)
from tests.fakes.kis_protocol import (
    CUSTOMER_TYPE,
    MASTER_PREFIX,
    MAX_ROWS,
    NOT_FOUND_HTML,
    OK_CODE,
    OK_MESSAGE,
    PAD_EMPTY_COUNT,
    PRICE_PATH,
    PRICE_TR_ID,
    QUOTES_PATH,
    QUOTES_TR_ID,
    REVOKE_MESSAGE,
    REVOKE_PATH,
    TOKEN_PATH,
    Reject,
    rest_error,
)
from tests.fakes.kis_quotes import blank_quote, parse_quote_codes, quote_from_series

__all__ = [  # what other test files import from here
    "LYING_ACTUAL_BYTES",
    "PRICE_PATH",
    "PRICE_TR_ID",
    "FakeKis",
    "build_hostile_master_zip",
    "build_master_row",
    "build_master_zip",
    "make_kis_rows",
    "master_field_slices",
    "period_rows",
]

DEFAULT_RATE_LIMIT = 18


def _utc_now() -> datetime:
    """Return the current time, timezone aware."""
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- the fake


class FakeKis(FakeService):
    """A fake KIS API host plus master-file host on loopback. See the module docstring."""

    MALFORMED_BODY = b'{"output1":{"stck_prpr":"70000"},"output2":[{"stck_bsop_date": '
    HUGE_NUMBER_FIELD = "stck_clpr"  # only in output2 rows (output1 has stck_oprc too)

    def __init__(
        self,
        app_key: str = DEFAULT_APP_KEY,
        app_secret: str = DEFAULT_APP_SECRET,
        latency: float = 0.0,
        rate_limit: int | None = DEFAULT_RATE_LIMIT,
        token_throttle_seconds: float | None = DEFAULT_TOKEN_THROTTLE_SECONDS,
        token_lifetime_seconds: float = DEFAULT_TOKEN_LIFETIME_SECONDS,
        token_reuse_seconds: float | None = None,
        prices: dict[str, list[dict[str, str]]] | None = None,
        names: dict[str, str] | None = None,
        now: Callable[[], datetime] | None = None,
        pad_empty: bool = False,
        duplicate_rows: bool = False,
        virtual: bool = False,
    ) -> None:
        super().__init__(latency)
        self.virtual = virtual
        self._quotes: dict[str, dict[str, str]] = {}
        self.app_key = app_key
        self.app_secret = app_secret
        self.other_keys: dict[str, str] = {}  # more app key -> secret pairs accepted (add_app_key)
        self.token_throttle_seconds = token_throttle_seconds
        self.token_lifetime_seconds = token_lifetime_seconds
        self.token_reuse_seconds = token_reuse_seconds
        self.pad_empty = pad_empty
        self.duplicate_rows = duplicate_rows
        self.now = now or _utc_now
        self.tokens_issued = 0
        self.reject_tokens: str | None = None
        self.token_fields: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._limiter = SlidingWindowLimiter(rate_limit, 1.0)
        self._tokens: dict[str, IssuedToken] = {}
        self._last_issue: dict[str, IssuedToken] = {}
        self._prices: dict[str, list[dict[str, str]]] = {}
        self._splits: dict[str, list[tuple[str, Decimal]]] = {}
        self._names = dict(names or {})
        self._masters: dict[str, bytes] = {}
        for code, rows in (prices or {}).items():
            self.set_prices(code, rows)

    # ---- mutators

    @property
    def master_url(self) -> str:
        """Return the master-file base URL, e.g. ``http://127.0.0.1:PORT/common/master``."""
        return self.url + MASTER_PREFIX.rstrip("/")

    @property
    def tokens(self) -> list[IssuedToken]:
        """Return the tokens issued so far, oldest first."""
        with self._lock:
            return list(self._tokens.values())

    def set_prices(self, code: str, rows: list[dict[str, str]], name: str | None = None) -> None:
        """Given a code and its original rows (any order), replace them and forget its splits."""
        with self._lock:
            self._prices[code] = sorted((dict(row) for row in rows), key=lambda row: row["stck_bsop_date"])
            self._splits.pop(code, None)
            if name is not None:
                self._names[code] = name

    def apply_split(
        self, code: str, on_date: date | str, ratio: int | str | Decimal, flng_cls_code: str = SPLIT_FLNG_CLS_CODE
    ) -> None:
        """Given a code, the split day (date or YYYYMMDD) and a ratio (e.g. 50 for 1 -> 50
        shares), mark that day's row and adjust the adjusted series. Raise KeyError if the
        code has no row on that day."""
        day = on_date.strftime("%Y%m%d") if isinstance(on_date, date) else on_date
        with self._lock:
            row = next((row for row in self._prices.get(code, []) if row["stck_bsop_date"] == day), None)
            if row is None:
                raise KeyError(f"{code} has no row on {day}")
            row.update(flng_cls_code=flng_cls_code, mod_yn="Y")
            self._splits.setdefault(code, []).append((day, Decimal(ratio)))

    def set_quote(self, code: str, **fields: str) -> dict[str, str]:
        """Given a code and multi-price fields, set its quote row: the derived one (or a blank
        one) with those fields replaced (a field set to ``...`` is removed). Return it."""
        with self._lock:
            row = {**(self._quotes.get(code) or self.quote(code) or blank_quote(code)), **fields}
            self._quotes[code] = {key: value for key, value in row.items() if value is not ...}
            return dict(self._quotes[code])

    def quote(self, code: str) -> dict[str, str] | None:
        """Given a code, return its multi-price row, or None if it has no quote and no daily rows."""
        with self._lock:
            if code in self._quotes:
                return dict(self._quotes[code])
            series = self.series(code, adjusted=False)
            return quote_from_series(code, self._names.get(code, ""), series) if series else None

    def set_master(self, market: str, zip_bytes: bytes | None) -> None:
        """Given a master market and zip bytes (None removes it), serve them."""
        with self._lock:
            if zip_bytes is None:
                self._masters.pop(master_market(market), None)
            else:
                self._masters[master_market(market)] = zip_bytes

    def expire_tokens(self) -> None:
        """Make every token issued so far expired (EGW00123 on use)."""
        with self._lock:
            for token in self._tokens.values():
                token.expired = True

    def series(self, code: str, adjusted: bool = True) -> list[dict[str, str]]:
        """Given a code, return copies of its adjusted or original rows, oldest first."""
        with self._lock:
            rows = self._prices.get(code, [])
            if adjusted:
                return adjusted_rows(rows, self._splits.get(code, []))
            return [dict(row) for row in rows]

    # ---- admission

    def _admit(self, request: Request) -> Admission:
        """Given a request, reject price requests above the per-app-key rate with EGW00201."""
        if request.path not in (PRICE_PATH, QUOTES_PATH):
            return Admission()
        accepted, _ = self._limiter.acquire(request.header("appkey", ""))
        return Admission() if accepted else Admission(rest_error(500, "EGW00201"))

    # ---- routes

    def _route(self, request: Request, stuck_cursor: bool) -> Response:
        """Given an admitted request, return the normal answer for its route."""
        routes = {
            ("POST", TOKEN_PATH): self._answer_token,
            ("POST", REVOKE_PATH): self._answer_revoke,
            ("GET", PRICE_PATH): lambda req: self._answer_prices(req, stuck_cursor),
            ("GET", QUOTES_PATH): self._answer_quotes,
        }
        try:
            if request.method == "GET" and request.path.startswith(MASTER_PREFIX):
                return self._answer_master(request.path[len(MASTER_PREFIX) :])
            answer = routes.get((request.method, request.path))
            return answer(request) if answer else rest_error(404, "MCA00124")
        except Reject as rejection:
            return rejection.response

    def _internal_error(self) -> Response:
        """Return an HTTP 500 in the KIS REST error shape."""
        return rest_error(500, "EGW00002")

    def _empty_response(self, request: Request) -> Response:
        """Given a request, return a well-formed empty answer: no rows for prices, an empty
        ``.mst`` member for a master file, ``{}`` otherwise."""
        if request.path == PRICE_PATH:
            code = {name.upper(): value for name, value in request.query.items()}.get("FID_INPUT_ISCD", "")
            return self._price_answer(code, self.series(code), [])
        market = request.path[len(MASTER_PREFIX) :].split("_", 1)[0]
        if request.path.startswith(MASTER_PREFIX) and market in MASTER_MARKETS:
            return Response(200, build_master_zip(market, []), "application/zip")
        return json_response(200, {})

    def _error_with_message(self, request: Request, message: str) -> Response:
        """Given a request and a message, return an HTTP 400 error carrying it: the token
        endpoint's shape on ``/oauth2/tokenP``, the REST shape (rt_cd "1") elsewhere."""
        if request.path == TOKEN_PATH:
            return json_response(400, {"error_code": "EGW00101", "error_description": message})
        return json_response(400, {"rt_cd": "1", "msg_cd": "OPSQ0002", "msg1": message})

    # ---- tokens

    def add_app_key(self, app_key: str, app_secret: str) -> None:
        """Given another app key and its secret, accept them too (each key has its own rate limit and tokens)."""
        with self._lock:
            self.other_keys[app_key] = app_secret

    def _credential_problem(self, app_key: Any, app_secret: Any) -> str | None:
        """Given an app key and secret, return the KIS code of what is missing or wrong with them, or None."""
        with self._lock:
            known = {self.app_key: self.app_secret, **self.other_keys}
        if not app_key:
            return "EGW00102"
        if app_key not in known:
            return "EGW00103"
        if not app_secret:
            return "EGW00104"
        return "EGW00105" if app_secret != known[app_key] else None

    def _check_app_credentials(self, app_key: Any, app_secret: Any) -> None:
        """Given an app key and secret, raise Reject (403 token shape) if missing or wrong."""
        problem = self._credential_problem(app_key, app_secret)
        if problem:
            raise Reject(oauth_error(problem))

    def _answer_token(self, request: Request) -> Response:
        """Given a tokenP request, issue (or reuse) a token, or answer a 403 error."""
        body = request.json()
        if not isinstance(body, dict):
            return oauth_error("EGW00101")
        self._check_app_credentials(body.get("appkey"), body.get("appsecret"))
        if body.get("grant_type") != "client_credentials":
            return oauth_error("EGW00101")
        with self._lock:
            token = self._issue(body["appkey"], self.now())
            self.tokens_issued += 1
        return json_response(
            200,
            {
                "access_token": token.token,
                "access_token_token_expired": token.expires_at.astimezone(KST).strftime(TOKEN_EXPIRY_FORMAT),
                "token_type": "Bearer",
                "expires_in": int((token.expires_at - token.issued_at).total_seconds()),
                **self.token_fields,
            },
        )

    def _issue(self, app_key: str, now: datetime) -> IssuedToken:
        """Given an app key and the time, return a new or reused token (caller holds the
        lock). Raise Reject with EGW00133 within the throttle time of the last issuance."""
        last = self._last_issue.get(app_key)
        if last is not None:
            age = (now - last.issued_at).total_seconds()
            if self.token_throttle_seconds and age < self.token_throttle_seconds:
                raise Reject(oauth_error("EGW00133"))
            reusable = not (last.expired or last.revoked or now >= last.expires_at)
            if self.token_reuse_seconds and age < self.token_reuse_seconds and reusable:
                return last
        lifetime = timedelta(seconds=self.token_lifetime_seconds)
        token = IssuedToken("eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(96), app_key, now, now + lifetime)
        self._tokens[token.token] = token
        self._last_issue[app_key] = token
        return token

    def _answer_revoke(self, request: Request) -> Response:
        """Given a revokeP request, revoke its token (unknown tokens are accepted too)."""
        body = request.json()
        if not isinstance(body, dict):
            return oauth_error("EGW00101")
        self._check_app_credentials(body.get("appkey"), body.get("appsecret"))
        with self._lock:
            token = self._tokens.get(str(body.get("token")))
            if token is not None:
                token.revoked = True
        return json_response(200, {"code": 200, "message": REVOKE_MESSAGE})

    # ---- daily prices

    def _check_price_headers(self, request: Request, tr_id: str = PRICE_TR_ID) -> None:
        """Given a price (or quotes) request and its tr_id, raise Reject (HTTP 500, rt_cd "1") for a missing or wrong
        app key, secret, authorization, token, tr_id or custtype."""
        problem = self._credential_problem(request.header("appkey"), request.header("appsecret"))
        if problem:
            raise Reject(rest_error(500, problem))
        self._check_token(request.header("authorization") or "")
        if request.header("tr_id") != tr_id:
            raise Reject(rest_error(500, "OPSQ0002"))
        if request.header("custtype") != CUSTOMER_TYPE:
            raise Reject(rest_error(500, "EGW00208"))

    def _check_token(self, authorization: str) -> None:
        """Given an authorization header value, raise Reject unless it is ``Bearer`` with a
        live token of this fake: EGW00205 (not Bearer), EGW00121 (unknown or revoked),
        EGW00123 (expired)."""
        scheme, _, token_text = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token_text.strip():
            raise Reject(rest_error(500, "EGW00205"))
        with self._lock:
            token = self._tokens.get(token_text.strip())
            if self.reject_tokens:
                raise Reject(rest_error(500, self.reject_tokens))
            if token is None or token.revoked:
                raise Reject(rest_error(500, "EGW00121"))
            if token.expired or self.now() >= token.expires_at:
                raise Reject(rest_error(500, "EGW00123"))

    def _answer_prices(self, request: Request, stuck_cursor: bool) -> Response:
        """Given a daily price request, return its page: rows within the inclusive date range,
        newest first, at most 100 (``stuck_cursor`` ignores FID_INPUT_DATE_2)."""
        self._check_price_headers(request)
        query = parse_price_query(request.query)
        series = period_rows(self.series(query.code, query.adjusted), query.period)
        end = "99991231" if stuck_cursor else query.end
        window = [row for row in series if query.start <= row["stck_bsop_date"] <= end]
        return self._price_answer(query.code, series, self._page(window))

    def _creeping_response(self, request: Request) -> Response:
        """Given a price request, answer 100 copies of the newest row in range (the cursor then
        moves back one day per page); other requests normally."""
        if request.path != PRICE_PATH:
            return self._route(request, stuck_cursor=False)
        try:
            self._check_price_headers(request)
            query = parse_price_query(request.query)
        except Reject as rejection:
            return rejection.response
        series = self.series(query.code, query.adjusted)
        window = [row for row in series if query.start <= row["stck_bsop_date"] <= query.end]
        return self._price_answer(query.code, series, self._page(window[-1:]) * MAX_ROWS)

    def _page(self, window: list[dict[str, str]]) -> list[dict[str, str]]:
        """Given the rows in range oldest first, return the page as answered: newest first,
        at most 100, with duplicates and ``{}`` padding when configured."""
        page: list[dict[str, str]] = [{key: row[key] for key in ROW_KEYS if key in row} for row in reversed(window)][
            :MAX_ROWS
        ]
        if self.duplicate_rows and page:
            page = (page[:1] + [dict(page[0])] + page[1:])[:MAX_ROWS]
        if self.pad_empty and len(page) < MAX_ROWS:
            page += [{} for _ in range(min(PAD_EMPTY_COUNT, MAX_ROWS - len(page)))]
        return page

    def _price_answer(self, code: str, series: list[dict[str, str]], page: list[dict[str, str]]) -> Response:
        """Given a code, its full series and a page of rows, return the HTTP 200 answer."""
        with self._lock:
            name = self._names.get(code, "")
        body = {
            "output1": output1_snapshot(code, name, series),
            "output2": page,
            "rt_cd": "0",
            "msg_cd": OK_CODE,
            "msg1": OK_MESSAGE,
        }
        return json_response(200, body, **{"tr_id": PRICE_TR_ID, "tr_cont": "", "gt_uid": secrets.token_hex(16)})

    # ---- multi-price quotes

    def _answer_quotes(self, request: Request) -> Response:
        """Given a multi-price request, return the quote rows of its codes (those that have one)."""
        if self.virtual:
            return rest_error(404, "MCA00124")
        self._check_price_headers(request, QUOTES_TR_ID)
        codes = parse_quote_codes(request.query)
        rows = [row for row in map(self.quote, codes) if row is not None]
        body = {"rt_cd": "0", "msg_cd": OK_CODE, "msg1": OK_MESSAGE, "output": rows}
        return json_response(200, body, **{"tr_id": QUOTES_TR_ID, "tr_cont": "", "gt_uid": secrets.token_hex(16)})

    # ---- master files

    def _answer_master(self, file_name: str) -> Response:
        """Given a master file name, return its zip, or 404 if unknown or not set."""
        with self._lock:
            for market, zip_bytes in self._masters.items():
                if file_name == master_file_name(market):
                    return Response(200, zip_bytes, "application/zip")
        return Response(404, NOT_FOUND_HTML, HTML_CONTENT_TYPE)
