"""Monitoring hook: healthchecks.io-style HTTP pings (WOMBAT_PING_URL).

`<url>/start` when a run starts, `<url>` when it succeeds, `<url>/fail` when
it does not (partial, failed, interrupted); the POST body is the run's summary
line. `{job}` and `{exchange}` in the URL are replaced, so one check per job
and exchange can use healthchecks' slug URLs
(https://hc-ping.com/<ping-key>/wombat-collect-{job}-{exchange}). Every ping
carries `rid=<uuid>` so concurrent runs pinging one check pair up.

The URL holds a secret key: it is never logged. Each ping is one attempt with
a TIMEOUT_SECONDS limit and no retry, so a dead monitor costs at most one
timeout per ping. The end ping is sent whatever happened to `/start`: it is
the one that tells healthchecks whether the job ran (the start ping only
measures the duration).
"""

import logging
from urllib.parse import urlencode, urlsplit, urlunsplit

from wombat_collect.logging_setup import redact

TIMEOUT_SECONDS = 5
MAX_BODY_BYTES = 10_000

logger = logging.getLogger(__name__)


def enabled(settings):
    """Given Settings, return True when WOMBAT_PING_URL is set."""
    return bool(settings.ping_url)


def ping_url(base, check, suffix=""):
    """Given the configured URL, a Check and '', '/start' or '/fail', return the URL to POST to."""
    url = base.replace("{job}", check.job).replace("{exchange}", check.exchange)
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode({"rid": check.run_key})) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + suffix, query, ""))


def post(url, body):
    """Given a URL and a text body, POST it. Return True if answered 2xx; warn otherwise."""
    import requests

    host = urlsplit(url).hostname
    try:
        response = requests.post(url, data=redact(body).encode("utf-8")[:MAX_BODY_BYTES],
                                 headers={"Content-Type": "text/plain; charset=utf-8"}, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        logger.warning("ping to %s failed (%s); the run goes on", host, type(error).__name__)
        return False
    if not 200 <= response.status_code < 300:
        logger.warning("ping to %s answered HTTP %d; the run goes on", host, response.status_code)
        return False
    return True


def start(settings, check):
    """Given a Check, ping `/start` (a failure only warns). Return the hook's state: nothing."""
    post(ping_url(settings.ping_url, check, "/start"), f"{check.job} {check.exchange}: started")


def finish(settings, check, state, report):
    """Given the Report of the run, ping success or `/fail` with the summary line as body.

    Sent even when `/start` failed: a monitor that was down for a moment must still hear the end.
    """
    suffix = "" if report.succeeded else "/fail"
    post(ping_url(settings.ping_url, check, suffix), report.summary or "")
