"""Customer identity of one tenant: union-find over typed, pseudonymous identifier keys.

Two conversations belong to one customer when they share any identifier key (``phone:…``,
``email:…``, ``account:…``, ``cookie:…``), transitively. A conversation that links two customers
already known merges them; the merge is reported so that whatever depended on the two separate
customers (engagements, first-contact resolution) can be restated.

The survivor of a merge is deterministic: an existing customer always absorbs identifiers never seen
before (so adding an identifier never renames a customer), and of two existing customers the one
whose root key sorts first survives. Roots are identifier keys; ``customer_key`` turns a root into
the opaque key published in tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b


@dataclass(frozen=True, slots=True)
class Merge:
    """Two known customers found to be one: ``absorbed`` now resolves to ``survivor``."""

    survivor: str  # root identifier key of the surviving customer
    absorbed: str  # root identifier key of the customer merged into it
    via: tuple[str, ...]  # the identifier keys of the linking contact


def customer_key(tenant: str, root: str) -> str:
    """The published, opaque customer key of a root identifier (stable per tenant and root)."""
    return "c-" + blake2b(f"{tenant}\x1f{root}".encode(), digest_size=10).hexdigest()


class IdentityGraph:
    """Identifier keys of one tenant grouped into customers; small, plain and picklable."""

    __slots__ = ("_members", "_parent")

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._members: dict[str, list[str]] = {}  # root -> every key of its component

    def __getstate__(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        return (self._parent, self._members)

    def __setstate__(self, state: tuple[dict[str, str], dict[str, list[str]]]) -> None:
        self._parent, self._members = state

    def __len__(self) -> int:
        """Number of identifier keys held."""
        return len(self._parent)

    @property
    def customers(self) -> int:
        return len(self._members)

    def find(self, key: str) -> str | None:
        """The root of ``key``'s customer, or None for a key never linked (or forgotten)."""
        parent = self._parent
        if key not in parent:
            return None
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def members(self, root: str) -> tuple[str, ...]:
        return tuple(self._members.get(root, ()))

    def link(self, keys: Iterable[str]) -> tuple[str | None, list[Merge]]:
        """Record that ``keys`` belong to one customer; returns its root and the merges this caused."""
        wanted = sorted(set(keys))
        if not wanted:
            return None, []
        roots = sorted({root for key in wanted if (root := self.find(key)) is not None})
        fresh = [key for key in wanted if key not in self._parent]
        survivor = roots[0] if roots else fresh[0]
        if not roots:
            self._parent[survivor] = survivor
            self._members[survivor] = [survivor]
        merges: list[Merge] = []
        for absorbed in roots[1:]:
            self._parent[absorbed] = survivor
            self._members[survivor].extend(self._members.pop(absorbed))
            merges.append(Merge(survivor, absorbed, tuple(wanted)))
        for key in fresh:
            if key != survivor:
                self._parent[key] = survivor
                self._members[survivor].append(key)
        return survivor, merges

    def forget(self, root: str) -> None:
        """Drop a customer and all its identifier keys (its journey window has closed)."""
        for key in self._members.pop(root, []):
            self._parent.pop(key, None)
