"""Kubernetes manifests: valid API objects (official client models), wired to each other and to Settings."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from stitchboard.app.cli import build_parser
from stitchboard.settings import Settings

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
NAMESPACE = "stitchboard"
CONFIG = "/etc/stitchboard/settings.toml"
SECRETS = "/run/secrets/stitchboard"


def manifests() -> dict[str, dict[str, Any]]:
    """Kind → object, from every manifest file the kustomization lists."""
    objects = {}
    for name in kustomization()["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            assert document["kind"] not in objects, f"one {document['kind']} expected"
            objects[document["kind"]] = document
    return objects


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


def pod_spec(kind: str) -> dict[str, Any]:
    return manifests()[kind]["spec"]["template"]["spec"]


def settings_toml() -> str:
    return manifests()["ConfigMap"]["data"]["settings.toml"]


@pytest.fixture
def no_stitchboard_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [name for name in os.environ if name.startswith("STITCHBOARD_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert kustomization()["namespace"] == NAMESPACE
    assert set(manifests()) == {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "Job",
    }


@pytest.mark.parametrize(
    "kind",
    ["Namespace", "ServiceAccount", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "Job"],
)
def test_manifest_is_a_valid_api_object_without_unknown_fields(kind: str) -> None:
    """The client's models reject missing required fields; a round trip drops unknown (misspelt) ones."""
    document = manifests()[kind]
    client = ApiClient()
    model = client.deserialize(json.dumps(document), f"V1{kind}", None)
    assert client.sanitize_for_serialization(model) == document
    expected_api = {"StatefulSet": "apps/v1", "Job": "batch/v1", "PodDisruptionBudget": "policy/v1"}
    assert document["apiVersion"] == expected_api.get(kind, "v1")
    if kind != "Namespace":
        assert document["metadata"]["namespace"] == NAMESPACE


def test_the_round_trip_catches_a_misspelt_field() -> None:
    document = copy.deepcopy(manifests()["StatefulSet"])
    document["spec"]["template"]["spec"]["containers"][0]["comand"] = ["stitchboard"]
    client = ApiClient()
    model = client.deserialize(json.dumps(document), "V1StatefulSet", None)
    assert client.sanitize_for_serialization(model) != document


def test_statefulset_runs_one_flow_process_with_its_recovery_volume(
    no_stitchboard_env: pytest.MonkeyPatch,
) -> None:
    statefulset = manifests()["StatefulSet"]
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == manifests()["Service"]["metadata"]["name"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["stitchboard", "run", "--config", CONFIG, "--secrets-dir", SECRETS]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(
        container["resources"]["limits"]
    )

    settings = Settings(**tomllib.loads(settings_toml()))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": settings.metrics_port}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports, probe

    volumes = {volume["name"]: volume for volume in spec["template"]["spec"]["volumes"]}
    claims = {claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]}
    assert not set(volumes) & claims
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes) | claims
    assert mounts[str(settings.recovery_dir)] in claims
    assert mounts[str(PurePosixPath(CONFIG).parent)] == "settings"
    assert volumes["settings"]["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
    assert PurePosixPath(CONFIG).name in manifests()["ConfigMap"]["data"]


@pytest.mark.parametrize("kind", ["StatefulSet", "Job"])
def test_clickhouse_dsn_is_a_file_from_the_secret(
    kind: str, no_stitchboard_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Secret's ``dsn`` key is mounted where the command's ``--secrets-dir`` points, under the
    name Settings reads (``clickhouse__dsn``), readable by the pod's group only; no variable carries it.
    Laid out as the kubelet would, the pod's files load the DSN from the Secret and the rest from
    the ConfigMap."""
    spec = pod_spec(kind)
    (container,) = spec["containers"]
    assert "env" not in container and "envFrom" not in container
    args = build_parser().parse_args(container["command"][1:])
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    mount = mounts[str(args.secrets_dir)]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "stitchboard-clickhouse"
    assert secret["defaultMode"] == 0o440 and spec["securityContext"]["fsGroup"] == 10001
    (item,) = secret["items"]
    assert item["key"] == "dsn"

    secrets = tmp_path / "secrets"
    (secrets / item["path"]).parent.mkdir(parents=True, exist_ok=True)
    (secrets / item["path"]).write_text("https://writer:s3cret@clickhouse.example:8443\n")
    config = tmp_path / PurePosixPath(args.config).name
    config.write_text(settings_toml())
    settings = Settings.load(config, secrets_dir=secrets)
    assert settings.clickhouse.dsn == "https://writer:s3cret@clickhouse.example:8443"
    assert settings.clickhouse.database == "stitchboard"


def test_init_db_job_uses_the_same_settings() -> None:
    spec = pod_spec("Job")
    (container,) = spec["containers"]
    assert container["command"] == ["stitchboard", "init-db", "--config", CONFIG, "--secrets-dir", SECRETS]
    assert spec["restartPolicy"] in ("OnFailure", "Never")
    assert spec["volumes"] == pod_spec("StatefulSet")["volumes"][:2]


def test_service_and_disruption_budget_select_the_flow_pods() -> None:
    pod_labels = manifests()["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    service = manifests()["Service"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    (port,) = service["ports"]
    assert (port["port"], port["targetPort"]) == (9464, "metrics")
    budget = manifests()["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()


def test_configmap_settings_validate_and_leave_the_dsn_to_the_secret(
    no_stitchboard_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tomllib.loads(settings_toml())
    assert "dsn" not in data["clickhouse"], "credentials belong in the Secret, not in a ConfigMap"
    path = tmp_path / "settings.toml"
    path.write_text(settings_toml())
    settings = Settings.load(path)
    assert settings.clickhouse.database == "stitchboard"
    assert settings.tenant("acme").time_zone == "Europe/London"
    assert settings.tenant("acme").service_level_ms("priority") == 10_000
    assert str(settings.recovery_dir) == "/var/lib/stitchboard/recovery"
