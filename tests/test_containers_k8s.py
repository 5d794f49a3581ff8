"""The Kubernetes manifests in k8s/: kubernetes-validate --strict, the CronJobs' schedules, retries, lock-down,
volumes, secrets and resources, their command lines run for real as pods against the fake exchanges and a real
PostgreSQL (one KIS token through the claim), the one-off backfill Job's indexes, retries and spread over nodes,
and the kubectl patch example of docs/development.md."""

import copy
import json
import re
import shlex
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import query
from tests.containers_support import (
    CRONJOBS,
    JOBS,
    K8S,
    MEASURED_BACKFILL_PEAK_MIB,
    MEASURED_DAILY_PEAK_MIB,
    MOVED_JOBS,
    QUOTES,
    assert_everything_collected,
    base_environment,
    container,
    cron_instants,
    cronjob_arguments,
    cronjobs,
    exchange_environment,
    expected_firings,
    install_upbit_candles,
    kis_codes,
    linter,
    load_yaml,
    merge,
    pod_spec,
    run_in_workdir,
    serve_fake_kis,
)
from tests.fakes.upbit_server import GeneratedSeries
from tests.ops_support import DEVELOPMENT_DOC, document_code_blocks, document_section

BACKFILL_JOB = K8S / "job-backfill-upbit.yaml"
DEPLOYMENT_DOC = K8S.parent / "docs" / "deployment.md"
BACKFILL_HEADING = "A backfill over several pods (Indexed Job)"
# The manifests whose pods run wombat-collect: the CronJobs and the one-off Jobs.
POD_MANIFESTS = [*CRONJOBS, *sorted(K8S.glob("job-*.yaml"))]


@pytest.fixture
def fake_kis():
    yield from serve_fake_kis()


@pytest.fixture
def upbit_candles(fake_upbit):
    return install_upbit_candles(fake_upbit)


