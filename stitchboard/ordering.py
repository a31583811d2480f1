"""Restore arrival order after a keyed step has shuffled it.

Stitching is keyed by conversation, and Bytewax hands a stateful step's items over grouped by key,
so one tenant's stitched events reach the interval book in an order unrelated to their arrival. The
watermark and lateness must follow arrival order (otherwise a replayed backlog makes on-time data
look hours late), so every event gets a per-tenant arrival number before stitching and the book
releases stitched results strictly in that order.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

ReorderState = tuple[int, dict[int, object]]


class ArrivalOrder(Generic[T]):
    """Releases items numbered 0, 1, 2, ... in order, holding back any that arrive early."""

    __slots__ = ("_held", "_next")

    def __init__(self, state: ReorderState | None = None) -> None:
        self._next, held = state if state is not None else (0, {})
        self._held: dict[int, T] = dict(held)  # type: ignore[arg-type]

    @property
    def held(self) -> int:
        """Items waiting for an earlier number; bounded by what one Bytewax epoch has in flight."""
        return len(self._held)

    def push(self, number: int, item: T) -> list[T]:
        """Accept item ``number``; return every item now releasable, in order."""
        if number < self._next or number in self._held:
            raise ValueError(f"arrival number {number} was already seen (next expected {self._next})")
        self._held[number] = item
        released: list[T] = []
        while self._next in self._held:
            released.append(self._held.pop(self._next))
            self._next += 1
        return released

    def snapshot(self) -> ReorderState:
        return (self._next, dict(self._held))
