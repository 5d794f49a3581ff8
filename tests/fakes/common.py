"""Shared plumbing for the fake exchange servers (FakeUpbit, FakeKis).

A fake is a ``FakeService`` subclass: it owns the data and answers ``Request`` objects with
``Response`` objects. This module owns everything that is not exchange specific:

- ``FakeHTTPServer``: a ``ThreadingHTTPServer`` on 127.0.0.1, port 0, one daemon thread per
  connection, HTTP/1.1 keep-alive (every answer carries Content-Length), a deep accept queue.
- ``FakeService``: start()/stop()/context manager, ``.url``, per-request latency (slept in the
  handler thread, so concurrent requests do not wait for each other), ``clock_offset`` (seconds
  the ``Date`` header of every answer is off from the real time), the request log,
  fault injection, and the order in which a request is processed:

      arrival -> logged -> ``_admit`` (rate limits, blocks) -> fault or normal answer
              -> latency -> written

  A request rejected by ``_admit`` (429, EGW00201, 418, ...) does not consume a fault.
  A request that gets a fault still counts against the rate limits (it was admitted).
- ``SlidingWindowLimiter``: at most N accepted requests in any window (strict, per key).
- ``dumps_with_decimals``: JSON with ``Decimal`` written as raw JSON numbers.

Fault kinds (``FakeService.inject``):
    "500"                 HTTP 500 with the fake's JSON error body.
    "503"                 HTTP 503 with an HTML body, as a gateway/load balancer sends it.
    "malformed_json"      HTTP 200, JSON content type, body cut mid-object.
    "truncated"           The normal answer, Content-Length of the full body, half the body
                          sent, then the connection is closed.
    "wrong_content_type"  HTTP 200 text/html ``<html>oops</html>``.
    "empty"               HTTP 200 with the fake's "no data" answer (Upbit ``[]``; KIS
                          ``output2: []``).
    "reset"               The connection is closed abruptly (RST) without any answer.
    "timeout"             Sleep ``seconds`` (default 5) in the handler, then answer normally.
    "stuck_cursor"        The paging cursor is ignored (Upbit ``to``, KIS FID_INPUT_DATE_2).
    "creeping_cursor"     The page moves the cursor back by the least step the API allows:
                          Upbit candles re-dated one second apart just before ``to``, KIS 100
                          copies of the newest row in range (one day back per page).
    "redirect"            HTTP 302 (307 for a POST) with ``Location: <location><path>?<query>``
                          (``location`` is another server's base URL) and no body.
    "oversized"           HTTP 200 JSON, ``size`` bytes (``[`` blanks ``]``), Content-Length sent.
    "oversized_unsized"   The same without Content-Length: the body ends when the connection closes.
    "trickle"             The normal answer, its body sent one byte every ``seconds``.
    "deep_json"           HTTP 200 JSON nested ``DEEP_JSON_LEVELS`` arrays deep.
    "huge_exponent"       The normal answer with its first ``HUGE_NUMBER_FIELD`` value replaced by the
                          JSON number ``HUGE_NUMBER`` (beyond any Decimal's exponent range).
    "hostile_message"     The fake's HTTP 400 error answer with ``HOSTILE_MESSAGE`` as its message:
                          newlines, a forged journald ``<0>`` line, CR, NUL, ESC, C1 and U+2028.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Hashable, Iterable
from urllib.parse import parse_qs, urlencode, urlsplit

HOST = "127.0.0.1"
KST = timezone(timedelta(hours=9), "KST")  # Asia/Seoul has had no DST since 1988
REQUEST_QUEUE_SIZE = 128
SERVE_POLL_INTERVAL_SECONDS = 0.01
STOP_JOIN_TIMEOUT_SECONDS = 5.0
HOLD_LIMIT_SECONDS = 120.0  # a held request is answered after this even if nobody releases it

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"

FAULT_KINDS = frozenset(
    {
        "500",
        "503",
        "malformed_json",
        "truncated",
        "wrong_content_type",
        "empty",
        "reset",
        "timeout",
        "stuck_cursor",
        "creeping_cursor",
        "redirect",
        "oversized",
        "oversized_unsized",
        "trickle",
        "deep_json",
        "huge_exponent",
        "hostile_message",
    }
)
DEFAULT_TIMEOUT_FAULT_SECONDS = 5.0
DEFAULT_OVERSIZED_BYTES = 8 * 1024 * 1024 + 1
DEEP_JSON_LEVELS = 100_000
HUGE_NUMBER = "1e99999999999999999999"
HOSTILE_MESSAGE = "bad request\n<0>wombat: FORGED EMERGENCY\r\x00\x1b[31mred\x85next\u2028line"
WRONG_CONTENT_TYPE_BODY = b"<html>oops</html>"
GATEWAY_503_BODY = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
    b"<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    b"</body>\r\n</html>\r\n"
)

ACTION_TRUNCATE = "truncate"
ACTION_RESET = "reset"
ACTION_NO_LENGTH = "no_length"
ACTION_TRICKLE = "trickle"

# Errors a client hanging up mid-answer raises in the handler thread; not worth a traceback.
CLIENT_GONE_ERRORS = (ConnectionError, TimeoutError, socket.timeout)


# --------------------------------------------------------------------------- JSON


def compact_dumps(value: Any) -> str:
    """Given a JSON-able value, return compact JSON text keeping non-ASCII characters."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def dumps_with_decimals(value: Any) -> str:
    """Given a JSON-able value that may hold ``Decimal``s, return compact JSON text.

    Each ``Decimal`` is written as a raw JSON number in plain notation keeping its exponent,
    so ``Decimal('242634976840.02426000')`` becomes ``242634976840.02426000``. Raise
    ValueError for a NaN or infinite ``Decimal`` (not representable in JSON).
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write {value!r} as JSON")
        return format(value, "f")
    if isinstance(value, dict):
        items = (f"{compact_dumps(str(key))}:{dumps_with_decimals(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps_with_decimals(item) for item in value) + "]"
    return compact_dumps(value)


def stable_seed(seed: int, text: str) -> int:
    """Given a seed and a text (a market or stock code), return a random seed for that pair
    that does not depend on PYTHONHASHSEED."""
    return seed * 1_000_003 + zlib.crc32(text.encode("utf-8"))


# --------------------------------------------------------------------------- requests / responses


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request: header names lower-cased, query as name -> last value."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    client: str = ""  # the client's IP address (what Upbit limits by)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Given a header name in any case, return its value or ``default``."""
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """Return the body parsed as JSON, or None when it is not valid JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


@dataclass
class Response:
    """One answer. ``action`` is None, ACTION_TRUNCATE, ACTION_RESET, ACTION_NO_LENGTH or
    ACTION_TRICKLE (one byte of the body every ``interval`` seconds)."""

    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None
    interval: float = 0.0


def json_response(status: int, value: Any, dumps: Callable[[Any], str] = compact_dumps, **headers: str) -> Response:
    """Given a status and a JSON-able value, return a JSON Response."""
    return Response(status, dumps(value).encode("utf-8"), JSON_CONTENT_TYPE, dict(headers))


def text_response(status: int, text: str, content_type: str = TEXT_CONTENT_TYPE) -> Response:
    """Given a status and text, return a text Response (UTF-8)."""
    return Response(status, text.encode("utf-8"), content_type)


@dataclass
class Admission:
    """What ``FakeService._admit`` decides: a rejection (or None) and headers for the answer."""

    reject: Response | None = None
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- request log


@dataclass
class RequestRecord:
    """One logged request. ``time`` is ``time.monotonic()`` at arrival; ``status`` is the
    HTTP status answered (None while in flight, or when the connection was reset);
    ``fault`` is the injected fault kind that answered it, if any; ``body`` the request body."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    time: float
    status: int | None = None
    fault: str | None = None
    body: bytes = b""
    client: str = ""


