"""Arrival order is restored exactly, whatever order a keyed step emits in."""

from __future__ import annotations

import pickle
import random

import pytest

from stitchboard.ordering import ArrivalOrder


def test_in_order_items_pass_straight_through() -> None:
    order: ArrivalOrder[str] = ArrivalOrder()
    assert order.push(0, "a") == ["a"]
    assert order.push(1, "b") == ["b"]
    assert order.held == 0


def test_early_items_wait_for_the_gap() -> None:
    order: ArrivalOrder[str] = ArrivalOrder()
    assert order.push(2, "c") == []
    assert order.push(1, "b") == []
    assert order.held == 2
    assert order.push(0, "a") == ["a", "b", "c"]
    assert order.held == 0


def test_any_shuffle_is_released_in_arrival_order() -> None:
    numbers = list(range(500))
    random.Random(3).shuffle(numbers)
    order: ArrivalOrder[int] = ArrivalOrder()
    released = [item for n in numbers for item in order.push(n, n * 10)]
    assert released == [n * 10 for n in range(500)]


def test_a_number_seen_twice_is_an_error() -> None:
    order: ArrivalOrder[str] = ArrivalOrder()
    order.push(0, "a")
    with pytest.raises(ValueError, match="already seen"):
        order.push(0, "again")
    order.push(5, "f")
    with pytest.raises(ValueError, match="already seen"):
        order.push(5, "f")


def test_snapshot_restores_held_items_and_position() -> None:
    order: ArrivalOrder[str] = ArrivalOrder()
    order.push(0, "a")
    order.push(2, "c")
    restored: ArrivalOrder[str] = ArrivalOrder(pickle.loads(pickle.dumps(order.snapshot())))
    assert restored.held == 1
    assert restored.push(1, "b") == ["b", "c"]
