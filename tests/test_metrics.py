"""The Prometheus textfile: valid text format, built from collect_run, written atomically."""

import os
import re
import stat
import tempfile
from datetime import timedelta

from tests.conftest import query, run_cli, upbit_env
from tests.fakes.upbit_server import make_upbit_candles
from tests.ops_support import TODAY
from wombat_collect.ops import metrics

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)"
SAMPLE = re.compile(rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)\}})? ({VALUE})$")
COMMENT = re.compile(rf"^# (?:HELP ({NAME}) .+|TYPE ({NAME}) (?:counter|gauge|histogram|summary|untyped))$")


def parse_textfile(text):
    """Given Prometheus text, return {(name, ((label, value), ...)): float}; assert every line is valid."""
    samples, typed = {}, set()
    assert text.endswith("\n")
    for line in text.splitlines():
        comment = COMMENT.match(line)
        if comment:
            typed.add(comment.group(2)) if comment.group(2) else None
            continue
        match = SAMPLE.match(line)
        assert match, f"not Prometheus text format: {line!r}"
        name, labels, value = match.groups()
        assert name in typed, f"{name} has no # TYPE line before it"
        pairs = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")))
        samples[name, pairs] = float(value)
    return samples


def sample(samples, name, **labels):
    return samples[f"wombat_collect_{name}", tuple(sorted(labels.items()))]


def test_prices_metrics_file_reflects_every_job_in_collect_run(database, fake_upbit, tmp_path):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", TODAY - timedelta(days=5), TODAY))
    env = upbit_env(database, fake_upbit, WOMBAT_METRICS_DIR=str(tmp_path))
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    assert run_cli("prices", "--exchange", "upbit", env=env).exit_code == 0
    fake_upbit.set_blocked(True)
    assert run_cli("prices", "--exchange", "upbit", env=env).exit_code == 1

    assert os.listdir(tmp_path) == ["wombat_collect.prom"]
    assert stat.S_IMODE((tmp_path / "wombat_collect.prom").stat().st_mode) == 0o644
    samples = parse_textfile((tmp_path / "wombat_collect.prom").read_text())
    prices = {"command": "prices", "exchange": "upbit"}
    symbols = {"command": "symbols", "exchange": "upbit"}
    success_end, failure_end, failure_took = query(
        database, "SELECT (SELECT extract(epoch FROM finished_at)::float8"
                  " FROM wombat_collect.collect_run WHERE status = 'succeeded'"
                  "         AND job = 'prices'),"
                  " extract(epoch FROM finished_at)::float8, extract(epoch FROM finished_at - started_at)::float8"
                  " FROM wombat_collect.collect_run WHERE status = 'failed'")[0]
    assert sample(samples, "last_success_timestamp_seconds", **prices) == success_end
    assert sample(samples, "last_run_timestamp_seconds", **prices) == failure_end
    assert sample(samples, "last_run_duration_seconds", **prices) == failure_took
    assert [sample(samples, "last_run_status", **prices, status=status)
            for status in ("succeeded", "partial", "failed", "interrupted")] == [0, 0, 1, 0]
    assert sample(samples, "failures_since_success", **prices) == 1
    assert sample(samples, "runs_total", **prices, status="succeeded") == 1
    assert sample(samples, "runs_total", **prices, status="failed") == 1
    assert sample(samples, "last_run_rows", **prices, kind="inserted") == 0
    assert sample(samples, "last_run_rows", **symbols, kind="inserted") == 1
    assert sample(samples, "last_run_symbols", **symbols, outcome="ok") == 1
    assert sample(samples, "failures_since_success", **symbols) == 0
    assert sample(samples, "last_run_timeframe", **prices, timeframe="1d") == 1
    assert len(samples) == 2 * (1 + 1 + 4 + 3 + 4 + 1 + 1) + 3 + 1  # + the prices run's one timeframe


def test_prices_metrics_and_run_history_name_the_timeframes(database, fake_upbit, tmp_path):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", TODAY - timedelta(days=5), TODAY))
    env = upbit_env(database, fake_upbit, WOMBAT_METRICS_DIR=str(tmp_path), WOMBAT_TIMEFRAMES="1d,1h")
    assert run_cli("prices", "--exchange", "upbit", "--days-back", "2", env=env).exit_code == 0
    assert query(database, "SELECT arguments -> 'timeframes' FROM wombat_collect.collect_run WHERE job = 'prices'") == [
        ({"upbit": ["1h", "1d"]},)]
    samples = parse_textfile((tmp_path / "wombat_collect.prom").read_text())
    timeframes = {dict(labels)["timeframe"] for name, labels in samples if name.endswith("last_run_timeframe")}
    assert timeframes == {"1h", "1d"}


def test_prices_unwritable_metrics_dir_only_warns(database, fake_upbit, tmp_path):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", TODAY - timedelta(days=3), TODAY))
    result = run_cli("prices", "--exchange", "upbit",
                     env=upbit_env(database, fake_upbit, WOMBAT_METRICS_DIR=str(tmp_path / "missing")))
    assert result.exit_code == 0
    assert f"cannot write metrics to {tmp_path}/missing: No such file or directory" in result.stderr
    assert query(database, "SELECT status FROM wombat_collect.collect_run") == [("succeeded",)]


def test_render_escapes_labels_and_writes_nan_for_unknowns():
    row = {"job": 'pri"ces', "exchange": "up\\bit\n", "status": "failed", "finished": 1751371200.25,
           "duration": None, "symbols_ok": 0, "symbols_failed": 0, "symbols_skipped": 0, "rows_inserted": 0,
           "rows_updated": 0, "rows_unchanged": 0, "rows_rejected": 0, "last_success": None, "since_success": 3}
    text = metrics.render([row], [('pri"ces', "up\\bit\n", "failed", 3)])
    samples = parse_textfile(text)
    labels = {"command": 'pri\\"ces', "exchange": "up\\\\bit\\n"}
    assert sample(samples, "last_run_timestamp_seconds", **labels) == 1751371200.25
    assert str(sample(samples, "last_run_duration_seconds", **labels)) == "nan"
    assert sample(samples, "last_success_timestamp_seconds", **labels) == 0


def test_write_textfile_replaces_the_old_file_and_leaves_no_temporary(tmp_path):
    (tmp_path / "wombat_collect.prom").write_text("old\n")
    (tmp_path / "other.prom").write_text("other\n")
    metrics.write_textfile(tmp_path, "# TYPE x gauge\nx 1\n")
    assert (tmp_path / "wombat_collect.prom").read_text() == "# TYPE x gauge\nx 1\n"
    assert sorted(os.listdir(tmp_path)) == ["other.prom", "wombat_collect.prom"]


def test_write_textfile_sets_the_mode_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)  # the units' UMask=
    try:
        metrics.write_textfile(tmp_path, "# TYPE x gauge\nx 1\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "wombat_collect.prom").stat().st_mode) == 0o644


def test_write_textfile_never_chmods_through_a_swapped_in_symlink(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("private\n")
    victim.chmod(0o600)
    directory = tmp_path / "textfile"
    directory.mkdir()
    real_mkstemp = tempfile.mkstemp

    def mkstemp_then_swap(**options):
        """Create the temporary file, then (like another writer of the directory) swap its name for a symlink."""
        descriptor, name = real_mkstemp(**options)
        os.unlink(name)
        os.symlink(victim, name)
        return descriptor, name

    monkeypatch.setattr(metrics.tempfile, "mkstemp", mkstemp_then_swap)
    metrics.write_textfile(directory, "# TYPE x gauge\nx 1\n")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert victim.read_text() == "private\n"