class RequestLog:
    """A thread-safe list of RequestRecord."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def open(self, request: Request) -> RequestRecord:
        """Given an arriving request, append and return its record (status still None)."""
        record = RequestRecord(
            request.method, request.path, dict(request.query), dict(request.headers), time.monotonic(),
            body=request.body, client=request.client,
        )
        with self._lock:
            self._records.append(record)
        return record

    def close(self, record: RequestRecord, status: int | None, fault: str | None) -> None:
        """Given a record, store the status answered and the fault used."""
        with self._lock:
            record.status = status
            record.fault = fault

    def snapshot(self) -> list[RequestRecord]:
        """Return a copy of the list of records, oldest first."""
        with self._lock:
            return list(self._records)

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Given an optional exact path and status, return how many records match."""
        return sum(
            1
            for record in self.snapshot()
            if (path is None or record.path == path) and (status is None or record.status == status)
        )

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()


def max_requests_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """Given request times in seconds, return the largest number inside any half-open
    window ``[t, t + window)`` — what a strict server-side limiter counts."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


# --------------------------------------------------------------------------- rate limiting


class SlidingWindowLimiter:
    """At most ``limit`` accepted requests per key within any ``window`` seconds.

    Rejected requests are not counted. ``limit=None`` accepts everything.
    """

    def __init__(self, limit: int | None, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._accepted: dict[Hashable, deque[float]] = {}

    def acquire(self, key: Hashable = None) -> tuple[bool, int | None]:
        """Given a key, return (accepted, remaining in the current window after this request).

        Remaining is None when the limiter is disabled, 0 when rejected.
        """
        if self.limit is None:
            return True, None
        now = self._clock()
        with self._lock:
            accepted = self._accepted.setdefault(key, deque())
            while accepted and now - accepted[0] >= self.window:
                accepted.popleft()
            if len(accepted) >= self.limit:
                return False, 0
            accepted.append(now)
            return True, self.limit - len(accepted)


# --------------------------------------------------------------------------- fault injection


@dataclass
class Fault:
    """An injected fault: ``remaining`` more matching requests get it."""

    kind: str
    remaining: int
    match: Callable[[Request], bool] | None = None
    seconds: float = DEFAULT_TIMEOUT_FAULT_SECONDS
    location: str | None = None
    size: int = DEFAULT_OVERSIZED_BYTES


class FaultQueue:
    """Faults in injection order; each request takes the first fault that matches it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        kind: str,
        count: int = 1,
        match: Callable[[Request], bool] | None = None,
        seconds: float | None = None,
        location: str | None = None,
        size: int | None = None,
    ) -> None:
        """Given a fault kind, a count and an optional predicate on Request, queue the fault.

        Raise ValueError for an unknown kind, a count below 1, or a redirect without location.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind == "redirect" and not location:
            raise ValueError("a redirect fault needs a location")
        delay = DEFAULT_TIMEOUT_FAULT_SECONDS if seconds is None else seconds
        with self._lock:
            self._faults.append(Fault(kind, count, match, delay, location, size or DEFAULT_OVERSIZED_BYTES))

    def take(self, request: Request) -> Fault | None:
        """Given a request, consume and return the first fault matching it, or None."""
        with self._lock:
            for fault in self._faults:
                if fault.match is None or fault.match(request):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> int:
        """Return how many fault answers are still queued."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()


