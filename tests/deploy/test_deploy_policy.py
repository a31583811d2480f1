"""Rendered manifests: valid against the official schemas (strict), within the "restricted" Pod
Security Standard, and free of policy findings (checkov) other than the explained ones below."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from k8s_render import COMPONENTS, RENDERS, by_kind, render, render_id, tool, write_render

# The oldest Kubernetes minor the manifests support (every field they use is GA there, and it is
# still in the large providers' extended support) and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Custom resources have no schema in kubernetes-validate: they are checked against the Prometheus
# Operator's models (generated from its CRDs) instead.
CUSTOM_KINDS = {"monitoring.coreos.com/v1": ("ServiceMonitor", "PrometheusRule")}

# checkov findings accepted on purpose: (check id, kind of the flagged resource) → why. Anything
# else fails the test, and an entry no render needs any more fails too (so the list stays true).
# None today: CKV_K8S_35 (a Secret in the environment) went when the DSN became a mounted file.
CHECKOV_ALLOWED: dict[tuple[str, str], str] = {}
# Accepted only in renders without the network-policy component: the NetworkPolicy is optional
# because it needs an enforcing CNI and site-specific peers (namespaces or CIDRs of Kafka and
# ClickHouse); with the component the check passes, which the all-components render proves.
CHECKOV_ALLOWED_WITHOUT_NETWORK_POLICY: dict[tuple[str, str], str] = {
    ("CKV2_K8S_6", "Pod"): "no NetworkPolicy in the base; the network-policy component adds it",
}

WRITABLE_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        document["kind"]: document["spec"]["template"]
        for document in objects
        if document["kind"] in ("StatefulSet", "Job", "Deployment", "DaemonSet")
    }


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Where a pod spec breaks the "restricted" Pod Security Standard (as the admission controller
    checks it, kubernetes.io/docs/concepts/security/pod-security-standards), plus this project's
    own rules: read-only root filesystem, no service-account token, requests and limits."""
    problems = []
    context = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= WRITABLE_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: {sorted(kinds)}")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("service-account token mounted")
    for container in pod.get("initContainers", []) + pod["containers"]:
        name = container["name"]
        own = container.get("securityContext", {})
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        if "ALL" not in own.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: capabilities not dropped")
        if set(own.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities added")
        if not own.get("runAsNonRoot", context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if own.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = own.get("seccompProfile", context.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: writable root filesystem")
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part, {})):
                problems.append(f"{name}: {part}")
    return problems


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("components", RENDERS, ids=render_id)
def test_every_rendered_object_validates_strictly(components: tuple[str, ...], version: str) -> None:
    """kubernetes-validate --strict (its Python entry point): unknown fields are errors."""
    checked = []
    for document in render(components):
        if document["kind"] in CUSTOM_KINDS.get(document["apiVersion"], ()):
            continue
        kubernetes_validate.validate(document, version, strict=True)
        checked.append(document["kind"])
    assert {"StatefulSet", "Job", "Service", "ServiceAccount", "Namespace"} <= set(checked)
    if "network-policy" in components:
        assert "NetworkPolicy" in checked


def test_strict_validation_rejects_a_misspelt_field() -> None:
    statefulset = copy.deepcopy(by_kind(render())["StatefulSet"])
    statefulset["spec"]["template"]["spec"]["securityContext"]["seccompProfil"] = {"type": "RuntimeDefault"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_custom_resources_match_the_prometheus_operator_models(kind: str) -> None:
    """The operator's models reject wrong types and missing fields; a round trip drops unknown ones."""
    document = by_kind(render(COMPONENTS))[kind]
    model = getattr(prometheus_operator, kind).model_validate(document)
    assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == document
    misspelt = copy.deepcopy(document)
    misspelt["spec"]["selectr" if kind == "ServiceMonitor" else "groupz"] = {}
    again = getattr(prometheus_operator, kind).model_validate(misspelt)
    assert again.model_dump(by_alias=True, exclude_none=True, mode="json") != misspelt


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    objects = render()
    templates = pod_templates(objects)
    assert set(templates) == {"StatefulSet", "Job"}
    for kind, template in templates.items():
        assert restricted_violations(template["spec"]) == [], kind
    namespace = by_kind(objects)["Namespace"]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_restricted_check_catches_what_the_admission_controller_would_reject() -> None:
    pod = copy.deepcopy(pod_templates(render())["StatefulSet"]["spec"])
    del pod["securityContext"]["seccompProfile"]
    del pod["containers"][0]["securityContext"]["seccompProfile"]
    pod["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    pod["automountServiceAccountToken"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert restricted_violations(pod) == [
        "volume host: ['hostPath']",
        "service-account token mounted",
        "flow: capabilities not dropped",
        "flow: capabilities added",
        "flow: seccompProfile",
    ]


def test_pods_use_the_dedicated_service_account_and_a_digest_pinned_image() -> None:
    objects = render()
    account = by_kind(objects)["ServiceAccount"]
    assert account["automountServiceAccountToken"] is False
    for kind, template in pod_templates(objects).items():
        spec = template["spec"]
        assert spec["serviceAccountName"] == account["metadata"]["name"], kind
        for container in spec["containers"]:
            assert re.fullmatch(r"[^@\s]+:[\w.-]+@sha256:[0-9a-f]{64}", container["image"]), container[
                "image"
            ]


def test_every_path_the_flow_writes_is_a_volume() -> None:
    """With a read-only root filesystem the flow can write only to mounted volumes: its recovery
    store and /tmp (Python's temporary files)."""
    statefulset = by_kind(render())["StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if not mount.get("readOnly")}
    assert writable == {"/var/lib/stitchboard/recovery", "/tmp"}


def _checkov_failures(manifest: Path) -> tuple[list[tuple[str, str, str]], int]:
    """(check id, resource kind, resource) of every failed check, and the number of passed checks."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "HOME": str(manifest.parent)}  # offline, no state
    command = [tool("checkov"), "--file", str(manifest), "--framework", "kubernetes", "--skip-download"]
    result = subprocess.run(
        [*command, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=manifest.parent,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1: there are failed checks
    results = json.loads(result.stdout)["results"]
    failures = [
        (check["check_id"], check["resource"].split(".")[0], check["resource"])
        for check in results["failed_checks"]
    ]
    return failures, len(results["passed_checks"])


@pytest.mark.parametrize("components", [(), COMPONENTS], ids=render_id)
def test_checkov_finds_nothing_unexplained(components: tuple[str, ...], tmp_path: Path) -> None:
    """checkov's Kubernetes policies on the base, and on the base with every component. Every
    allow-list entry that applies to a render must still be needed there (no stale reasons)."""
    failures, passed = _checkov_failures(write_render(components, tmp_path))
    assert passed > 50, "checkov ran no checks"
    allowed = dict(CHECKOV_ALLOWED)
    if "network-policy" not in components:
        allowed |= CHECKOV_ALLOWED_WITHOUT_NETWORK_POLICY
    assert [failure for failure in failures if failure[:2] not in allowed] == []
    assert set(allowed) == {failure[:2] for failure in failures}, "stale allow-list entries"
