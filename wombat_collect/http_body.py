"""Reading an HTTP answer's body: capped in size, within a total deadline, decoded to text.

Redirects are never followed: redirect_problem says why one is refused.
"""

import time
from urllib.parse import urljoin, urlsplit

from wombat_collect.http_text import flatten

READ_CHUNK_BYTES = 64 * 1024  # a body is read at most this much at a time


class RefusedAnswer(Exception):
    """An answer that must not be read or retried (a redirect, or a body over the size cap)."""


class DeadlinePassed(Exception):
    """An attempt still receiving its answer at its total deadline (a server trickling bytes)."""


def redirect_problem(response, url):
    """Given a 3xx answer and the URL asked, return why it is refused, naming only the target host."""
    location = response.headers.get("Location")
    if not location:
        return f"HTTP {response.status_code} redirect without a target refused (redirects are never followed)"
    try:
        target = urlsplit(urljoin(url, location))
        host = target.hostname or "?"
        port = f":{target.port}" if target.port else ""
    except ValueError:
        host, port = "an unparsable address", ""
    return f"HTTP {response.status_code} redirect to {flatten(host)}{port} refused (redirects are never followed)"


def read_capped(response, limit, deadline, read_timeout):
    """Given a streamed answer, return its body once complete.

    Raise RefusedAnswer if it is (or declares to be) larger than `limit` bytes,
    DeadlinePassed if it is not complete by `deadline` (time.monotonic()), and
    the requests exception matching a network error while reading.
    """
    import requests

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RefusedAnswer(f"answer of {int(declared):,} bytes is over the {limit:,}-byte cap (refused)")
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed
        try:
            chunk = _read_chunk(response, min(read_timeout, left))
        except requests.exceptions.ReadTimeout:
            if time.monotonic() >= deadline:
                raise DeadlinePassed from None
            raise
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise RefusedAnswer(f"answer is over the {limit:,}-byte cap (refused)")
        chunks.append(chunk)


def decode_text(content, encoding):
    """Given a body and the charset its headers name (or None), return it as text (UTF-8 if unnamed or unknown)."""
    try:
        return content.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        return content.decode("utf-8", errors="replace")


def _read_chunk(response, timeout):
    """Given a streamed answer, return its next bytes (b"" at the end), waiting at most `timeout` for them.

    urllib3's errors become the requests exceptions requests itself raises for them.
    """
    import requests
    import urllib3

    connection = response.raw.connection
    if connection is not None and connection.sock is not None:
        connection.sock.settimeout(timeout)  # reset by urllib3 for the next request on this connection
    try:
        return response.raw.read1(READ_CHUNK_BYTES, decode_content=True)
    except urllib3.exceptions.ReadTimeoutError as error:
        raise requests.exceptions.ReadTimeout(error) from None
    except urllib3.exceptions.SSLError as error:
        raise requests.exceptions.SSLError(error) from None
    except urllib3.exceptions.ProtocolError as error:
        raise requests.exceptions.ChunkedEncodingError(error) from None
    except urllib3.exceptions.DecodeError as error:
        raise requests.exceptions.ContentDecodingError(error) from None