# --------------------------------------------------------------------------- HTTP server


class FakeRequestHandler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a Request, asks the service, writes the Response."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeExchange/1.0"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        """Serve any method the same way; the service decides what is allowed."""
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet: the service keeps its own request log."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """Return the ``Date`` header's value: now plus the service's ``clock_offset`` seconds."""
        if timestamp is None:
            timestamp = time.time() + self.server.service.clock_offset
        return super().date_time_string(timestamp)

    def _read_request(self) -> Request:
        """Return the current request as a Request, reading its body."""
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {name.lower(): value for name, value in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        return Request(self.command, parts.path, query, headers, body, client=self.client_address[0])

    def _serve(self) -> None:
        """Answer one request; a crash in the fake becomes a visible 500 plus a traceback."""
        request = self._read_request()
        try:
            response = self.server.service.handle(request)
        except Exception:  # a bug in the fake itself: show it, answer something
            traceback.print_exc(file=sys.stderr)
            response = text_response(500, "fake server crashed; see stderr")
        self._write(response)

    def _write(self, response: Response) -> None:
        """Write a Response, honouring the truncate and reset actions."""
        if response.action == ACTION_RESET:
            self.server.mark_for_reset(self.connection)
            self.close_connection = True
            return
        sent, declared = response.body, len(response.body)
        if response.action == ACTION_TRUNCATE:
            sent = response.body[: len(response.body) // 2]
            declared = max(declared, len(sent) + 1)
            self.close_connection = True
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.action == ACTION_NO_LENGTH:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(declared))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if response.action == ACTION_TRICKLE:
            self._trickle(sent, response.interval)
        else:
            self.wfile.write(sent)

    def _trickle(self, body: bytes, interval: float) -> None:
        """Write a body one byte every ``interval`` seconds (each byte flushed at once)."""
        for index in range(len(body)):
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()
            time.sleep(interval)


class FakeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 (port chosen by the OS) serving one FakeService."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = REQUEST_QUEUE_SIZE

    def __init__(self, service: "FakeService") -> None:
        self.service = service
        self._sockets_lock = threading.Lock()
        self._open_sockets: set[socket.socket] = set()
        self._reset_sockets: set[socket.socket] = set()
        super().__init__((HOST, 0), FakeRequestHandler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        """Track the connection, then serve it in its own thread."""
        with self._sockets_lock:
            self._open_sockets.add(request)
        super().process_request(request, client_address)

    def mark_for_reset(self, request: socket.socket) -> None:
        """Given a connection, have it closed with an RST instead of an orderly shutdown."""
        with self._sockets_lock:
            self._reset_sockets.add(request)

    def shutdown_request(self, request: socket.socket) -> None:
        """Close a finished connection: abruptly (SO_LINGER 0 -> RST) if marked for reset."""
        with self._sockets_lock:
            self._open_sockets.discard(request)
            reset = request in self._reset_sockets
            self._reset_sockets.discard(request)
        if reset:
            try:
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down every open connection so idle keep-alive handler threads end."""
        with self._sockets_lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hung up; print anything else."""
        if isinstance(sys.exc_info()[1], CLIENT_GONE_ERRORS):
            return
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------- service base


class FakeService:
    """Base of a fake API: lifecycle, latency, request log, fault injection.

    Subclasses implement ``_route(request, stuck_cursor) -> Response``,
    ``_empty_response(request) -> Response`` and ``_internal_error() -> Response``, may
    override ``_admit(request) -> Admission``, and set ``MALFORMED_BODY``.
    """

    MALFORMED_BODY = b'{"error": '
    HUGE_NUMBER_FIELD = "price"  # the field a "huge_exponent" fault overwrites

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.clock_offset = 0.0  # seconds added to the Date header of every answer (a server clock that is off)
        self._log = RequestLog()
        self._faults = FaultQueue()
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._held: Callable[[Request], bool] | None = None
        self._released = threading.Event()
        self._gates: list[tuple[Callable[[Request], bool], threading.Event, float]] = []

    # ---- lifecycle

    def start(self) -> "FakeService":
        """Start serving in a background thread (idempotent); return self."""
        if self._server is None:
            self._server = FakeHTTPServer(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": SERVE_POLL_INTERVAL_SECONDS},
                name=f"{type(self).__name__}-{self._server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self.release()
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if thread is not None:
            thread.join(STOP_JOIN_TIMEOUT_SECONDS)

    def __enter__(self) -> "FakeService":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """Return the port served on. Raise RuntimeError if not started."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    # ---- observation and control

    @property
    def requests(self) -> list[RequestRecord]:
        """Return a copy of the request log, oldest first."""
        return self._log.snapshot()

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Given an optional exact path and status, return how many logged requests match."""
        return self._log.count(path, status)

    def clear_requests(self) -> None:
        """Forget the request log."""
        self._log.clear()

    def inject(
        self,
        kind: str,
        count: int = 1,
        match: Callable[[Request], bool] | None = None,
        seconds: float | None = None,
        location: str | None = None,
        size: int | None = None,
    ) -> None:
        """Given a fault kind (see module docstring), make the next ``count`` requests for
        which ``match(request)`` is true (all if None) get that fault. ``seconds`` is the
        sleep of a "timeout" fault and the byte interval of a "trickle"; ``location`` the
        base URL a "redirect" points to; ``size`` the body size of an "oversized" one.
        Raise ValueError for an unknown kind."""
        self._faults.add(kind, count, match, seconds, location, size)

    def hold(self, match: Callable[[Request], bool]) -> None:
        """Given match(request), keep the matching requests unanswered until release() (or the stop).

        A test uses it to keep a client mid-run, whatever the machine's speed, until it has acted.
        """
        self._released.clear()
        self._held = match

    def release(self) -> None:
        """Answer the held requests now, and hold no new ones."""
        self._held = None
        self._released.set()
    def gate(self, match: Callable[[Request], bool], until: threading.Event, timeout: float = 10.0) -> None:
        """Given a predicate on Request and an Event, make matching requests wait (logged, not yet
        answered) until the event is set, or ``timeout`` seconds at most; then answer normally."""
        self._gates.append((match, until, timeout))

    def held(self, match: Callable[[Request], bool]) -> int:
        """Given a predicate on Request, return how many logged matching requests are still unanswered."""
        return sum(1 for record in self.requests if record.status is None and match(
            Request(record.method, record.path, record.query, record.headers)))

    def pending_faults(self) -> int:
        """Return how many injected fault answers have not been used yet."""
        return self._faults.pending()

    def clear_faults(self) -> None:
        """Drop every injected fault not used yet."""
        self._faults.clear()

    # ---- per request

    def handle(self, request: Request) -> Response:
        """Given a request, return the answer (called in the connection's thread)."""
        record = self._log.open(request)
        held = self._held
        if held is not None and held(request):
            self._released.wait(HOLD_LIMIT_SECONDS)
        for match, until, timeout in list(self._gates):
            if match(request):
                until.wait(timeout)
        admission = self._admit(request)
        fault = None
        if admission.reject is not None:
            response = admission.reject
        else:
            fault = self._faults.take(request)
            response = self._answer(request, fault)
        response.headers = {**response.headers, **admission.headers}
        if self.latency:
            time.sleep(self.latency)
        status = None if response.action == ACTION_RESET else response.status
        self._log.close(record, status, fault.kind if fault else None)
        return response

    def _answer(self, request: Request, fault: Fault | None) -> Response:
        """Given an admitted request and its fault (or None), return the answer."""
        kind = fault.kind if fault else None
        if kind == "reset":
            return Response(0, action=ACTION_RESET)
        if kind == "timeout":
            time.sleep(fault.seconds)
        if kind == "500":
            return self._internal_error()
        if kind == "503":
            return Response(503, GATEWAY_503_BODY, HTML_CONTENT_TYPE)
        if kind == "malformed_json":
            return Response(200, self.MALFORMED_BODY, JSON_CONTENT_TYPE)
        if kind == "wrong_content_type":
            return Response(200, WRONG_CONTENT_TYPE_BODY, HTML_CONTENT_TYPE)
        if kind == "empty":
            return self._empty_response(request)
        if kind == "creeping_cursor":
            return self._creeping_response(request)
        hostile = _hostile_answer(request, fault) if kind else None
        if hostile is not None:
            return hostile
        if kind == "hostile_message":
            return self._error_with_message(request, HOSTILE_MESSAGE)
        response = self._route(request, stuck_cursor=(kind == "stuck_cursor"))
        if kind == "truncated":
            response.action = ACTION_TRUNCATE
        if kind == "trickle":
            response.action, response.interval = ACTION_TRICKLE, fault.seconds
        if kind == "huge_exponent":
            response.body = with_huge_number(response.body, self.HUGE_NUMBER_FIELD)
        return response

    # ---- hooks

    def _admit(self, request: Request) -> Admission:
        """Given a request, return whether it is rejected (rate limits) and headers to add."""
        return Admission()

    def _route(self, request: Request, stuck_cursor: bool) -> Response:
        """Given a request, return the normal answer; ignore paging cursors if stuck_cursor."""
        raise NotImplementedError

    def _empty_response(self, request: Request) -> Response:
        """Given a request, return the fake's well-formed "no data" answer."""
        raise NotImplementedError

    def _creeping_response(self, request: Request) -> Response:
        """Given a request, return a page that moves the paging cursor back as little as possible."""
        raise NotImplementedError

    def _internal_error(self) -> Response:
        """Return the fake's HTTP 500 answer."""
        return json_response(500, {"error": "Internal Server Error"})

    def _error_with_message(self, request: Request, message: str) -> Response:
        """Given a request and a message, return the fake's HTTP 400 error answer carrying it."""
        return json_response(400, {"error": message})


def _hostile_answer(request: Request, fault: Fault) -> Response | None:
    """Given a request and its fault, return the answer of a redirect, oversized or deep_json
    fault (the same on every fake), or None for any other kind."""
    if fault.kind == "redirect":
        query = "?" + urlencode(request.query) if request.query else ""
        status = 302 if request.method == "GET" else 307
        return Response(status, b"", TEXT_CONTENT_TYPE, {"Location": f"{fault.location}{request.path}{query}"})
    if fault.kind in ("oversized", "oversized_unsized"):
        body = b"[" + b" " * max(fault.size - 2, 0) + b"]"
        action = ACTION_NO_LENGTH if fault.kind == "oversized_unsized" else None
        return Response(200, body, JSON_CONTENT_TYPE, action=action)
    if fault.kind == "deep_json":
        return Response(200, b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS, JSON_CONTENT_TYPE)
    return None


def with_huge_number(body: bytes, field_name: str) -> bytes:
    """Given a JSON body and a field name, return it with the field's first value (a number or a
    string) replaced by the bare JSON number HUGE_NUMBER."""
    pattern = re.compile(rb'("' + re.escape(field_name.encode()) + rb'":)("[^"]*"|[-0-9.eE+]+)')
    return pattern.sub(lambda found: found.group(1) + HUGE_NUMBER.encode(), body, count=1)
