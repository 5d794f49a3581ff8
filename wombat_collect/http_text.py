"""Text from an exchange made safe to show: JSON parsed with Decimal numbers, one masked line, plain URLs.

Collectors and the HTTP client use these on every answer, error and log line.
"""

import json
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from wombat_collect.logging_setup import redact

SNIPPET_LENGTH = 80
CONTROL_CHARACTERS = re.compile(  # C0, DEL, C1, zero-width and bidi controls, line/paragraph separators
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def parse_json(text):
    """Given a body, return its JSON with numbers as Decimal, or None if it cannot be parsed at all.

    Any parse failure counts as "not JSON": malformed text, nesting too deep
    (RecursionError), an integer too long to convert. A decimal number Decimal
    cannot hold (an exponent beyond its range) becomes Decimal('NaN'), so the
    collectors reject that one value instead of the whole answer.
    """
    try:
        return json.loads(text, parse_float=decimal_or_nan)
    except (ValueError, ArithmeticError, RecursionError):
        return None


def decimal_or_nan(text):
    """Given a JSON number's text, return it as a Decimal, or Decimal('NaN') if out of Decimal's range."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal("NaN")


def flatten(text):
    """Given text from an exchange, return it masked and on one line for a log line, an error or the history.

    Known secrets are masked; control characters become spaces and runs of
    white space collapse to one. Newlines, carriage returns, NUL, escape
    sequences, other C0/C1 controls and Unicode line separators can then
    neither forge a log line (journald's `<0>` priority prefix) nor garble a
    terminal.
    """
    return " ".join(CONTROL_CHARACTERS.sub(" ", redact(str(text))).split())


def snippet(text):
    """Given a body, return its start on one line for an error message, known secrets masked.

    Masked before it is cut: a secret cut in half would no longer be recognised later.
    """
    flat = flatten(text)
    return flat[:SNIPPET_LENGTH] + ("…" if len(flat) > SNIPPET_LENGTH else "")


def display_url(url):
    """Given a URL, return it for a message: scheme, host, port and path, without userinfo or query."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    return flatten(f"{parts.scheme}://{host}{port}{parts.path}")
