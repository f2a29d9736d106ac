"""The broker stops while the shop goes on selling: the write side does not need Kafka, and
once the broker is back the relay and the projector carry on by themselves, so the SQL views
end equal to the event store, unit for unit, each sale once and no gap."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fault.harness import (
    Deployment,
    RestartableBroker,
    RoleProcess,
    Shop,
    SteadyWriter,
    assert_views_equal,
    wait_for,
    wait_until_equal,
)

pytestmark = pytest.mark.kafka

PACE = 100  # operations a second, about 150 events
DOWN = 1.0  # seconds the shop writes between the broker's stop and its start (which takes 5-10 s)
AFTER = 1.0  # seconds it writes after the broker is back, while the roles reconnect
# Seconds each role gets to work again once the broker is back. kafka-python's reconnect
# backoff doubles up to 30 s (+-20 %) while the broker is away, so after an outage of ~10 s
# a role may wait 10 to 15 s, after a longer one up to 36 s, before it tries again.
RECOVERY = 45.0
FAILURES = ("Traceback", "ERROR", "WARNING")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    """Not the session's broker: this one is stopped, and other tests share that."""
    broker = RestartableBroker(tmp_path / "kafka")
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def deployment(tmp_path: Path, broker: RestartableBroker, namespace: str) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path / "shop", broker.bootstrap, namespace)
    try:
        yield deployment
    finally:
        deployment.close()  # before the broker stops (fixtures end in reverse order)


def resumed(
    deployment: Deployment, broker: RestartableBroker, what: str, progress: Callable[[], bool]
) -> float:
    """Waits until `progress` holds; answers when, in seconds since the broker was back, or
    fails with the logs."""
    try:
        wait_for(progress, RECOVERY, what)
    except TimeoutError as error:
        raise AssertionError(
            f"{error} after the broker came back\n{deployment.logs()}\n"
            f"--- broker ---\n{broker.log_tail()}"
        ) from None
    return time.monotonic() - broker.started_at


@pytest.mark.timeout(180)
def test_the_views_equal_the_event_store_after_the_broker_stops_and_starts_again(
    broker: RestartableBroker, deployment: Deployment
) -> None:
    shop = Shop(deployment.app, seed=404)
    shop.run(300)
    relay, projector = deployment.start("relay"), deployment.start("projector")
    relay.wait_up()
    projector.wait_up()
    live: list[RoleProcess] = [relay, projector]

    with SteadyWriter(shop, PACE) as writer:
        # Both roles are at work on a running stream when the broker goes.
        wait_for(lambda: deployment.relay_position() > 0, 30, "the relay's first batch")
        wait_for(lambda: sum(deployment.stored_offsets().values()) > 0, 30, "a projected batch")
        writer.write_for(0.5)
        broker.stop()
        down_at = deployment.head()
        assert writer.write_for(DOWN) > 0  # the write side goes on without Kafka
        for process in live:
            assert process.alive(), f"{process.role} died with the broker\n{process.output()}"
        # Nothing is recorded as relayed that the broker did not acknowledge.
        assert deployment.relay_position() <= down_at < deployment.head()
        consumed = sum(deployment.stored_offsets().values())  # what it fetched is applied
        broker.start()
        writer.write_for(AFTER)  # and while the roles reconnect
    relayed = resumed(
        deployment, broker, "the relay to publish what was written while the broker was down",
        lambda: deployment.relay_position() > down_at,
    )  # fmt: skip
    projected = resumed(
        deployment, broker, "the projector to apply records again",
        lambda: sum(deployment.stored_offsets().values()) > consumed,
    )  # fmt: skip
    comparison = wait_until_equal(deployment, shop, live, timeout=RECOVERY)
    print(
        f"after the broker was back: the relay published again within {relayed:.1f} s, the "
        f"projector applied again within {projected:.1f} s, the views were equal within "
        f"{time.monotonic() - broker.started_at:.1f} s"
    )
    assert_views_equal(deployment, comparison, shop)
    for process in live:
        print(f"{process.role} logged:", *process.lines(*FAILURES)[-8:], sep="\n  ")
