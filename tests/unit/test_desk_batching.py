"""How a desk gathers a batch: a lone command is not held for the whole linger, a crowd that
keeps arriving fills the batch, and a stop answers what queued behind it."""

from __future__ import annotations

import threading
import time

import pytest

from services.desks import Desk, OverloadedError, Ticket


class _Echo(Desk[Ticket]):
    """Answers every ticket with the size of the batch it was decided in."""

    def __init__(self, linger: float, gather: int, tick: float = 0.001) -> None:
        super().__init__("echo desk", 1000, 10_000, linger, gather, tick)
        self.sizes: list[int] = []
        self.start()

    def _settle(self, batch: list[Ticket]) -> None:
        self.sizes.append(len(batch))
        for ticket in batch:
            ticket.answer = len(batch)


def _ticket() -> Ticket:
    return Ticket(time.monotonic() + 30)


def test_a_tick_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tick must be positive"):
        _Echo(linger=0.01, gather=8, tick=0)


def test_a_lone_command_waits_about_one_tick_not_the_whole_linger() -> None:
    desk = _Echo(linger=2.0, gather=32, tick=0.005)
    try:
        started = time.monotonic()
        assert desk.submit(_ticket()).wait(10) == 1
        assert time.monotonic() - started < 1.0  # the linger is 2 s
    finally:
        desk.stop()


def test_a_crowd_that_keeps_arriving_fills_the_batch() -> None:
    desk = _Echo(linger=5.0, gather=30, tick=0.2)
    try:
        tickets = [desk.submit(_ticket())]
        for _ in range(29):  # one every 20 ms: about ten in each 200 ms tick
            time.sleep(0.02)
            tickets.append(desk.submit(_ticket()))
        assert all(t.wait(10) >= 1 for t in tickets)
        assert sum(desk.sizes) == 30
        # More than one tick's worth in one batch (a stall of the machine may end it early).
        assert max(desk.sizes) > 15
    finally:
        desk.stop()


def test_commands_queued_behind_a_stop_are_answered() -> None:
    gate = threading.Event()

    class _Slow(_Echo):
        def _settle(self, batch: list[Ticket]) -> None:
            gate.wait(10)
            super()._settle(batch)

    desk = _Slow(linger=0.0, gather=1)
    first = desk.submit(_ticket())
    time.sleep(0.05)  # the desk is deciding `first`
    stopper = threading.Thread(target=desk.stop)
    stopper.start()
    waited = time.monotonic() + 10
    while desk._queue.qsize() < 1 and time.monotonic() < waited:  # the stop marker is in
        time.sleep(0.01)
    late = desk.submit(_ticket())  # behind the stop marker
    gate.set()
    stopper.join(15)
    assert first.wait(10) == 1
    try:
        late.wait(10)
    except OverloadedError as error:
        assert "stopping" in str(error)
    else:
        raise AssertionError("a command behind the stop was decided")