# --- Kubernetes ------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.27.0", "1.37.0"])
def test_k8s_manifests_validate_strictly(version):
    manifests = [str(path) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"]
    result = subprocess.run([linter("kubernetes-validate"), "--strict", "--quiet", "-k", version, *manifests],
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_k8s_kustomization_lists_every_manifest_but_the_one_off_jobs():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    manifests = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
    # The kustomization is the recurring schedule: every CronJob and the claim. The one-off Jobs
    # (job-*.yaml) are left out on purpose and applied by hand.
    assert sorted(kustomization["resources"]) == [name for name in manifests if not name.startswith("job-")]
    assert [(name, load_yaml(K8S / name)["kind"]) for name in manifests if name.startswith("job-")] == [
        ("job-backfill-upbit.yaml", "Job")]
    assert sorted({load_yaml(K8S / name)["kind"] for name in kustomization["resources"]}) == [
        "CronJob", "PersistentVolumeClaim"]
    assert [image["name"] for image in kustomization["images"]] == ["wombat-collect"]


@pytest.mark.parametrize("path", CRONJOBS, ids=lambda path: path.stem)
def test_cronjob_runs_once_at_a_time_with_bounded_retries(path):
    cronjob = load_yaml(path)
    spec = cronjob["spec"]
    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    assert spec["timeZone"] == "Asia/Seoul"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] >= 10
    assert 1 <= spec["successfulJobsHistoryLimit"] <= 5 and 1 <= spec["failedJobsHistoryLimit"] <= 5
    job = spec["jobTemplate"]["spec"]
    assert 0 <= job["backoffLimit"] <= 3
    assert 0 < job["activeDeadlineSeconds"] <= 2 * 3600
    assert pod_spec(cronjob)["restartPolicy"] == "Never"


@pytest.mark.parametrize("path", POD_MANIFESTS, ids=lambda path: path.stem)
def test_k8s_pod_is_locked_down(path):
    manifest = load_yaml(path)
    pod = pod_spec(manifest)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    assert pod["automountServiceAccountToken"] is False
    for each in [container(manifest), *pod["initContainers"]]:
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("path", POD_MANIFESTS, ids=lambda path: path.stem)
def test_k8s_pod_writes_only_to_mounted_volumes(path):
    manifest = load_yaml(path)
    env = {variable["name"]: variable.get("value") for variable in container(manifest)["env"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container(manifest)["volumeMounts"]}
    for path in (env["WOMBAT_STATE_DIR"], env["WOMBAT_LOCK_DIR"], "/tmp"):  # noqa: S108 - a mount path
        assert moved(path, {mount: "volume" for mount in mounts}).startswith("volume"), path
    # The lock directory is made 0700 by an init container on the same volume.
    [init] = pod_spec(manifest)["initContainers"]
    assert init["command"] == ["mkdir", "-m", "0700", env["WOMBAT_LOCK_DIR"]]
    assert {mount["name"] for mount in init["volumeMounts"]} <= set(mounts.values())
    volumes = {volume["name"] for volume in pod_spec(manifest)["volumes"]}
    assert {mount["name"] for mount in container(manifest)["volumeMounts"]} == volumes


@pytest.mark.parametrize("path", POD_MANIFESTS, ids=lambda path: path.stem)
def test_k8s_pod_takes_secrets_from_a_secret(path):
    variables = {variable["name"]: variable for variable in container(load_yaml(path))["env"]}
    for name in ("DATABASE_URL", "KIS_APP_KEY", "KIS_APP_SECRET", "SENTRY_DSN"):
        assert variables[name]["valueFrom"]["secretKeyRef"] == {
            "name": "wombat-collect", "key": name, **({} if name == "DATABASE_URL" else {"optional": True})}
        assert "value" not in variables[name]


@pytest.mark.parametrize("path", POD_MANIFESTS, ids=lambda path: path.stem)
def test_k8s_pod_resources_cover_the_measured_peak(path):
    resources = container(load_yaml(path))["resources"]

    def mebibytes(text):
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", text).groups()
        return int(number) * (1024 if unit == "Gi" else 1)

    assert mebibytes(resources["requests"]["memory"]) >= 1.5 * MEASURED_DAILY_PEAK_MIB
    assert mebibytes(resources["limits"]["memory"]) >= 2 * MEASURED_BACKFILL_PEAK_MIB
    assert "cpu" not in resources["limits"], "a CPU limit only throttles a rate-limited job"


def test_backfill_job_is_indexed_with_bounded_retries_and_deadline():
    job = load_yaml(BACKFILL_JOB)
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == (
        "batch/v1", "Job", "wombat-collect-backfill-upbit")
    spec = job["spec"]
    # Four pods at once, one index each; four failures in all (Kubernetes 1.27, validated above, has no
    # backoffLimitPerIndex); four days: a one-node cluster's one pod fetching ~23 months of 1-minute candles
    # at 10 req/s (~75 h); the finished Job kept a week.
    assert {key: spec[key] for key in ("completionMode", "completions", "parallelism", "backoffLimit",
                                       "activeDeadlineSeconds", "ttlSecondsAfterFinished")} == {
        "completionMode": "Indexed", "completions": 4, "parallelism": 4, "backoffLimit": 4,
        "activeDeadlineSeconds": 4 * 24 * 3600, "ttlSecondsAfterFinished": 7 * 24 * 3600}
    assert "backoffLimitPerIndex" not in spec
    # The CronJobs' failure policy: no retry of 2 (configuration) or 75 (an ordinary run holds the lock), a drained
    # node not counted.
    assert spec["podFailurePolicy"] == {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "wombat-collect", "operator": "In", "values": [2, 75]},
         "onPodConditions": []},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert container(job)["command"] == [
        "wombat-collect", "prices", "--exchange", "upbit", "--since", "2025-01-01", "--timeframe", "1m", "--worker"]


def test_backfill_job_spreads_pods_one_per_node():
    job = load_yaml(BACKFILL_JOB)
    labels = {"app.kubernetes.io/name": "wombat-collect", "app.kubernetes.io/component": "backfill-upbit"}
    assert job["metadata"]["labels"] == job["spec"]["template"]["metadata"]["labels"] == labels
    # Upbit limits per client IP and the pods of one node share its egress IP: never two of them on one node.
    assert pod_spec(job)["affinity"] == {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}}
    # The selector matches the backfill's pods only, none of a CronJob's.
    assert [cronjob["metadata"]["name"] for cronjob in cronjobs()
            if cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"] == labels] == []
    # Its state is an emptyDir (Upbit needs no KIS token): the ReadWriteOnce claim would hold pods on other nodes.
    assert {volume["name"]: volume for volume in pod_spec(job)["volumes"]}["state"] == {
        "name": "state", "emptyDir": {"sizeLimit": "1Mi"}}


def test_backfill_job_pods_are_the_prices_upbit_cronjobs_but_for_command_and_spread():
    [prices_upbit] = [cronjob for cronjob in cronjobs() if cronjob["metadata"]["name"] == "wombat-collect-prices-upbit"]
    job_pod, cronjob_pod = (copy.deepcopy(pod_spec(manifest)) for manifest in (load_yaml(BACKFILL_JOB),
                                                                                    prices_upbit))
    assert job_pod.pop("affinity")
    assert "affinity" not in cronjob_pod
    assert [job_pod["containers"][0].pop("command")[:4], cronjob_pod["containers"][0].pop("command")] == [
        ["wombat-collect", "prices", "--exchange", "upbit"]] * 2
    environment = job_pod["containers"][0]["env"]
    assert environment.pop() == {"name": "WOMBAT_WORKERS", "value": "2"}  # threads a worker: one IP busy
    # Image, security contexts, the rest of the environment and Secret, resources, volumes: the same.
    assert job_pod == cronjob_pod


def test_backfill_job_docs_apply_the_file_and_watch_its_pods():
    job = load_yaml(BACKFILL_JOB)
    [block] = document_code_blocks(DEPLOYMENT_DOC, BACKFILL_HEADING, "sh")
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    assert commands[0] == ["kubectl", "apply", "-f", f"k8s/{BACKFILL_JOB.name}"]
    selectors = {words[words.index("-l") + 1] for words in commands if "-l" in words}
    component = job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert selectors == {f"app.kubernetes.io/component={component}"}
    section = " ".join(document_section(DEPLOYMENT_DOC, BACKFILL_HEADING).split())
    assert f"`{' '.join(container(job)['command'])}`" in section
    assert f"`kubectl delete job {job['metadata']['name']}`" in section
    assert f"`backoffLimit: {job['spec']['backoffLimit']}`" in section


def test_cronjob_for_kis_keeps_its_state_on_the_claim():
    claims = {}
    for cronjob in cronjobs():
        state = {volume["name"]: volume for volume in pod_spec(cronjob)["volumes"]}["state"]
        claims[cronjob["metadata"]["name"]] = state.get("persistentVolumeClaim", {}).get("claimName")
    # The jobs that call KIS's price APIs share the token cache; the others need no token.
    assert claims == {"wombat-collect-symbols": None, "wombat-collect-prices": "wombat-collect-state",
                      "wombat-collect-prices-upbit": None, "wombat-collect-quotes-upbit": None,
                      "wombat-collect-quotes-kis-0830": "wombat-collect-state",
                      "wombat-collect-quotes-kis-0900": "wombat-collect-state",
                      "wombat-collect-quotes-kis-1800": "wombat-collect-state"}
    assert load_yaml(K8S / "pvc-state.yaml")["metadata"]["name"] == "wombat-collect-state"


def test_cronjob_for_quotes_skips_a_missed_minute_instead_of_running_it_late():
    quotes = [cronjob for cronjob in cronjobs() if cronjob_arguments(cronjob) in QUOTES]
    assert sorted(cronjob_arguments(cronjob) for cronjob in quotes) == [
        "quotes --exchange kis"] * 3 + ["quotes --exchange upbit"]
    for cronjob in quotes:
        # Started within half a minute or not at all; no retry; stopped before it could overlap two slots.
        assert cronjob["spec"]["startingDeadlineSeconds"] <= 30
        assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
        assert cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] <= 120


