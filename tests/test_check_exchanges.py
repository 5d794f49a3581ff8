"""`wombat-collect check`, the exchange lines (wombat_collect/ops/check/exchanges.py) against the fake
exchanges on loopback: reachability, the host clock against the HTTP Date header, the KIS token."""

import re
from pathlib import Path

import pytest

from tests.check_support import check, closed_port, states

pytest_plugins = ("tests.check_fixtures",)


def test_check_issue_token_issues_one_and_reports_its_expiry(migrated, env_file, fake_kis):
    code, found, _ = check(migrated, "--exchange", "kis", "--issue-token", env_file=env_file)
    assert code == 0
    assert re.fullmatch(r"the KIS key works: token valid until \d{4}-\d\d-\d\d \d\d:\d\d KST", found["kis token"][1])
    assert fake_kis.tokens_issued == 1
    assert list((Path(migrated["WOMBAT_STATE_DIR"]) / "kis-tokens").glob("*.json"))


def test_check_without_cached_token_warns_and_issues_none(migrated, env_file, fake_kis):
    code, found, _ = check(migrated, "--exchange", "kis", env_file=env_file)
    assert code == 1
    assert states(found)["kis token"] == "WARNING"
    assert found["kis token"][1] == (
        f"no cached token in {migrated['WOMBAT_STATE_DIR']}/kis-tokens: the KIS key is unverified until the next KIS "
        "run issues one; to verify it now: wombat-collect check --exchange kis --issue-token (KIS throttles "
        "issuance and notifies the account holder)")
    assert [name for name, state in states(found).items() if state != "OK"] == ["kis token"]
    assert fake_kis.tokens_issued == 0
    assert list(Path(migrated["WOMBAT_STATE_DIR"]).iterdir()) == []
    assert "upbit" not in found


def test_check_unreachable_exchange_is_critical(migrated, env_file):
    port = closed_port()
    code, found, _ = check(dict(migrated, UPBIT_API_URL=f"http://127.0.0.1:{port}"), "--exchange", "upbit",
                           env_file=env_file)
    assert code == 2
    assert found["upbit"] == ("CRITICAL", f"cannot reach http://127.0.0.1:{port}: connection refused; check the "
                                          "network, DNS, a proxy or firewall, and the URL variable")
    assert found["upbit clock"] == ("WARNING", "skipped: upbit did not answer")
    assert [name for name, state in states(found).items() if state != "OK"] == ["upbit", "upbit clock"]


@pytest.mark.parametrize(("offset", "state", "direction", "limit"), [
    (30, "WARNING", "behind", 5), (-30, "WARNING", "ahead of", 5), (120, "CRITICAL", "behind", 60)])
def test_check_skewed_date_header(migrated, env_file, fake_upbit, offset, state, direction, limit):
    fake_upbit.clock_offset = offset
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == ("WARNING", "CRITICAL").index(state) + 1
    found_state, message = found["upbit clock"]
    match = re.fullmatch(rf"host clock \(.* KST\) is (\d+\.\d) s {direction} upbit's \(HTTP Date\), more than "
                         rf"{limit} s; synchronise it \(timedatectl set-ntp true, or chrony\)", message)
    assert found_state == state and match, message
    assert abs(float(match.group(1)) - abs(offset)) < 2
