"""The one place a CheckReport is rendered: the text lines `check` prints and its --json."""

import json

from wombat_collect.ops.check.results import OK
from wombat_collect.ops.status import local_time


def render_text(report):
    """Given a CheckReport, return one line per check: `STATE name: message`."""
    return "\n".join(f"{item.state.upper()} {item.name}: {item.message}" for item in report.results)


def report_dict(report):
    """Given a CheckReport, return the JSON-ready dict `check --json` prints (shaped like `status --json`)."""
    return {
        "state": report.state, "exit_code": report.exit_code, "checked_at": local_time(report.checked_at),
        "problems": [f"{item.state.upper()}: {item.name}: {item.message}" for item in report.results
                     if item.state != OK],
        "checks": [{"name": item.name, "state": item.state, "message": item.message} for item in report.results],
    }


def render_json(report):
    """Given a CheckReport, return it as indented JSON text."""
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False)