def moved(value, mounts):
    """Given a path in the pod and {mountPath: directory}, return the same path under the directory."""
    for mount_path, directory in mounts.items():
        if value == mount_path or value.startswith(mount_path + "/"):
            return directory + value[len(mount_path):]
    return value


def cronjob_environment(cronjob, database, fake_kis, mounts):
    """Given a CronJob, return its container's env with the Secret's values and the mount paths moved."""
    secret = {"DATABASE_URL": database, "KIS_APP_KEY": fake_kis.app_key, "KIS_APP_SECRET": fake_kis.app_secret}
    env = {}
    for variable in container(cronjob)["env"]:
        if "valueFrom" in variable:
            key = variable["valueFrom"]["secretKeyRef"]["key"]
            if key in secret:
                env[variable["name"]] = secret[key]
        else:
            env[variable["name"]] = moved(variable["value"], mounts)
    return env


def pod_volumes(cronjob, tmp_path, claim):
    """Given a CronJob, return {volume name: directory} for a new pod: the claim, or new emptyDirs (0777, as
    the kubelet makes them)."""
    pod = tmp_path / f"pod-{len(list(tmp_path.glob('pod-*')))}"
    directories = {}
    for volume in pod_spec(cronjob)["volumes"]:
        if "persistentVolumeClaim" in volume:
            directories[volume["name"]] = str(claim)
            continue
        assert "emptyDir" in volume, volume
        directory = pod / volume["name"]
        directory.mkdir(parents=True)
        directory.chmod(0o777)
        directories[volume["name"]] = str(directory)
    return directories


