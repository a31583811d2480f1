"""Versioned recovery state: every stateful step's snapshot says which layout it was written in.

A release that changes what a step keeps in its snapshot would otherwise unpickle an older store
into the new code and fail somewhere later, or silently compute wrong figures. So each step
declares a ``StateSchema``: its name, the version of the layout it writes now, and a migration from
each older version to the next. A snapshot is the plain tuple ``(MARK, step, version, payload)``
(plain data, so the envelope itself never depends on a module path). On restore the current version
is taken as is, an older one is migrated step by step, and a snapshot written before versioning
(no envelope) is version 0 when ``unversioned`` recognises its layout. Anything else stops the
process with one message naming the step, the versions and the fix (``StateVersionError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

MARK = "stitchboard-state"
UPGRADES = "docs/operations.md, section Upgrades"
T = TypeVar("T")
Versioned = tuple[str, str, int, Any]


class StateVersionError(Exception):
    """A restored snapshot this release cannot read; ``str()`` is the whole one-line message."""

    def __init__(self, step: str, found: str, supported: tuple[int, ...]) -> None:
        self.step = step
        self.found = found
        self.supported = supported
        versions = ", ".join(str(v) for v in supported)
        super().__init__(
            f"the recovery state of step {step!r} is {found}; this release restores versions {versions} "
            f"of it: start on an empty recovery volume (recovery_dir; see {UPGRADES}) or run the release "
            "that wrote it"
        )


def _no_migrations() -> dict[int, Callable[[Any], Any]]:
    return {}


@dataclass(frozen=True)
class StateSchema(Generic[T]):
    """The layouts of one step's snapshot.

    ``migrations[n]`` turns a version ``n`` payload into version ``n + 1``; ``migrations[0]`` takes
    the layout written before snapshots were versioned, which ``unversioned`` recognises.
    """

    step: str
    version: int
    migrations: Mapping[int, Callable[[Any], Any]] = field(default_factory=_no_migrations)
    unversioned: Callable[[object], bool] | None = None

    @cached_property
    def supported(self) -> tuple[int, ...]:
        """The versions restored: the current one and each older one with a chain of migrations."""
        versions = [self.version]
        for older in range(self.version - 1, -1, -1):
            if older not in self.migrations:
                break
            versions.append(older)
        return tuple(sorted(versions))

    def wrap(self, payload: T) -> Versioned:
        return (MARK, self.step, self.version, payload)

    def unwrap(self, snapshot: object) -> T:
        """The payload of ``snapshot`` in the current layout, migrated if it is older."""
        if isinstance(snapshot, tuple) and len(snapshot) == 4 and snapshot[0] == MARK:
            _, step, version, payload = snapshot
            if step == self.step and version == self.version:
                current: T = payload  # the fast path: stateful_map unwraps its state at every item
                return current
            if step != self.step:
                raise StateVersionError(self.step, f"the state of step {step!r}", self.supported)
            if not isinstance(version, int) or version not in self.supported:
                raise StateVersionError(self.step, f"version {version!r}", self.supported)
        else:
            if self.unversioned is None or 0 not in self.supported or not self.unversioned(snapshot):
                found = f"unversioned (written before versioning) in a layout not known: {type(snapshot).__name__}"
                raise StateVersionError(self.step, found, self.supported)
            version, payload = 0, snapshot
        for older in range(version, self.version):
            payload = self.migrations[older](payload)
        result: T = payload
        return result

    def restore(self, snapshot: object | None) -> T | None:
        """``unwrap``, or ``None`` when there is nothing to resume."""
        return None if snapshot is None else self.unwrap(snapshot)


def unchanged(payload: T) -> T:
    """The migration of a layout the next version keeps as is (version 0 → 1: only the envelope is new)."""
    return payload


def is_tuple_of(snapshot: object, *types: type) -> bool:
    """Whether ``snapshot`` is a tuple of exactly these item types (an unversioned layout's shape)."""
    return (
        isinstance(snapshot, tuple)
        and len(snapshot) == len(types)
        and all(isinstance(item, kind) for item, kind in zip(snapshot, types, strict=True))
    )
