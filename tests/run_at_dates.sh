#!/usr/bin/env bash
# Run the date-sensitive test files with the clock moved (libfaketime) to every
# weekday, the last day of a month, 31 December, 1 January and DST changes of a
# host zone. Any failure at any date fails the script, and so does a pytest run
# that collects no tests (exit 5).
#
#   tests/run_at_dates.sh                       # every date, the files below
#   tests/run_at_dates.sh tests/test_cli.py     # every date, other files
#
# Needs `faketime` (Debian package faketime) and the project's .venv. The clock
# moves by a relative offset (faketime -f +Ns): it keeps running, every child
# process (the embedded PostgreSQL, CLI subprocesses, the fakes) sees the same
# time, and no absolute time is read in each process's own zone. The tests use
# the embedded PostgreSQL, which runs under the same offset, so its now() agrees
# with Python's clock; WOMBAT_TEST_DATABASE_URL is ignored here (a server outside
# the fake clock would stamp collect_run rows with the real date).
# FAKETIME_DONT_FAKE_MONOTONIC is not set: with libfaketime 0.9.10 it makes
# Python's time.sleep fail with EINVAL.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
DEFAULT_FILES=(
    tests/test_cli.py tests/test_collectors.py tests/test_jobs_prices.py tests/test_jobs_streaming.py tests/test_kis.py
    tests/test_jobs_backfill.py
    tests/test_history.py tests/test_status.py tests/test_validate.py tests/test_metrics.py
    tests/test_timeframes.py tests/test_schedule.py tests/test_units.py
)
# label | host zone (TZ) | UTC moment the clock starts at
MOMENTS=(
    "Monday|UTC|2026-12-07 12:00:00"
    "Tuesday|UTC|2026-12-08 12:00:00"
    "Wednesday|UTC|2026-12-09 12:00:00"
    "Thursday|UTC|2026-12-10 12:00:00"
    "Friday, Saturday in Seoul|UTC|2026-12-11 16:00:00"
    "Saturday|UTC|2026-12-12 12:00:00"
    "Sunday, Monday in Seoul|UTC|2026-12-13 20:00:00"
    "last day of February, 1 March in Seoul|UTC|2027-02-28 18:00:00"
    "31 December|UTC|2026-12-31 12:00:00"
    "1 January in Seoul, 31 December in UTC|Asia/Seoul|2026-12-31 20:00:00"
    "1 January|UTC|2027-01-01 12:00:00"
    "America/New_York springs forward 2 min in|America/New_York|2027-03-14 06:58:00"
    "Europe/Berlin falls back 2 min in|Europe/Berlin|2027-10-31 00:58:00"
)

if ! command -v faketime >/dev/null; then
    echo "faketime is not installed (apt-get install faketime)" >&2
    exit 2
fi
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("${DEFAULT_FILES[@]}")
unset WOMBAT_TEST_DATABASE_URL

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed=()
began=$SECONDS
for moment in "${MOMENTS[@]}"; do
    IFS='|' read -r label zone start <<<"$moment"
    printf -v offset '%+ds' $(( $(date -u -d "$start" +%s) - $(date -u +%s) ))
    echo "== $start UTC, TZ=$zone ($label)"
    TZ="$zone" faketime -f "$offset" "$PYTHON" -m pytest -q -p no:cacheprovider \
        -o addopts="-ra --strict-markers" "${files[@]}" >"$log" 2>&1
    status=$?
    if [ "$status" -eq 0 ]; then
        tail -n 1 "$log"
    else
        if grep -q "short test summary info" "$log"; then
            sed -n '/short test summary info/,$p' "$log"
        else
            tail -n 20 "$log"
        fi
        failed+=("$start UTC, TZ=$zone: pytest exit $status")
    fi
done

echo "== $(( ${#MOMENTS[@]} )) dates in $(( SECONDS - began )) s"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED at %s\n' "${failed[@]}"
    exit 1
fi
echo "every date passed"
