"""The Kubernetes manifests as the cluster receives them: ``kubectl kustomize`` of the base, alone or
with the optional components, through a throw-away overlay (kustomize takes no absolute paths).

The deployment checkers (kubectl, checkov, promtool, hadolint) are command-line tools. Outside CI a
missing one skips its tests; in CI (``CI`` set, as .ci/run runs) it fails them, so a check can
never silently stop running there.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
COMPONENTS = tuple(sorted(path.name for path in (KUBERNETES / "components").iterdir() if path.is_dir()))
# Every render the tests check: the base, each component on its own, and all of them together.
RENDERS: tuple[tuple[str, ...], ...] = ((), *((name,) for name in COMPONENTS), COMPONENTS)


def render_id(components: tuple[str, ...]) -> str:
    return "+".join(components) or "base"


def tool(name: str) -> str:
    """Path of a command-line checker: next to this Python (a venv's console scripts) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (.ci/run and ./dev install it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@functools.cache
def _render_text(components: tuple[str, ...]) -> str:
    with tempfile.TemporaryDirectory() as overlay:
        base = os.path.relpath(KUBERNETES, overlay)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [base],
            "components": [f"{base}/components/{name}" for name in components],
        }
        (Path(overlay) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        result = subprocess.run(
            [tool("kubectl"), "kustomize", overlay], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(components: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The objects of the base with ``components``, as ``kubectl apply -k`` would send them."""
    return [document for document in yaml.safe_load_all(_render_text(components)) if document]


def write_render(components: tuple[str, ...], directory: Path) -> Path:
    path = directory / f"{render_id(components)}.yaml"
    path.write_text(_render_text(components))
    return path


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Kind → object, for renders with one object of each kind."""
    kinds = [document["kind"] for document in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {document["kind"]: document for document in objects}
