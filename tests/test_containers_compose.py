"""The compose files: the compose-spec schema, the service as a drop-in for the backend's scheduler-engine, the
state volume, the standalone database, the merge into the backend's stack, and the Compose override example of
docs/development.md."""

import subprocess

import yaml

from tests.containers_support import (
    BACKEND_COMPOSE,
    BACKEND_VARIABLES,
    COMPOSE,
    COMPOSE_BACKEND,
    COMPOSE_STANDALONE,
    IMAGE_CRONTAB,
    STATE_DIR,
    compose_services,
    dockerfile_instructions,
    duration_seconds,
    final_stage,
    image_environment,
    linter,
    load_yaml,
    merge,
)
from tests.ops_support import DEVELOPMENT_DOC, document_code_blocks, document_section


def undefined_dependencies(project):
    """Given a merged compose mapping, return the (service, dependency) pairs naming no service."""
    services = project["services"]
    return [(name, dependency) for name, service in services.items() if not service.get("profiles")
            for dependency in service.get("depends_on", {}) if dependency not in services]


def test_compose_files_validate_against_the_compose_spec():
    result = subprocess.run([linter("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                             str(COMPOSE), str(COMPOSE_STANDALONE), str(COMPOSE_BACKEND)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_service_is_a_drop_in_for_the_scheduler_engine():
    services = compose_services(COMPOSE)
    service = services["wombat-collect"]
    assert set(service["environment"]) == BACKEND_VARIABLES
    assert service["environment"]["POSTGRES_SERVER"] == "db"
    assert service["depends_on"]["db"] == {"condition": "service_healthy", "restart": True}
    assert service["depends_on"]["wombat-collect-init"] == {"condition": "service_completed_successfully"}
    assert service["restart"] in ("always", "unless-stopped")
    assert "command" not in service, "the image's command: supercronic"
    # A daily run takes minutes; supercronic waits for it on SIGTERM.
    assert duration_seconds(service["stop_grace_period"]) >= 5 * 60
    init = services["wombat-collect-init"]
    assert init["command"] == ["wombat-collect", "db", "init"]
    assert init["environment"] == service["environment"]
    assert init["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_state_volume_holds_the_image_state_and_lock_directories():
    project = load_yaml(COMPOSE)
    mounts = dict(mount.split(":", 1)[::-1] for mount in project["services"]["wombat-collect"]["volumes"])
    environment = image_environment()
    assert mounts[environment["WOMBAT_STATE_DIR"]] == "wombat-collect-state"
    assert mounts[environment["WOMBAT_LOCK_DIR"]] == "wombat-collect-state"
    assert "wombat-collect-state" in project["volumes"]


def test_compose_standalone_defines_a_healthy_database():
    project = merge(load_yaml(COMPOSE), load_yaml(COMPOSE_STANDALONE))
    assert undefined_dependencies(project) == []
    database = project["services"]["db"]
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert "profiles" not in database, "`docker compose up` starts it"


def test_compose_merged_into_the_backend_replaces_its_scheduler():
    project = merge(merge(BACKEND_COMPOSE, load_yaml(COMPOSE)), load_yaml(COMPOSE_BACKEND))
    assert undefined_dependencies(project) == []
    assert project["services"]["db"] == BACKEND_COMPOSE["services"]["db"], "the backend's own db"
    assert project["services"]["scheduler-engine"]["profiles"] == ["backend-scheduler"]
    assert project["services"]["wombat-collect-init"]["depends_on"]["prestart"] == {
        "condition": "service_completed_successfully"}
    # Without the helper file, the two schedulers would both run.
    assert "profiles" not in merge(BACKEND_COMPOSE, load_yaml(COMPOSE))["services"]["scheduler-engine"]


def test_readme_compose_override_mounts_the_changed_crontab_where_supercronic_reads_it():
    [override] = [yaml.safe_load(block) for block in document_code_blocks(DEVELOPMENT_DOC,
                                                                         "Container crontab: a Compose override",
                                                                         "yaml")]
    [commands] = document_code_blocks(DEVELOPMENT_DOC, "Container crontab: a Compose override", "sh")
    project = merge(load_yaml(COMPOSE), override)
    mounts = project["services"]["wombat-collect"]["volumes"]
    [added] = [mount for mount in mounts if mount not in load_yaml(COMPOSE)["services"]["wombat-collect"]["volumes"]]
    source, target, mode = added.split(":")
    assert (target, mode) == (IMAGE_CRONTAB, "ro")
    assert ("CMD", f'["supercronic", "-passthrough-logs", "{IMAGE_CRONTAB}"]') in final_stage(dockerfile_instructions())
    assert f"cp crontab/supercronic {source}" in commands
    assert f"$PWD/{source.removeprefix('./')}:{IMAGE_CRONTAB}:ro" in commands  # the same file is tested first
    assert "-f compose.yaml -f compose.override.yaml -f compose.schedule.yaml up -d" in commands
    assert "`compose.schedule.yaml`:" in document_section(DEVELOPMENT_DOC, "Container crontab: a Compose override")
    state = [mount for mount in mounts if mount.startswith("wombat-collect-state:")]
    assert state == [f"wombat-collect-state:{STATE_DIR}"], "the state volume stays mounted"
