"""Running systemd's command-line tools (`systemctl`, `systemd-analyze`) and reading `systemctl show`.

One timeout for every call, one error: SystemdError (a ConfigError, so a command
that lets it through exits 2) whose message names the tool and what went wrong.
Used by `check` (the timers and scheduler-engine lines) and `schedule` (the timers'
next runs). Read-only: only `show`, `list-timers` and `calendar` are asked.
"""

import shutil
import subprocess

from wombat_collect.errors import ConfigError

COMMAND_TIMEOUT_SECONDS = 10.0  # every systemctl and systemd-analyze call; they answer in milliseconds
SYSTEMCTL = "systemctl"
FAILURE_TEXT_LENGTH = 120  # characters of the tool's own error kept in the message
SYSTEMD_ABSENT = ("not been booted with systemd", "Failed to connect to bus", "System has not been booted")


class SystemdError(ConfigError):
    """A systemd tool is missing, did not answer in time, or failed; `systemd_absent` when systemd does not run."""

    def __init__(self, message, systemd_absent=False):
        super().__init__(message)
        self.systemd_absent = systemd_absent


def run(arguments, env=None):
    """Given a systemd tool's command line (the tool's name first) and an optional environment, return its stdout.

    Raise SystemdError if the tool is not on the PATH, cannot be started, does not
    answer within COMMAND_TIMEOUT_SECONDS, or exits non-zero.
    """
    tool = arguments[0]
    path = shutil.which(tool)
    if path is None:
        raise SystemdError(f"no {tool} on this host")
    try:
        done = subprocess.run([path, *arguments[1:]], capture_output=True, text=True,  # noqa: S603 - fixed argv
                              timeout=COMMAND_TIMEOUT_SECONDS, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise SystemdError(f"{tool} did not answer within {COMMAND_TIMEOUT_SECONDS:g} s") from None
    except OSError as error:
        raise SystemdError(f"cannot run {tool}: {error.strerror}") from None
    if done.returncode != 0:
        text = " ".join((done.stderr or done.stdout).split()) or f"exit code {done.returncode}"
        absent = any(phrase in text for phrase in SYSTEMD_ABSENT)
        raise SystemdError(f"{' '.join(arguments[:2])} failed: {text[:FAILURE_TEXT_LENGTH]}", absent)
    return done.stdout


def show(units, properties):
    """Given unit names and property names, return {unit: {property: [values]}} from `systemctl show`.

    Raise SystemdError as run() does.
    """
    output = run([SYSTEMCTL, "show", "--no-pager", f"--property=Id,{','.join(properties)}", "--", *units])
    return parse_show(output)


def parse_show(text):
    """Given `systemctl show` output (blank-line separated blocks of Key=value lines), return {Id: {Key: [values]}}.

    A key given twice in a block (ExecStart=, TimersCalendar=) keeps every value in
    order; a line without `=` and a block without an Id are left out.
    """
    units = {}
    for block in text.strip().split("\n\n"):
        properties = {}
        for line in block.splitlines():
            name, equals, value = line.partition("=")
            if equals:
                properties.setdefault(name, []).append(value)
        if properties.get("Id", [""])[0]:
            units[properties["Id"][0]] = properties
    return units


def list_timers(pattern):
    """Given a unit name pattern, return [(timer, unit it activates)] of the loaded timers matching it, sorted.

    Asked of `systemctl list-timers --all`. Raise SystemdError as run() does.
    """
    output = run([SYSTEMCTL, "list-timers", "--all", "--plain", "--no-legend", "--no-pager", pattern])
    pairs = [tuple(line.split()[-2:]) for line in output.splitlines() if len(line.split()) >= 2]
    return sorted(pair for pair in pairs if pair[0].endswith(".timer"))
