"""The one HTTP client every collector uses: timeouts, pacing, retries, error shapes.

Collectors differ only in how they read an answer: each passes a `classify`
function that turns (status, payload, text) into a Verdict. Everything else
(when to retry, how long to back off, when to stop) is decided here. Reading
a body (size cap, deadline, charset) lives in http_body.py; making exchange
text safe to show (JSON, one masked line, URLs) in http_text.py.
"""

import enum
import logging
import random
import threading
import time
from dataclasses import dataclass

from wombat_collect import __version__
from wombat_collect.errors import ExchangeBlocked, ExchangeError, SymbolNotFound, TokenExpired
from wombat_collect.http_body import DeadlinePassed, RefusedAnswer, decode_text, read_capped, redirect_problem
from wombat_collect.http_text import display_url, flatten, parse_json, snippet

USER_AGENT = f"wombat-collect/{__version__}"
CONNECT_TIMEOUT_SECONDS = 5.0
MAX_TRANSIENT_RETRIES = 4
MAX_THROTTLE_RETRIES = 8
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 10.0
MAX_JSON_BYTES = 8 * 1024 * 1024  # the largest API answer read; real pages are under 100 KB
DEADLINE_FACTOR = 2  # a whole answer must arrive within this many read timeouts of sending the request
UNREACHABLE_AFTER_GIVE_UPS = 3  # requests in a row that never got any answer: the exchange is down
NETWORK_REASONS = (  # (text in the exception, what the operator reads), first match wins
    ("Connection refused", "connection refused"),
    ("NameResolutionError", "cannot resolve the host name"),
    ("Name or service not known", "cannot resolve the host name"),
    ("Connection reset", "connection reset by the server"),
    ("RemoteDisconnected", "connection closed without an answer"),
    ("IncompleteRead", "answer cut short (connection closed mid-body)"),
    ("Network is unreachable", "network unreachable"),
    ("No route to host", "no route to host"),
    ("Cannot assign requested address", "cannot send from WOMBAT_SOURCE_ADDRESS (not an address of this host?)"),
)

logger = logging.getLogger(__name__)


class ExchangeUnreachable(ExchangeBlocked):
    """No answer at all (refused, reset, timed out) through every retry: stop that exchange's run.

    Raised when the host never answered during the run, or when several requests
    in a row gave up without any answer between them; one symbol's network
    trouble while the others get answers stays that symbol's failure.
    """


