"""The online flagship: reservations, member rules, campaigns, pre-sales and flash sales."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from domain.errors import (
    AlreadyExistsError,
    CampaignNotActiveError,
    InsufficientStockError,
    InvalidValueError,
    MemberLimitReachedError,
    MembersOnlyError,
    NotLaunchedError,
    ReservationExpiredError,
)
from domain.online import FLASH_BATCH, ReservedLine
from domain.values import CampaignKind, ReservationStatus
from services.application import RetailApp
from services.flash import FlashSales, Outcome
from tests.unit.conftest import Clock


def head(app: RetailApp) -> int:
    return app.recorder.max_notification_id() or 0


def levels(app: RetailApp, sku: str = "TINA-30") -> tuple[int, int, int]:
    level = app.stock_levels(sku, "ONLINE")
    return level.on_hand, level.reserved, level.available


def test_a_reservation_holds_stock_until_confirmed(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 10, "DN-1")
    held = app.reserve("O-1", "M-1", "ONLINE", [ReservedLine("TINA-30", 3)])
    assert held.status is ReservationStatus.HELD
    assert levels(app) == (10, 3, 7)
    confirmed = app.confirm_reservation("O-1")
    assert confirmed.status is ReservationStatus.CONFIRMED
    assert levels(app) == (7, 0, 7)
    assert app.confirm_reservation("O-1").replayed


def test_reserving_more_than_available_is_refused_and_writes_nothing(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 2, "DN-1")
    before = head(app)
    with pytest.raises(InsufficientStockError):
        app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 3)])
    assert head(app) == before


def test_cancelling_releases_the_units(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 5, "DN-1")
    app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 5)])
    assert app.cancel_reservation("O-1").status is ReservationStatus.RELEASED
    assert levels(app) == (5, 0, 5)


def test_a_hold_expires_even_when_nobody_calls_and_is_seen_expired_at_once(
    app: RetailApp, clock: Clock
) -> None:
    app.receive_stock("TINA-30", "ONLINE", 5, "DN-1")
    app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 2)], hold=timedelta(minutes=5))
    clock.advance(minutes=5)
    assert app.get_reservation("O-1").status is ReservationStatus.EXPIRED  # before the sweep
    with pytest.raises(ReservationExpiredError):
        app.confirm_reservation("O-1")
    assert app.expire_due() == 1
    assert levels(app) == (5, 0, 5)
    assert app.expire_due() == 0


def test_the_expiry_queue_survives_a_restart(clock: Clock, tmp_path: object) -> None:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": f"{tmp_path}/ev.db"}
    first = RetailApp(env=env, clock=clock)
    from domain.values import LocationKind, Money  # noqa: PLC0415

    first.register_sku("A-1", "A", "", Money(100, "CNY"))
    first.register_location("ONLINE", LocationKind.ONLINE_FLAGSHIP, "F", "C", "D")
    first.receive_stock("A-1", "ONLINE", 5, "DN")
    first.reserve("O-1", "", "ONLINE", [ReservedLine("A-1", 2)], hold=timedelta(minutes=1))
    first.reserve("O-2", "", "ONLINE", [ReservedLine("A-1", 1)], hold=timedelta(minutes=1))
    first.confirm_reservation("O-2")
    first.close()
    second = RetailApp(env=env, clock=clock)
    clock.advance(minutes=2)
    assert second.expire_due() == 1
    assert second.stock_levels("A-1", "ONLINE").reserved == 0
    second.close()


def test_a_retried_reservation_answers_the_first_and_a_different_one_is_refused(
    app: RetailApp,
) -> None:
    app.receive_stock("TINA-30", "ONLINE", 5, "DN-1")
    app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 2)])
    assert app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 2)]).replayed
    with pytest.raises(AlreadyExistsError):
        app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 3)])
    assert levels(app) == (5, 2, 3)


def test_reservations_are_taken_only_at_the_online_flagship(app: RetailApp) -> None:
    with pytest.raises(InvalidValueError):
        app.reserve("O-1", "", "STORE-1", [ReservedLine("TINA-30", 1)])


def test_member_only_skus_refuse_guests(app: RetailApp) -> None:
    app.receive_stock("MEMBER-PIN", "ONLINE", 5, "DN-1")
    with pytest.raises(MembersOnlyError):
        app.reserve("O-1", "", "ONLINE", [ReservedLine("MEMBER-PIN", 1)])
    app.reserve("O-2", "M-1", "ONLINE", [ReservedLine("MEMBER-PIN", 1)])


def test_a_member_cannot_exceed_the_per_member_limit_across_orders(app: RetailApp) -> None:
    app.receive_stock("HOURGLASS", "ONLINE", 10, "DN-1")
    app.reserve("O-1", "M-1", "ONLINE", [ReservedLine("HOURGLASS", 1)])
    app.reserve("O-2", "M-1", "ONLINE", [ReservedLine("HOURGLASS", 1)])
    with pytest.raises(MemberLimitReachedError):
        app.reserve("O-3", "M-1", "ONLINE", [ReservedLine("HOURGLASS", 1)])
    app.cancel_reservation("O-1")  # a cancelled order gives its units back to the quota
    app.reserve("O-3", "M-1", "ONLINE", [ReservedLine("HOURGLASS", 1)])
    app.reserve("O-4", "M-2", "ONLINE", [ReservedLine("HOURGLASS", 2)])


def test_a_sku_cannot_be_reserved_before_its_launch(app: RetailApp, clock: Clock) -> None:
    app.receive_stock("LAUNCH-FIG", "ONLINE", 10, "DN-1")
    with pytest.raises(NotLaunchedError):
        app.reserve("O-1", "", "ONLINE", [ReservedLine("LAUNCH-FIG", 1)])
    clock.advance(hours=2)
    app.reserve("O-1", "", "ONLINE", [ReservedLine("LAUNCH-FIG", 1)])


def test_a_presale_reserves_before_launch_and_confirms_from_launch(
    app: RetailApp, clock: Clock
) -> None:
    app.receive_stock("LAUNCH-FIG", "ONLINE", 10, "DN-1")
    app.start_campaign("PRE-1", CampaignKind.PRESALE, "ONLINE", {"LAUNCH-FIG": 4})
    app.reserve("O-1", "", "ONLINE", [ReservedLine("LAUNCH-FIG", 3)], campaign="PRE-1",
                hold=timedelta(hours=3))  # fmt: skip
    with pytest.raises(NotLaunchedError):
        app.confirm_reservation("O-1")
    clock.advance(hours=2)
    app.confirm_reservation("O-1")
    assert levels(app, "LAUNCH-FIG") == (7, 0, 6)  # one unit still set aside for the pre-sale


def test_a_campaign_sets_stock_aside_and_returns_the_rest_when_it_ends(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 10, "DN-1")
    app.start_campaign("LIVE-1", CampaignKind.LIVESTREAM, "ONLINE", {"TINA-30": 6})
    assert levels(app) == (10, 0, 4)
    with pytest.raises(InsufficientStockError):
        app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 5)])
    app.reserve("O-2", "", "ONLINE", [ReservedLine("TINA-30", 5)], campaign="LIVE-1")
    _, returned, _ = app.end_campaign("LIVE-1")
    assert returned == {"TINA-30": 1}
    assert levels(app) == (10, 5, 5)
    with pytest.raises(CampaignNotActiveError):
        app.reserve("O-3", "", "ONLINE", [ReservedLine("TINA-30", 1)], campaign="LIVE-1")


def test_a_member_drop_admits_members_only(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 10, "DN-1")
    app.start_campaign("DROP-1", CampaignKind.MEMBER_DROP, "ONLINE", {"TINA-30": 5})
    with pytest.raises(MembersOnlyError):
        app.reserve("O-1", "", "ONLINE", [ReservedLine("TINA-30", 1)], campaign="DROP-1")
    app.reserve("O-1", "M-1", "ONLINE", [ReservedLine("TINA-30", 1)], campaign="DROP-1")


def test_a_campaign_cannot_set_aside_more_than_is_available(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 3, "DN-1")
    before = head(app)
    with pytest.raises(InsufficientStockError):
        app.start_campaign("LIVE-1", CampaignKind.LIVESTREAM, "ONLINE", {"TINA-30": 4})
    assert head(app) == before


def test_a_flash_sale_confirms_exactly_the_stock_among_many_concurrent_buyers(
    app: RetailApp,
) -> None:
    app.receive_stock("TINA-30", "ONLINE", 50, "DN-1")
    flash = FlashSales(app, max_batch=16)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def buyer(n: int) -> None:
        for i in range(5):
            result = flash.buy(f"F-{n}-{i}", "TINA-30", "ONLINE", "", 1)
            with lock:
                outcomes.append(result.outcome)

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flash.stop()
    assert outcomes.count(Outcome.CONFIRMED) == 50
    assert outcomes.count(Outcome.SOLD_OUT) == 24 * 5 - 50
    assert levels(app) == (0, 0, 0)


def test_a_retried_flash_purchase_is_not_counted_twice(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 3, "DN-1")
    flash = FlashSales(app)
    try:
        first = flash.buy("F-1", "TINA-30", "ONLINE", "", 2)
        again = flash.buy("F-1", "TINA-30", "ONLINE", "", 2)
        other = flash.buy("F-2", "TINA-30", "ONLINE", "", 2)
    finally:
        flash.stop()
    assert (first.outcome, again.outcome, again.replayed) == (
        Outcome.CONFIRMED,
        Outcome.CONFIRMED,
        True,
    )
    assert other.outcome is Outcome.SOLD_OUT
    assert levels(app) == (1, 0, 1)


def test_a_flash_sale_answers_limit_reached_past_the_member_limit(app: RetailApp) -> None:
    app.receive_stock("HOURGLASS", "ONLINE", 10, "DN-1")
    flash = FlashSales(app)
    try:
        outcomes = [flash.buy(f"F-{i}", "HOURGLASS", "ONLINE", "M-1", 1).outcome for i in range(3)]
    finally:
        flash.stop()
    assert outcomes == [Outcome.CONFIRMED, Outcome.CONFIRMED, Outcome.LIMIT_REACHED]


def test_a_flash_sale_sells_again_after_a_restock(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 1, "DN-1")
    flash = FlashSales(app)
    try:
        assert flash.buy("F-1", "TINA-30", "ONLINE", "", 1).outcome is Outcome.CONFIRMED
        assert flash.buy("F-2", "TINA-30", "ONLINE", "", 1).outcome is Outcome.SOLD_OUT
        app.receive_stock("TINA-30", "ONLINE", 2, "DN-2")  # the desk holds the item in memory
        assert flash.buy("F-3", "TINA-30", "ONLINE", "", 2).outcome is Outcome.CONFIRMED
    finally:
        flash.stop()
    assert levels(app) == (0, 0, 0)


def test_a_batch_of_flash_purchases_is_one_event_and_one_movement(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 40, "DN-1")
    before = head(app)
    flash = FlashSales(app)
    go = threading.Barrier(8)

    def buyer(n: int) -> None:
        go.wait()
        flash.buy(f"F-{n}", "TINA-30", "ONLINE", "", 1)

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    decided_in = flash_batches(flash)
    flash.stop()
    written = app.recorder.select_notifications(start=before, limit=100, inclusive_of_start=False)
    batches = [n for n in written if n.topic == FLASH_BATCH]
    moves = [app.mapper.to_domain_event(n) for n in written if n.topic.endswith("StockItem.Moved")]
    assert len(batches) == len(moves) == decided_in
    orders = [row[0] for n in batches for row in app.mapper.to_domain_event(n).orders]  # type: ignore[attr-defined]
    assert sorted(orders) == sorted(f"F-{n}" for n in range(8))
    assert sum(move.quantity for move in moves) == 8  # type: ignore[attr-defined]
    assert levels(app) == (32, 0, 32)


def test_a_restarted_flash_desk_answers_a_retry_from_the_saved_batches(app: RetailApp) -> None:
    app.receive_stock("TINA-30", "ONLINE", 2, "DN-1")
    first = FlashSales(app)
    try:
        bought = first.buy("F-1", "TINA-30", "ONLINE", "M-1", 2)
    finally:
        first.stop()
    again = FlashSales(app)  # as after a restart: nothing in memory
    try:
        retry = again.buy("F-1", "TINA-30", "ONLINE", "M-1", 2)
        with pytest.raises(AlreadyExistsError):
            again.buy("F-1", "MILO-KEY", "ONLINE", "M-1", 1)
    finally:
        again.stop()
    assert (retry.outcome, retry.replayed) == (Outcome.CONFIRMED, True)
    assert retry.position >= bought.position
    assert levels(app) == (0, 0, 0)


@pytest.mark.parametrize("stale", [True, False], ids=["stale item", "new desk"])
def test_a_retry_sent_to_another_api_process_is_answered_not_confirmed_again(
    clock: Clock, tmp_path: object, monkeypatch: pytest.MonkeyPatch, stale: bool
) -> None:
    """Two API processes on one event store; the retry of an order the first confirmed
    reaches the second, whose order book was read before: once after its desk's stock item
    went stale, once at a desk it opens for the SKU (its book opened by another SKU's desk)."""
    from domain.values import LocationKind, Money  # noqa: PLC0415

    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": f"{tmp_path}/ev.db"}
    first = RetailApp(env=env, clock=clock)
    for sku in ("A-1", "B-1"):
        first.register_sku(sku, sku, "", Money(100, "CNY"))
    first.register_location("ONLINE", LocationKind.ONLINE_FLAGSHIP, "F", "C", "D")
    first.receive_stock("A-1", "ONLINE", 10, "DN-1")
    first.receive_stock("B-1", "ONLINE", 10, "DN-2")
    second = RetailApp(env=env, clock=clock)
    here, there = FlashSales(first), FlashSales(second)
    try:
        there.buy("W-1", "A-1" if stale else "B-1", "ONLINE", "", 1)  # its book is read now
        bought = here.buy("ORDER-42", "A-1", "ONLINE", "", 3)
        if stale:
            monkeypatch.setattr("services.flash.STALE_AFTER", 0.0)
        retry = there.buy("ORDER-42", "A-1", "ONLINE", "", 3)
    finally:
        here.stop()
        there.stop()
    assert (bought.outcome, bought.replayed) == (Outcome.CONFIRMED, False)
    assert (retry.outcome, retry.replayed) == (Outcome.CONFIRMED, True)
    assert first.stock_levels("A-1", "ONLINE").on_hand == (6 if stale else 7)
    first.close()
    second.close()


def flash_batches(flash: FlashSales) -> int:
    return sum(desk.batches for desk in flash._desks.values())