def run_cronjob(cronjob, database, fake_upbit, fake_kis, tmp_path, claim):
    """Run a CronJob's init containers, then its container (argv, no shell, as the kubelet does), in a new pod's
    volumes. Return the container's CompletedProcess."""
    volumes = pod_volumes(cronjob, tmp_path, claim)
    for init in pod_spec(cronjob).get("initContainers", []):
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in init["volumeMounts"]}
        result = run_in_workdir([moved(argument, mounts) for argument in init["command"]], base_environment(),
                                tmp_path)
        assert result.returncode == 0, result.stderr
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container(cronjob)["volumeMounts"]}
    env = {**base_environment(), "TZ": "Asia/Seoul",
           **cronjob_environment(cronjob, database, fake_kis, mounts), **exchange_environment(fake_upbit, fake_kis)}
    return run_in_workdir(container(cronjob)["command"], env, tmp_path)


def test_cronjob_commands_collect_everything(database, fake_upbit, upbit_candles, fake_kis, tmp_path):
    claim = tmp_path / "claim"
    claim.mkdir()
    daily = sorted((cronjob for cronjob in cronjobs() if cronjob_arguments(cronjob) in JOBS),
                   key=lambda cronjob: cronjob["spec"]["schedule"])  # "0 0", "2 0", "5 9"
    quotes = sorted((cronjob for cronjob in cronjobs() if cronjob_arguments(cronjob) in QUOTES),
                    key=lambda cronjob: cronjob["metadata"]["name"])
    results = [(cronjob["metadata"]["name"], run_cronjob(cronjob, database, fake_upbit, fake_kis, tmp_path, claim))
               for cronjob in daily + quotes]
    assert [(name, result.returncode) for name, result in results] == [
        ("wombat-collect-symbols", 0), ("wombat-collect-prices", 0), ("wombat-collect-prices-upbit", 0),
        ("wombat-collect-quotes-kis-0830", 0), ("wombat-collect-quotes-kis-0900", 0),
        ("wombat-collect-quotes-kis-1800", 0), ("wombat-collect-quotes-upbit", 0),
    ], [result.stderr[-2000:] for _, result in results]
    assert_everything_collected(database, fake_kis, upbit_candles,
                                [("quotes", "kis", "succeeded")] * 3 + [("quotes", "upbit", "succeeded")])
    assert query(database, "SELECT e.code, count(*) FROM realtime_prices r JOIN symbol s ON s.id = r.symbol_id"
                           " JOIN exchange e ON e.id = s.exchange_id GROUP BY 1 ORDER BY 1") == [
        ("kis", len(kis_codes())), ("upbit", len(upbit_candles))]
    # The KIS quotes pods reused the token the prices pod cached on the claim.
    assert fake_kis.tokens_issued == 1