class Verdict(enum.Enum):
    """What to do with an answer."""

    OK = "ok"
    THROTTLED = "throttled"  # over the rate: back off, retry
    BLOCKED = "blocked"  # the exchange blocked us: stop at once
    RETRY = "retry"  # transient server trouble: retry a bounded number of times
    AUTH = "auth"  # token expired or invalid: renew once, retry
    NOT_FOUND = "not_found"  # the symbol is unknown to the exchange
    FAIL = "fail"  # a client error: do not retry


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as the classifiers see it; payload is parsed JSON or None."""

    status: int
    payload: object
    text: str
    content_type: str
    date: str | None = None  # the HTTP Date header: the server's clock (`wombat-collect check`)


def backoff_seconds(attempt, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS):
    """Given a 0-based attempt number, return an exponential back-off with full jitter."""
    return random.uniform(base, min(cap, base * 2 ** attempt))  # noqa: S311 - jitter, not crypto


class HttpClient:
    """A requests.Session per thread, bound to one exchange: base URL, pacers, classifier, authenticator.

    `limiters` maps request group -> RateLimiter; `authenticator`, if given, has
    headers() (added to every request) and invalidate() (called once on Verdict.AUTH).
    `source_address`, if given, is the local address every connection leaves from.
    """

    def __init__(self, name, base_url, limiters, classify, timeout,
                 authenticator=None, remaining_of=None, links=None, sleep=time.sleep, source_address=None):
        import requests

        self.name = name
        self.base_url = base_url.rstrip("/")
        self.limiters = limiters
        self.classify = classify
        self.timeout = (CONNECT_TIMEOUT_SECONDS, timeout)
        self.authenticator = authenticator
        self.remaining_of = remaining_of
        self.links = dict(links or {})  # other base URLs of the exchange, e.g. KIS master files
        self._sleep = sleep
        self.source_address = source_address
        self._local = threading.local()
        self._requests = requests
        self._counter_lock = threading.Lock()
        self.counters = {"requests": 0, "throttled": 0, "retried": 0}
        self._answered = False  # any HTTP answer from the host during this run
        self._silent_give_ups = 0  # requests in a row that gave up without any answer

    def session(self):
        """Return this thread's requests.Session (sessions are not thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._requests.Session()
            session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            session.headers.pop("Origin", None)
            if self.source_address:
                adapter = bound_adapter(self._requests, self.source_address)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
            self._local.session = session
        return session

    def request_json(self, method, path, group, params=None, body=None, headers=None):
        """Given a request, return the parsed JSON payload of its successful answer.

        Raise ExchangeBlocked on a block, ExchangeUnreachable (a kind of block) when
        the host does not answer at all, SymbolNotFound on an unknown symbol, and
        ExchangeError when retries are exhausted or the answer is a client error.
        """
        renewed = answered = False
        transient = throttled = 0
        while True:
            answer, problem, reached = self._send(method, path, group, params, body, headers)
            answered = answered or reached
            verdict, message = self.classify(answer) if answer else (Verdict.RETRY, problem)
            if verdict is Verdict.OK:
                return answer.payload
            if verdict is Verdict.THROTTLED:
                self.limiters[group].slow_down()
            if verdict is Verdict.THROTTLED and throttled < MAX_THROTTLE_RETRIES:
                self._back_off(group, throttled, "throttled", message)
                throttled += 1
            elif verdict is Verdict.RETRY and transient < MAX_TRANSIENT_RETRIES:
                self._back_off(None, transient, "retried", message)
                transient += 1
            elif verdict is Verdict.AUTH and self.authenticator:
                self.authenticator.invalidate()  # raises (a block) once a replacement token is rejected too
                if renewed:
                    raise self._error(verdict, message, path)
                renewed = True
            elif not answered and self._gave_up_unanswered():
                raise ExchangeUnreachable(f"{self.name}: cannot reach {display_url(self.base_url)}: {message} "
                                          f"(gave up after {transient + 1} attempts)")
            else:
                raise self._error(verdict, message, path)

    def probe(self, path, group, params=None):
        """Given a path, send one GET (no retry, no redirect, the client's timeouts); return its Answer.

        Raise ExchangeUnreachable naming the host and the reason when no answer came,
        ExchangeError on a redirect or an answer over the size cap.
        """
        answer, problem, _ = self._send("GET", path, group, params, None, None)
        if answer is None:
            raise ExchangeUnreachable(f"{self.name}: cannot reach {display_url(self.base_url)}: {problem}")
        return answer

    def get_bytes(self, url, group, limit):
        """Given an absolute URL and a size cap, return the body of its 200 answer (retrying transient errors).

        Raise ExchangeError if it cannot be had; at once, without a retry, on a
        redirect or an answer over `limit` bytes.
        """
        for attempt in range(MAX_TRANSIENT_RETRIES + 1):
            self.limiters[group].acquire()
            deadline = time.monotonic() + self.attempt_seconds()
            try:
                with self.session().get(url, timeout=self.timeout, allow_redirects=False, stream=True) as response:
                    if response.status_code == 200 or 300 <= response.status_code < 400:
                        return self._read(response, url, limit, deadline)
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500:
                    break
            except RefusedAnswer as refusal:
                raise ExchangeError(f"{self.name}: cannot download {display_url(url)}: {refusal}") from None
            except DeadlinePassed:
                problem = self._deadline_problem()
            except self._requests.RequestException as error:
                problem = _describe(error, self.timeout[1])
            if attempt < MAX_TRANSIENT_RETRIES:
                self._back_off(None, attempt, "retried", problem)
        raise ExchangeError(f"{self.name}: cannot download {display_url(url)}: {problem}")

    def attempt_seconds(self):
        """Return the total deadline of one attempt, in seconds: DEADLINE_FACTOR read timeouts."""
        return DEADLINE_FACTOR * self.timeout[1]

    def _deadline_problem(self):
        return f"answer not complete within {self.attempt_seconds():g}s (total deadline)"

    def _read(self, response, url, limit, deadline):
        """Given a streamed answer, return its body. Raise RefusedAnswer on a redirect or an answer over `limit`."""
        if 300 <= response.status_code < 400:
            raise RefusedAnswer(redirect_problem(response, url))
        return read_capped(response, limit, deadline, self.timeout[1])

    def _send(self, method, path, group, params, body, headers):
        """Send once under the group's pacer, never following a redirect.

        Return (Answer, None, True), or (None, reason, reached) on a network error
        or a passed deadline; `reached` tells whether the host began to answer (a
        body cut short) or not at all. Raise ExchangeError, for no retry, on a
        redirect or an answer over MAX_JSON_BYTES.
        """
        self.limiters[group].acquire()
        all_headers = dict(headers or {})
        if self.authenticator:
            all_headers.update(self.authenticator.headers())
        self._count("requests")
        url = self.base_url + path
        deadline = time.monotonic() + self.attempt_seconds()
        arrived = False
        try:
            with self.session().request(method, url, params=params, json=body, headers=all_headers,
                                        timeout=self.timeout, allow_redirects=False, stream=True) as response:
                arrived = True
                self._note_answer()
                content = self._read(response, url, MAX_JSON_BYTES, deadline)
        except RefusedAnswer as refusal:
            raise ExchangeError(f"{self.name}: {refusal}") from None
        except DeadlinePassed:
            return None, self._deadline_problem(), True
        except self._requests.RequestException as error:
            reached = arrived or isinstance(error, (self._requests.exceptions.ChunkedEncodingError,
                                                    self._requests.exceptions.ContentDecodingError))
            return None, _describe(error, self.timeout[1]), reached
        if self.remaining_of:
            self.limiters[group].observe_remaining(self.remaining_of(response.headers))
        text = decode_text(content, response.encoding)
        content_type = flatten(response.headers.get("Content-Type", ""))
        return Answer(response.status_code, parse_json(text), text, content_type,
                      response.headers.get("Date")), None, True

    def _note_answer(self):
        with self._counter_lock:
            self._answered = True
            self._silent_give_ups = 0

    def _back_off(self, group, attempt, counter, message):
        seconds = backoff_seconds(attempt)
        self._count(counter)
        logger.debug("%s: %s, backing off %.2fs", self.name, message, seconds)
        if group is not None:
            self.limiters[group].hold(seconds)  # every worker of the group slows down
        else:
            self._sleep(seconds)

    def _error(self, verdict, message, path):
        text = f"{self.name}: {message}"
        if verdict is Verdict.BLOCKED:
            return ExchangeBlocked(text)
        if verdict is Verdict.NOT_FOUND:
            return SymbolNotFound(text)
        if verdict is Verdict.AUTH:
            return TokenExpired(text)
        if verdict in (Verdict.THROTTLED, Verdict.RETRY):
            return ExchangeError(f"{text} (gave up after retries)")
        return ExchangeError(text)

    def _gave_up_unanswered(self):
        """Count a request that got no answer through its retries; return whether the host is down."""
        with self._counter_lock:
            self._silent_give_ups += 1
            return not self._answered or self._silent_give_ups >= UNREACHABLE_AFTER_GIVE_UPS

    def _count(self, counter):
        with self._counter_lock:
            self.counters[counter] += 1


def bound_adapter(requests, address):
    """Given the requests module and a local IP address, return an HTTPAdapter whose connections leave from it."""

    class SourceAddressAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *arguments, **keywords):
            keywords["source_address"] = (address, 0)
            super().init_poolmanager(*arguments, **keywords)

    return SourceAddressAdapter()


def _describe(error, read_timeout=None):
    """Given a requests exception, return a short plain reason: no URL, no query string, no object ids."""
    import requests

    text = str(error)
    if isinstance(error, requests.ConnectTimeout):
        return f"connect timed out after {CONNECT_TIMEOUT_SECONDS:g}s"
    if isinstance(error, requests.Timeout):
        return f"no answer within {read_timeout:g}s (read timeout)" if read_timeout else "read timed out"
    if isinstance(error, requests.exceptions.SSLError):
        return f"TLS error: {snippet(text.split('(Caused by', 1)[-1].strip(' )'))}"
    for needle, reason in NETWORK_REASONS:
        if needle in text:
            return reason
    kind = type(error).__name__
    reason = text.split("(Caused by", 1)[-1].strip(" )")
    return f"{kind}: {snippet(reason)}" if reason else kind
