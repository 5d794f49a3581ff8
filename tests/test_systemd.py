"""wombat_collect/ops/systemd.py: running systemctl through a stand-in `systemctl` script on PATH (its
arguments recorded, its output, exit code or silence chosen per test), and parsing `systemctl show`."""

import pytest

from wombat_collect.errors import ConfigError
from wombat_collect.ops import systemd

SHOWN = ("Id=wombat-collect-prices.timer\nActiveState=active\n"
         "TimersCalendar={ OnCalendar=*-*-* 00:02:00 Asia/Seoul ; next_elapse=n/a }\n"
         "TimersCalendar={ OnCalendar=Mon..Fri 09:05 Asia/Seoul ; next_elapse=n/a }\n"
         "\n"
         "Id=wombat-collect-prices@.service\nExecStart={ path=/x/wombat-collect ; argv[]=/x/wombat-collect prices ; }\n"
         "\n"
         "Id=\nLoadState=not-found\n"
         "\n"
         "Id=scheduler-engine.service\nLoadState=loaded\nnot a property line\nActiveState=inactive\n")


def stand_in(directory, body):
    """Given a directory and a shell script's body, put an executable `systemctl` running it there.

    The script first writes its arguments, one a line, to `arguments` beside it.
    """
    directory.mkdir(exist_ok=True)
    script = directory / "systemctl"
    script.write_text(f'#!/bin/sh\nfor argument in "$@"; do echo "$argument"; done > "{directory}/arguments"\n{body}\n')
    script.chmod(0o755)
    return directory


@pytest.fixture
def stand_in_bin(tmp_path, monkeypatch):
    """A directory alone on PATH, for a stand-in `systemctl` (cat and sleep called by absolute path)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_parse_show_reads_every_block_and_keeps_repeated_values_in_order():
    assert systemd.parse_show(SHOWN) == {
        "wombat-collect-prices.timer": {
            "Id": ["wombat-collect-prices.timer"], "ActiveState": ["active"],
            "TimersCalendar": ["{ OnCalendar=*-*-* 00:02:00 Asia/Seoul ; next_elapse=n/a }",
                               "{ OnCalendar=Mon..Fri 09:05 Asia/Seoul ; next_elapse=n/a }"]},
        "wombat-collect-prices@.service": {
            "Id": ["wombat-collect-prices@.service"],
            "ExecStart": ["{ path=/x/wombat-collect ; argv[]=/x/wombat-collect prices ; }"]},
        "scheduler-engine.service": {
            "Id": ["scheduler-engine.service"], "LoadState": ["loaded"], "ActiveState": ["inactive"]},
    }


def test_parse_show_of_nothing_is_empty():
    assert systemd.parse_show("") == systemd.parse_show("\n\n\n") == {}


def test_show_asks_systemctl_for_the_units_and_properties(stand_in_bin, tmp_path):
    (tmp_path / "shown").write_text(SHOWN)
    stand_in(stand_in_bin, f'/bin/cat "{tmp_path}/shown"')
    shown = systemd.show(["wombat-collect-prices.timer", "scheduler-engine.service"], ["ActiveState", "LoadState"])
    assert (stand_in_bin / "arguments").read_text().splitlines() == [
        "show", "--no-pager", "--property=Id,ActiveState,LoadState", "--", "wombat-collect-prices.timer",
        "scheduler-engine.service"]
    assert shown == systemd.parse_show(SHOWN)


def test_list_timers_returns_the_timers_and_their_units_sorted(stand_in_bin):
    stand_in(stand_in_bin, "echo 'Fri 2025-03-07 00:02:00 KST 3h left n/a n/a wombat-collect-prices.timer "
                           "wombat-collect-prices.service'\n"
                           "echo 'n/a n/a n/a n/a wombat-collect-symbols.timer wombat-collect-symbols.service'\n"
                           "echo 'lonely'")
    assert systemd.list_timers("wombat-collect-*.timer") == [
        ("wombat-collect-prices.timer", "wombat-collect-prices.service"),
        ("wombat-collect-symbols.timer", "wombat-collect-symbols.service")]
    assert (stand_in_bin / "arguments").read_text().splitlines() == [
        "list-timers", "--all", "--plain", "--no-legend", "--no-pager", "wombat-collect-*.timer"]


def test_run_without_systemctl_on_the_path_says_so(stand_in_bin):
    with pytest.raises(systemd.SystemdError) as raised:
        systemd.run(["systemctl", "show"])
    assert (str(raised.value), raised.value.systemd_absent) == ("no systemctl on this host", False)


def test_run_that_does_not_answer_in_time_is_stopped(stand_in_bin, monkeypatch):
    stand_in(stand_in_bin, "exec /bin/sleep 30")
    monkeypatch.setattr(systemd, "COMMAND_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(systemd.SystemdError) as raised:
        systemd.run(["systemctl", "show"])
    assert str(raised.value) == "systemctl did not answer within 0.5 s"


def test_run_non_zero_exit_names_the_verb_and_the_tool_error(stand_in_bin):
    stand_in(stand_in_bin, "printf 'Unit  wombat.timer\\n  could not be found.\\n' >&2\nexit 4")
    with pytest.raises(systemd.SystemdError) as raised:
        systemd.run(["systemctl", "show", "wombat.timer"])
    assert (str(raised.value), raised.value.systemd_absent) == \
        ("systemctl show failed: Unit wombat.timer could not be found.", False)


def test_run_non_zero_exit_without_systemd_is_marked_absent(stand_in_bin):
    stand_in(stand_in_bin, """echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
echo 'Failed to connect to bus: Host is down' >&2
exit 1""")
    with pytest.raises(systemd.SystemdError) as raised:
        systemd.run(["systemctl", "show"])
    assert raised.value.systemd_absent
    assert str(raised.value) == ("systemctl show failed: System has not been booted with systemd as init system "
                                 "(PID 1). Can't operate. Failed to connect to bus: Host is down")


def test_run_non_zero_exit_keeps_120_characters_of_the_tool_error(stand_in_bin):
    stand_in(stand_in_bin, f"echo {'x' * 200} >&2\nexit 1")
    with pytest.raises(systemd.SystemdError) as raised:
        systemd.run(["systemctl", "show"])
    assert str(raised.value) == f"systemctl show failed: {'x' * 120}"


def test_run_non_zero_exit_without_output_gives_the_exit_code(stand_in_bin):
    stand_in(stand_in_bin, "exit 3")
    with pytest.raises(systemd.SystemdError) as raised:
        systemd.run(["systemctl", "list-timers"])
    assert str(raised.value) == "systemctl list-timers failed: exit code 3"


def test_run_of_a_file_that_cannot_be_executed_says_why(stand_in_bin):
    script = stand_in_bin / "systemctl"
    script.write_text("not a program\n")
    script.chmod(0o755)
    with pytest.raises(systemd.SystemdError) as raised:
        systemd.run(["systemctl", "show"])
    assert str(raised.value) == "cannot run systemctl: Exec format error"


def test_run_returns_stdout_and_the_error_is_a_config_error(stand_in_bin):
    stand_in(stand_in_bin, "echo shown")
    assert systemd.run(["systemctl", "show"]) == "shown\n"
    assert issubclass(systemd.SystemdError, ConfigError)
