"""Monitoring hooks around one run, borgmatic style.

Each hook is a plain module with the same functions:

    enabled(settings)                      -> bool
    start(settings, check)                 -> state passed to finish (ping "start")
    finish(settings, check, state, report) -> None (ping success or failure)

`monitored()` calls them on entry and exit. A hook that fails only logs a
warning: it never fails the run, and never replaces the run's own error.
"""

import contextlib
import importlib
import logging
import uuid
from dataclasses import dataclass

from wombat_collect.errors import Interrupted

HOOK_MODULES = ("wombat_collect.ops.healthchecks", "wombat_collect.ops.sentry")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """What is being monitored: one job for one exchange, in one run (`run_key` pairs start and end)."""

    job: str
    exchange: str
    run_key: str


@dataclass
class Report:
    """How the run ended, filled in by the runner: status, summary line, error if one was raised."""

    status: str | None = None
    summary: str | None = None
    duration: float | None = None
    error: BaseException | None = None

    @property
    def succeeded(self):
        return self.status == "succeeded"


def enabled_hooks(settings):
    """Given Settings, return the hook modules that are configured."""
    hooks = [importlib.import_module(name) for name in HOOK_MODULES]
    return [hook for hook in hooks if hook.enabled(settings)]


def call_hook(hook, function_name, *arguments):
    """Given a hook module, call one of its functions; on any error, warn and return None."""
    try:
        return getattr(hook, function_name)(*arguments)
    except Exception as error:  # a monitor must never break a run
        logger.warning("monitoring %s: %s failed: %s", hook.__name__.rsplit(".", 1)[-1], function_name,
                       type(error).__name__)
        return None


@contextlib.contextmanager
def monitored(settings, job, exchange, enabled=True):
    """Given a job and an exchange, ping every configured monitor on entry and on exit.

    Yield a Report for the block to fill in. An exception leaving the block is
    reported as a failure (an interruption as 'interrupted') and re-raised unchanged.
    """
    hooks = enabled_hooks(settings) if enabled else []
    check = Check(job, exchange, str(uuid.uuid4()))
    states = {hook: call_hook(hook, "start", settings, check) for hook in hooks}
    report = Report()
    try:
        yield report
    except BaseException as error:
        report.error = error
        report.status = report.status or ("interrupted" if isinstance(error, Interrupted) else "failed")
        report.summary = report.summary or f"{job} {exchange}: FAILED: {error}"
        raise
    finally:
        for hook in hooks:
            call_hook(hook, "finish", settings, check, states[hook], report)
