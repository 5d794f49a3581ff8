"""Monitoring hook: Sentry errors and cron check-ins (SENTRY_DSN, the `sentry` extra).

Each job and exchange is one Sentry cron monitor, slug
`wombat-collect-<job>-<exchange>`: an in-progress check-in when a run starts,
ok or error when it ends. A run that fails also sends its error (the
exception, or the summary line of a failed or partial run) as an event.
sentry-sdk is imported only when SENTRY_DSN is set; without it, one warning.
Local variables are never sent, and every string is masked like a log line.
"""

import logging

from wombat_collect import __version__
from wombat_collect.errors import Interrupted
from wombat_collect.logging_setup import redact

MONITOR_SLUG = "wombat-collect-{job}-{exchange}"
FLUSH_SECONDS = 5
MISSING_HINT = "SENTRY_DSN is set but sentry-sdk is not installed: pip install 'wombat-collect[sentry]'"

logger = logging.getLogger(__name__)
_state = {"sdk": None, "warned": False}


def enabled(settings):
    """Given Settings, return True when SENTRY_DSN is set."""
    return bool(settings.sentry_dsn)


def scrub(value):
    """Given an event (nested dicts, lists, strings), return it with registered secrets masked."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item) for item in value]
    return value


def load_sdk(settings):
    """Given Settings, return the initialised sentry_sdk module, or None (warn once) if not installed."""
    if _state["sdk"] is not None:
        return _state["sdk"]
    try:
        import sentry_sdk
    except ImportError:
        if not _state["warned"]:
            logger.warning("%s", MISSING_HINT)
            _state["warned"] = True
        return None
    sentry_sdk.init(dsn=settings.sentry_dsn, release=f"wombat-collect@{__version__}",
                    default_integrations=False, include_local_variables=False, send_default_pii=False,
                    before_send=lambda event, hint: scrub(event), shutdown_timeout=FLUSH_SECONDS)
    _state["sdk"] = sentry_sdk
    return sentry_sdk


def start(settings, check):
    """Given a Check, send an in-progress check-in. Return (sdk, check-in id), or None."""
    sdk = load_sdk(settings)
    if sdk is None:
        return None
    from sentry_sdk.crons import capture_checkin

    slug = MONITOR_SLUG.format(job=check.job, exchange=check.exchange)
    return sdk, capture_checkin(monitor_slug=slug, status="in_progress")


def finish(settings, check, state, report):
    """Given the Report, send the run's error (if any) and its final check-in, then flush."""
    if state is None:
        return
    sdk, check_in_id = state
    from sentry_sdk.crons import capture_checkin

    if report.error is not None and not isinstance(report.error, Interrupted):
        sdk.capture_exception(report.error)
    elif report.status in ("failed", "partial"):
        sdk.capture_message(report.summary or report.status, level="error" if report.status == "failed" else "warning")
    slug = MONITOR_SLUG.format(job=check.job, exchange=check.exchange)
    capture_checkin(monitor_slug=slug, check_in_id=check_in_id, status="ok" if report.succeeded else "error",
                    duration=report.duration)
    sdk.flush(timeout=FLUSH_SECONDS)
