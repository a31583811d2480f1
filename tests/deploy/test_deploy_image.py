"""The production image: hadolint-clean, locked dependencies installed before the code, and no
embedded engine (the ``embedded`` extra), which a chdb:// DSN then asks for in one line."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from typing import Any

import pytest
from k8s_render import REPO, by_kind, render, tool
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stitchboard.sinks.clickhouse import connect

DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "requirements.lock"
BUILD_INPUT = REPO / "requirements-build.in"
LOCK_COMMAND = (
    "uv pip compile pyproject.toml requirements-build.in --universal --python-version 3.11 "
    "--generate-hashes --output-file requirements.lock"
)
# The image's platform, for the environment markers of the lock's transitive dependencies.
IMAGE_ENVIRONMENT = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def locked() -> dict[str, tuple[str, list[str]]]:
    """Canonical name → (pinned version, hashes) of every entry in requirements.lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", line)
        if pin:
            current = canonicalize_name(pin[1])
            entries[current] = (pin[2], [])
        elif current and (digest := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            entries[current][1].append(digest[1])
    return entries


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_locked_dependencies_are_installed_before_the_code_is_copied() -> None:
    steps = instructions()
    lock_install = next(
        i for i, (op, args) in enumerate(steps) if op == "RUN" and "-r requirements.lock" in args
    )
    assert {"--require-hashes", "--no-deps"} <= set(shlex.split(steps[lock_install][1]))
    copies_before = [args for op, args in steps[:lock_install] if op in ("COPY", "ADD")]
    assert copies_before == ["requirements.lock ./"], "only the lock may be copied before it is installed"
    code_copies = [args for op, args in steps[lock_install:] if op == "COPY"]
    assert any(args.startswith("stitchboard ") for args in code_copies)
    project_installs = [
        args for op, args in steps[lock_install + 1 :] if op == "RUN" and "pip install" in args
    ]
    assert project_installs and all("--no-deps" in args for args in project_installs), "nothing unlocked"
    assert not any("chdb" in args or "embedded" in args for _, args in steps)


def test_image_user_matches_the_pods() -> None:
    (user,) = [args for op, args in instructions() if op == "USER"]
    uid, _, gid = user.partition(":")
    for kind in ("StatefulSet", "Job"):
        context = by_kind(render())[kind]["spec"]["template"]["spec"]["securityContext"]
        assert (int(uid), int(gid)) == (context["runAsUser"], context["runAsGroup"]), kind
    exposed = [args for op, args in instructions() if op == "EXPOSE"]
    assert exposed == ["9464"]


def test_the_lock_pins_every_runtime_dependency_with_hashes_and_no_embedded_engine() -> None:
    lock = locked()
    assert LOCK.read_text().splitlines()[1].strip() == LOCK_COMMAND.join(["#    ", ""]).strip()
    project = pyproject()["project"]
    build_backend = [
        Requirement(line) for line in BUILD_INPUT.read_text().splitlines() if line and line[0] != "#"
    ]
    for requirement in [*map(Requirement, project["dependencies"]), *build_backend]:
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} missing from requirements.lock: regenerate it"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), (name, lock[name][0])
    assert all(hashes for _, hashes in lock.values()), "every pin carries its hashes"
    embedded = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["embedded"]}
    assert embedded == {"chdb"}
    test_only = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["test"]}
    assert not (embedded | test_only) & set(lock), "the image carries neither the engine nor test tools"
    assert "chdb" not in {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}


def test_the_lock_is_closed_under_the_dependencies_of_what_it_pins() -> None:
    """For every locked package installed here at the locked version, each dependency it declares
    for the image's platform is locked too (what ``pip check`` verifies in the image build)."""
    lock = locked()
    compared = 0
    for name, (version, _) in lock.items():
        try:
            installed = distribution(name)
        except PackageNotFoundError:
            continue
        if installed.version != version:
            continue
        compared += 1
        for line in installed.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": ""}):
                continue
            assert canonicalize_name(requirement.name) in lock, f"{name} needs {requirement.name}"
    assert compared >= len(lock) // 2, "most locked packages are checked against their metadata"


def test_a_chdb_dsn_without_the_embedded_extra_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chdb" else find_spec(name, *a)
    )
    with pytest.raises(RuntimeError) as raised:
        connect("chdb:///var/lib/stitchboard/chdb")
    message = str(raised.value)
    assert "\n" not in message
    assert "stitchboard[embedded]" in message and "STITCHBOARD_CLICKHOUSE__DSN" in message
