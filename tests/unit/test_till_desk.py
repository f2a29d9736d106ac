"""The till desk: many sales per commit, with the answers and counts of one sale at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from eventsourcing.application import Application
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import (
    NotASellingLocationError,
    SaleIdReusedError,
    TerminalElsewhereError,
    UnknownSkuError,
)
from domain.values import LocationKind, Money
from services.application import RetailApp, SaleInput, SaleLineInput, SaleReceipt
from services.desks import Desk, Ticket
from services.tills import TillDesk
from tests.unit.conftest import Clock


def posted(sale: str, *lines: tuple[str, int], terminal: str = "T-1", at: str = "STORE-1"):  # type: ignore[no-untyped-def]
    return SaleInput(
        terminal, sale, at, "staff-7", None, [SaleLineInput(s, q) for s, q in lines], []
    )


def on_hand(app: RetailApp, sku: str, location: str = "STORE-1") -> int:
    item = app.get_stock_item(sku, location)
    return item.on_hand if item is not None else 0


@pytest.fixture
def desk(app: RetailApp) -> Iterator[TillDesk]:
    # Up to 50 ms of waiting for company while posts keep coming, so that concurrent posts
    # land in shared batches.
    tills = TillDesk(app, linger=0.05, gather=64)
    yield tills
    tills.stop()


def post_all(desk: TillDesk, sales: list[SaleInput]) -> list[SaleReceipt | BaseException]:
    def one(sale: SaleInput) -> SaleReceipt | BaseException:
        try:
            return desk.record(sale)
        except Exception as error:
            return error

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, sales))


def test_concurrent_sales_are_batched_and_every_unit_counted(
    app: RetailApp, desk: TillDesk
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 100, "DN-1")
    sales = [
        posted(f"S-{n}", ("TINA-30", 1), ("MILO-KEY", 2), terminal=f"T-{n % 4}") for n in range(40)
    ]
    receipts = post_all(desk, sales)
    assert all(isinstance(r, SaleReceipt) and not r.replayed for r in receipts)
    assert on_hand(app, "TINA-30") == 100 - 40
    assert on_hand(app, "MILO-KEY") == -80  # a sale is a fact: stock may go negative
    assert all("MILO-KEY" in r.negative_stock_skus for r in receipts if isinstance(r, SaleReceipt))
    assert 0 < desk.batches < 40
    head = app.recorder.max_notification_id() or 0
    assert all(0 < r.position <= head for r in receipts if isinstance(r, SaleReceipt))


def test_a_retry_is_answered_with_the_first_receipt_and_counted_once(
    app: RetailApp, desk: TillDesk
) -> None:
    app.receive_stock("TINA-30", "STORE-1", 10, "DN-1")
    first = desk.record(posted("S-1", ("TINA-30", 3)))
    # The retry, twice in one batch, and once more with other contents.
    again = post_all(desk, [posted("S-1", ("TINA-30", 3))] * 2 + [posted("S-1", ("TINA-30", 1))])
    assert [type(r) for r in again] == [SaleReceipt, SaleReceipt, SaleIdReusedError]
    for receipt in again[:2]:
        assert isinstance(receipt, SaleReceipt)
        assert receipt.replayed and receipt.sale_id == first.sale_id
    assert on_hand(app, "TINA-30") == 7


def test_a_refused_sale_leaves_the_rest_of_its_batch_alone(app: RetailApp, desk: TillDesk) -> None:
    app.open_shift("T-9", "SH-1", "POPUP-1", "staff-9", Money(0, "CNY"))
    results = post_all(
        desk,
        [
            posted("S-1", ("TINA-30", 1)),
            posted("S-2", ("NO-SUCH-SKU", 1)),
            posted("S-3", ("TINA-30", 1), at="WH-1"),
            posted("S-4", ("TINA-30", 1), terminal="T-9"),  # the terminal is at the pop-up
            posted("S-5", ("TINA-30", 1)),
        ],
    )
    assert [type(r) for r in results] == [
        SaleReceipt, UnknownSkuError, NotASellingLocationError, TerminalElsewhereError, SaleReceipt,
    ]  # fmt: skip
    assert on_hand(app, "TINA-30") == -2


@pytest.mark.parametrize("store", ["popo", "sqlite"])
def test_a_sale_carries_the_shift_open_on_its_terminal(store: str, tmp_path: Path) -> None:
    env = {"PERSISTENCE_MODULE": f"eventsourcing.{store}"}
    if store == "sqlite":  # its notifications name streams as text
        env["SQLITE_DBNAME"] = str(tmp_path / "events.sqlite")
    app = RetailApp(env=env)
    app.register_sku("TINA-30", "Tina", "", Money(100, "CNY"))
    app.register_location("STORE-1", LocationKind.PARTNER_STORE, "Store", "Beijing", "D")
    desk = TillDesk(app, linger=0)
    try:
        assert desk.record(posted("S-1", ("TINA-30", 1))).shift_id == ""
        app.open_shift("T-1", "SH-1", "STORE-1", "staff-7", Money(0, "CNY"))
        assert desk.record(posted("S-2", ("TINA-30", 1))).shift_id == "SH-1"
        app.close_shift("T-1", "SH-1", [], Money(0, "CNY"))
        assert desk.record(posted("S-3", ("TINA-30", 1))).shift_id == ""
    finally:
        desk.stop()
        app.close()


def test_the_desk_reads_each_terminal_event_once(app: RetailApp, desk: TillDesk) -> None:
    for n in range(3):
        desk.record(posted(f"S-{n}", ("TINA-30", 1)))
    # Caught up to where the store was before the last batch, terminal events or not (it
    # used to stay put without one, and every batch read everything saved since).
    assert desk._terminals._read_to >= (app.recorder.max_notification_id() or 0) - 2


def test_stock_moved_by_another_command_is_read_again(app: RetailApp, desk: TillDesk) -> None:
    desk.record(posted("S-1", ("TINA-30", 1)))
    app.receive_stock("TINA-30", "STORE-1", 50, "DN-1")  # this process, outside the desk
    desk.record(posted("S-2", ("TINA-30", 1)))
    assert on_hand(app, "TINA-30") == 48


def test_stock_moved_by_another_process_fails_the_batch_and_it_is_decided_again(
    app: RetailApp, desk: TillDesk
) -> None:
    desk.record(posted("S-1", ("TINA-30", 1)))
    # Another writer of the same store: saved without this process's knowledge.
    item = app.get_stock_item("TINA-30", "STORE-1")
    assert item is not None
    item.receive(50, "DN-elsewhere")
    Application.save(app, item)
    receipt = desk.record(posted("S-2", ("TINA-30", 1)))
    assert not receipt.replayed
    assert desk.batches == 1  # the second batch lost its commit and was decided sale by sale
    assert on_hand(app, "TINA-30") == 48
    desk.record(posted("S-3", ("TINA-30", 1)))
    assert desk.batches == 2 and on_hand(app, "TINA-30") == 47


@settings(max_examples=25, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from(("TINA-30", "MILO-KEY")), st.integers(1, 3)),
        min_size=1,
        max_size=30,
    )
)
def test_retries_in_any_order_never_double_count(
    plan: list[tuple[int, str, int]],
) -> None:
    """Posting a random mix of sales and their retries (the same client sale id and contents),
    concurrently, books each distinct sale exactly once."""
    app = RetailApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=Clock())
    app.register_sku("TINA-30", "Tina", "", Money(100, "CNY"))
    app.register_sku("MILO-KEY", "Milo", "", Money(100, "CNY"))
    app.register_location("STORE-1", LocationKind.PARTNER_STORE, "Store", "Beijing", "D")
    desk = TillDesk(app, linger=0.02, gather=64)
    try:
        contents = {n: (sku, qty) for n, sku, qty in plan}  # the first contents per id win ...
        contents = {n: next((s, q) for m, s, q in plan if m == n) for n in contents}
        sales = [posted(f"S-{n}", contents[n]) for n, _, _ in plan]  # ... and retries repeat them
        results = post_all(desk, sales)
        assert all(isinstance(r, SaleReceipt) for r in results)
        by_id: dict[str, list[SaleReceipt]] = {}
        for sale, result in zip(sales, results, strict=True):
            assert isinstance(result, SaleReceipt)
            by_id.setdefault(sale.client_sale_id, []).append(result)
        for receipts in by_id.values():
            assert sum(not r.replayed for r in receipts) == 1
        for sku in ("TINA-30", "MILO-KEY"):
            sold = sum(q for s, q in contents.values() if s == sku)
            assert on_hand(app, sku) == -sold
    finally:
        desk.stop()
        app.close()


def test_a_failing_batch_is_answered_and_the_desk_goes_on() -> None:
    class Flaky(Desk[Ticket]):
        def __init__(self) -> None:
            super().__init__("flaky desk", 10, 100, 0.0, 1)
            self.failed = False
            self.start()

        def _settle(self, batch: list[Ticket]) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("the store refused the commit")
            for ticket in batch:
                ticket.answer = "done"

    desk = Flaky()
    try:
        with pytest.raises(RuntimeError, match="refused"):
            desk.submit(Ticket(time.monotonic() + 5)).wait(5)
        assert desk.submit(Ticket(time.monotonic() + 5)).wait(5) == "done"
    finally:
        desk.stop()


def test_a_sale_whose_checks_fail_to_read_is_answered_alone(
    app: RetailApp, desk: TillDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    admit = app.admit_sale

    def flaky(posted: SaleInput):  # type: ignore[no-untyped-def]
        if posted.client_sale_id == "S-2":
            raise OSError("disk I/O error")
        return admit(posted)

    monkeypatch.setattr(app, "admit_sale", flaky)
    results = post_all(desk, [posted(f"S-{n}", ("TINA-30", 1)) for n in range(1, 4)])
    assert [type(r) for r in results] == [SaleReceipt, OSError, SaleReceipt]
    assert on_hand(app, "TINA-30") == -2
