"""The Dockerfile and .dockerignore: hadolint, the base image, the user, the environment, supercronic's pin,
and the image's HEALTHCHECK run for real against the fake exchanges and a real PostgreSQL (see
tests/containers_support.py)."""

import re
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.conftest import query
from tests.containers_support import (
    DOCKERFILE,
    REPOSITORY,
    STATE_DIR,
    SUPERCRONIC_AMD64_SHA1,
    SUPERCRONIC_VERSION,
    base_environment,
    dockerfile_instructions,
    duration_seconds,
    final_stage,
    healthcheck_command,
    healthcheck_options,
    image_environment,
    image_runtime_environment,
    install_upbit_candles,
    linter,
    run_in_workdir,
    run_supercronic_jobs,
    serve_fake_kis,
    stage_arguments,
)


@pytest.fixture
def fake_kis():
    yield from serve_fake_kis()


@pytest.fixture
def upbit_candles(fake_upbit):
    return install_upbit_candles(fake_upbit)


# --- Dockerfile ----------------------------------------------------------

def test_dockerfile_passes_hadolint():
    result = subprocess.run([linter("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_ignores_only_with_a_reason():
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            reason = line.split("hadolint ignore=", 1)[1].split(None, 1)[1:] or [lines[number - 1]]
            assert reason[0].strip("# ").strip(), f"line {number + 1}: an ignore without a reason"
    assert not (REPOSITORY / ".hadolint.yaml").exists(), "rules are ignored in the Dockerfile, with reasons"


def test_dockerfile_pins_an_official_slim_python_minor():
    bases = [arguments.split()[0] for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base) for base in bases), bases
    assert len(set(bases)) == 1, "every stage on the same base"


def test_dockerfile_installs_from_the_context_without_pip_cache():
    installs = [arguments for keyword, arguments in dockerfile_instructions()
                if keyword == "RUN" and "pip install" in arguments]
    assert installs and all("--no-cache-dir" in install for install in installs)
    assert any("'.[sentry]'" in install for install in installs)


def test_dockerfile_runs_as_a_numeric_non_root_user():
    stage = final_stage(dockerfile_instructions())
    [user] = [arguments for keyword, arguments in stage if keyword == "USER"]
    resolved = re.sub(r"\$\{(\w+)\}", lambda match: stage_arguments(stage)[match.group(1)], user)
    uid, _, gid = resolved.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit(), resolved
    # The volume directory belongs to that user, mode 0700.
    assert any(keyword == "RUN" and "install -d -m 0700" in arguments and STATE_DIR in arguments
               for keyword, arguments in stage)


def test_dockerfile_sets_environment_for_the_jobs():
    environment = image_environment()
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert environment["TZ"] == "Asia/Seoul"
    assert environment["WOMBAT_STATE_DIR"] == STATE_DIR
    assert environment["WOMBAT_LOCK_DIR"] == STATE_DIR
    assert environment["PATH"].startswith("/opt/wombat-collect/bin:")


def test_dockerfile_pins_supercronic_by_sha1_and_tests_the_crontab():
    instructions = dockerfile_instructions()
    arguments = {}
    for keyword, text in instructions:
        if keyword == "ARG" and "=" in text:
            name, _, value = text.partition("=")
            arguments[name] = value
    assert arguments["SUPERCRONIC_VERSION"] == SUPERCRONIC_VERSION
    assert arguments["SUPERCRONIC_SHA1_AMD64"] == SUPERCRONIC_AMD64_SHA1
    # sha1sum -c wants two spaces between the sum and the name.
    assert 'echo "${SUPERCRONIC_SHA1_AMD64}  /supercronic" | sha1sum -c -' in DOCKERFILE.read_text(encoding="utf-8")
    stage = final_stage(instructions)
    assert ("COPY", "crontab/supercronic /etc/wombat-collect/crontab") in stage
    assert ("RUN", "supercronic -test /etc/wombat-collect/crontab") in stage
    assert ("CMD", '["supercronic", "-passthrough-logs", "/etc/wombat-collect/crontab"]') in stage
    assert not [keyword for keyword, _ in stage if keyword == "ENTRYPOINT"], \
        "no ENTRYPOINT: `docker run IMAGE wombat-collect ...` replaces the command"


def test_dockerfile_healthcheck_does_not_hammer_the_database():
    options = healthcheck_options()
    assert duration_seconds(options["interval"]) >= 5 * 60
    assert duration_seconds(options["timeout"]) >= 30
    # Docker reserves exit code 2; status exits 2 when critical.
    assert healthcheck_command()[-1].endswith("|| exit 1")


def dockerignore_includes(relative_path):
    """Return whether .dockerignore lets `relative_path` into the build context (last match wins)."""
    included = True
    for raw_line in (REPOSITORY / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(relative_path).parts
        prefixes = ["/".join(parts[:count]) for count in range(1, len(parts) + 1)]
        if any(fnmatch(prefix, pattern) for prefix in prefixes) or fnmatch(Path(relative_path).name, pattern):
            included = negated
    return included


def test_dockerignore_sends_what_the_image_copies_and_nothing_else():
    sources = [arguments.split()[:-1] for keyword, arguments in dockerfile_instructions()
               if keyword == "COPY" and not arguments.startswith("--from")]
    for source in (path for group in sources for path in group):
        assert dockerignore_includes(source.rstrip("/") + ("/cli.py" if source.startswith("wombat_collect") else ""))
    for private in (".venv/bin/python", ".git/config", "tests/test_cli.py", ".env", "k8s/cronjob-prices.yaml"):
        assert not dockerignore_includes(private), private


def test_healthcheck_command_is_healthy_when_fresh_and_unhealthy_when_stale(
        database, fake_upbit, upbit_candles, fake_kis, tmp_path):
    command = healthcheck_command()
    assert command[:2] == ["/bin/sh", "-c"]
    env, results = run_supercronic_jobs(database, fake_upbit, fake_kis, tmp_path)
    assert [result.returncode for _, result in results] == [0, 0, 0]
    fresh = run_in_workdir(command, env, tmp_path)
    assert (fresh.returncode, fresh.stdout.splitlines()[0]) == (0, "WOMBAT-COLLECT OK"), fresh.stderr
    query(database, "UPDATE wombat_collect.collect_run SET started_at = started_at - interval '30 hours',"
                    " finished_at = finished_at - interval '30 hours' RETURNING id")
    stale = run_in_workdir(command, env, tmp_path)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert stale.stdout.startswith("WOMBAT-COLLECT CRITICAL")


def test_healthcheck_command_is_unhealthy_without_a_database(tmp_path):
    env = {**base_environment(), **image_runtime_environment(tmp_path),
           "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"}
    result = run_in_workdir(healthcheck_command(), env, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