def test_cronjob_prices_pods_share_one_kis_token_through_the_claim(database, fake_upbit, upbit_candles, fake_kis,
                                                                    tmp_path):
    [prices] = [cronjob for cronjob in cronjobs() if container(cronjob)["command"][1:] == ["prices", "--exchange",
                                                                                          "all"]]
    claim = tmp_path / "claim"
    claim.mkdir()
    first = run_cronjob(prices, database, fake_upbit, fake_kis, tmp_path, claim)
    second = run_cronjob(prices, database, fake_upbit, fake_kis, tmp_path, claim)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr[-2000:] + second.stderr[-2000:]
    assert fake_kis.tokens_issued == 1
    # A pod whose state is an emptyDir would issue another one.
    other_claim = tmp_path / "other-claim"
    other_claim.mkdir()
    assert run_cronjob(prices, database, fake_upbit, fake_kis, tmp_path, other_claim).returncode == 0
    assert fake_kis.tokens_issued == 2


def test_readme_kubectl_patch_moves_the_prices_cronjob_to_0130():
    [block] = document_code_blocks(DEVELOPMENT_DOC, "Kubernetes: kubectl patch", "sh")
    words = shlex.split(block)
    assert words[:3] == ["kubectl", "patch", "cronjob"] and "--type=merge" in words
    patch = json.loads(words[words.index("-p") + 1])
    [manifest] = [cronjob for cronjob in cronjobs() if cronjob["metadata"]["name"] == words[3]]
    patched = merge(manifest, patch)
    assert cronjob_arguments(patched) == "prices --exchange all"
    moved = {(moment, "prices --exchange all") for moment in
             cron_instants(patched["spec"]["schedule"], patched["spec"]["timeZone"])}
    assert moved == {firing for firing in expected_firings(MOVED_JOBS) if firing[1] == "prices --exchange all"}


def test_backfill_job_command_collects_the_history_as_a_worker(database, fake_upbit, fake_kis, tmp_path):
    job = load_yaml(BACKFILL_JOB)
    command = container(job)["command"]
    timeframe = command[command.index("--timeframe") + 1]
    assert timeframe == "1m"
    end = datetime.combine(datetime.now(timezone.utc).date(), datetime.min.time())  # naive UTC, a past midnight
    for market in ("KRW-JOBA", "KRW-JOBB"):
        fake_upbit.set_generated(GeneratedSeries(market, 1, end - timedelta(days=1), end))

    result = run_cronjob(job, database, fake_upbit, fake_kis, tmp_path, claim=None)

    assert result.returncode == 0, result.stderr[-2000:]
    assert query(database, "SELECT s.symbol, count(*), min(p.timestamp), max(p.timestamp) FROM pricedata p"
                           " JOIN symbol s ON s.id = p.symbol_id GROUP BY 1 ORDER BY 1") == [
        (symbol, 1440, (end - timedelta(days=1)).replace(tzinfo=timezone.utc),
         (end - timedelta(minutes=1)).replace(tzinfo=timezone.utc)) for symbol in ("JOBA/KRW", "JOBB/KRW")]
    assert "units by this worker, 2 done, finished by this worker" in result.stdout
    assert query(database, "SELECT count(*) FILTER (WHERE done_at IS NOT NULL), count(*)"
                           " FROM wombat_collect.backfill_unit") == [(2, 2)]
