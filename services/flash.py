"""The flash-sale hot path: one writer per hot SKU, many buyers per commit.

Every purchase of one SKU at one location goes through one desk. The desk's thread takes what
has queued up (up to `max_batch`), decides each purchase in arrival order against the stock
item in memory (confirmed, sold out, or limit reached), and saves every resulting event in one
transaction. Only then are the buyers answered. The stock item stays the one consistency
boundary, so confirmed units never exceed stock, however many callers there are; and the cost
of a commit is shared by the whole batch instead of paid per buyer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from eventsourcing.persistence import IntegrityError

from domain.catalog import Sku
from domain.errors import (
    AlreadyExistsError,
    ConflictError,
    DomainError,
    InvalidValueError,
    MembersOnlyError,
)
from domain.online import FLASH_BATCH, FLASH_BOUGHT, FlashBatch, FlashLine
from domain.stock import StockItem
from domain.values import CampaignKind, require_code, require_positive
from services.application import MAX_ATTEMPTS, RetailApp, _Items, _Quotas

log = logging.getLogger(__name__)

MAX_UNITS_PER_PURCHASE = 100
# A desk's stock item in memory is read again when older than this: another process may have
# moved it (a save of ours would find out, but a sold-out answer saves nothing).
STALE_AFTER = 0.5


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    SOLD_OUT = "sold_out"
    LIMIT_REACHED = "limit_reached"


class OverloadedError(Exception):
    """Too many purchases queued for one SKU: refused at once, a definite answer."""


@dataclass(frozen=True)
class FlashResult:
    order_id: str
    outcome: Outcome
    quantity: int
    remaining: int  # units still available to this path after the purchase was decided
    position: int
    replayed: bool = False


class _Purchase:
    """One buyer's purchase on its way through a desk, and its answer once decided.

    A buyer on a thread waits on a plain lock that the desk releases; a buyer on an event loop
    (the gRPC server) awaits a future that the desk resolves, one hand-over to the loop per
    batch. Both are cheaper than a concurrent.futures.Future per purchase, whose Condition
    notifications took a quarter of the API process's GIL time (py-spy)."""

    __slots__ = (
        "_done",
        "answer",
        "campaign",
        "deadline",
        "future",
        "loop",
        "member",
        "order_id",
        "quantity",
        "sku",
    )  # fmt: skip

    def __init__(
        self,
        order_id: str,
        member: str,
        quantity: int,
        campaign: str,
        deadline: float,
        sku: str,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.order_id, self.member, self.quantity = order_id, member, quantity
        self.campaign, self.deadline, self.sku = campaign, deadline, sku
        self.answer: FlashResult | BaseException | None = None
        self.loop = loop
        if loop is None:
            self._done = threading.Lock()
            self._done.acquire()
        else:
            self.future: asyncio.Future[FlashResult] = loop.create_future()

    def wait(self, timeout: float) -> FlashResult:
        """For a buyer on a thread: the answer, once the desk has woken us."""
        if not self._done.acquire(timeout=timeout):
            raise TimeoutError("the flash sale desk did not answer in time")
        answer = self.answer
        if isinstance(answer, BaseException):
            raise answer
        assert answer is not None
        return answer

    def resolve(self) -> None:
        """On the buyer's event loop: hands the answer to the awaiting buyer."""
        if self.future.done():  # the buyer gave up (its call was cancelled)
            return
        if isinstance(self.answer, BaseException):
            self.future.set_exception(self.answer)
        else:
            self.future.set_result(self.answer)  # type: ignore[arg-type]


def _resolve_all(purchases: list[_Purchase]) -> None:
    for purchase in purchases:
        purchase.resolve()


def _wake(purchases: list[_Purchase]) -> None:
    """Wakes the buyers of decided purchases: threads one by one, event loops once each."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Purchase]] = {}
    for purchase in purchases:
        if purchase.loop is None:
            purchase._done.release()
        else:
            by_loop.setdefault(purchase.loop, []).append(purchase)
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve_all, waiting)


# What a confirmed order id bought: (sku, member, quantity, campaign). A plain tuple of
# strings and ints, because the book keeps one per order for good: CPython's collector stops
# tracking such tuples, where 100,000 small objects would be walked by every full collection
# (GetStock's p99 at half load was 41 ms after a 100,000-unit flash sale).
_Order = tuple[str, str, int, str]


def _order_of(purchase: _Purchase) -> _Order:
    return (purchase.sku, purchase.member, purchase.quantity, purchase.campaign)


class OrderBook:
    """Every flash order id confirmed so far, whatever the SKU: a retry is answered from here
    and an order id reused for other contents is refused. Read once from the store, then kept
    up to date by the desks (and read again from the store after a lost race, when another
    process may have confirmed orders)."""

    def __init__(self, app: RetailApp) -> None:
        self.app = app
        self._orders: dict[str, _Order] = {}
        self._read_to = 0  # notification id up to which the store's flash events were read
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Reads the flash events saved since the last read (by anyone)."""
        with self._lock:
            while page := self.app.recorder.select_notifications(
                start=self._read_to, limit=5000, topics=[FLASH_BATCH, FLASH_BOUGHT],
                inclusive_of_start=False,
            ):  # fmt: skip
                for notification in page:
                    event: Any = self.app.mapper.to_domain_event(notification)
                    if notification.topic == FLASH_BATCH:
                        for order_id, member, quantity, campaign in event.orders:
                            self._orders[order_id] = (event.sku, member, quantity, campaign)
                    else:
                        self._orders[event.order_id] = (
                            event.sku, event.member, event.quantity, event.campaign
                        )  # fmt: skip
                self._read_to = page[-1].id

    def get(self, order_id: str) -> _Order | None:
        return self._orders.get(order_id)

    def claim(self, order_id: str, order: _Order) -> _Order | None:
        """Takes the order id for `order`; answers the order that had it already, if any."""
        with self._lock:
            known = self._orders.get(order_id)
            if known is None:
                self._orders[order_id] = order
            return known

    def release(self, order_ids: list[str]) -> None:
        """Gives back order ids whose purchases were not saved after all."""
        with self._lock:
            for order_id in order_ids:
                self._orders.pop(order_id, None)


class FlashDesk:
    """The single writer for one SKU at one location."""

    def __init__(
        self,
        app: RetailApp,
        book: OrderBook,
        sku: str,
        location: str,
        max_batch: int = 1000,
        max_queue: int = 50_000,
        linger: float = 0.001,
        gather: int = 32,
    ) -> None:
        self.app = app
        self.book = book
        self.linger = linger  # how long a batch waits for more purchases ...
        self.gather = gather  # ... while it has fewer than this many
        self.sku = sku
        self.location = location
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._queue: queue.SimpleQueue[_Purchase | None] = queue.SimpleQueue()
        self.batches = 0
        # The desk is the one writer of its stock item (hot-SKU commands are routed to one
        # owner): it keeps the item and the SKU in memory instead of reading them back for every
        # batch, and saves a batch as one FlashBatch event plus one stock movement (per
        # campaign). Measured in-process with 64 buyers: 921 buys/s with per-purchase reads;
        # over gRPC 1,480 confirmed/s with one aggregate and one movement per purchase.
        self._sku = app.get_sku(sku)
        self._item: StockItem | None = None
        self._position = 0  # where the store was when the item was read, or the last save
        self._read_at = 0.0  # when the item in memory was last known to equal the store's
        self._thread = threading.Thread(target=self._run, name=f"flash-{sku}", daemon=True)
        self._thread.start()

    def submit(self, purchase: _Purchase) -> _Purchase:
        if self._queue.qsize() >= self.max_queue:
            raise OverloadedError(f"{self.sku}: {self.max_queue} purchases already queued")
        self._queue.put(purchase)
        return purchase

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        # Purchases that arrived behind the stop are answered, not left waiting.
        while True:
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                return
            if left is not None:
                left.answer = OverloadedError("the flash sale desk is stopping")
                _wake([left])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # A commit costs about the same for 1 purchase as for 30: wait a moment for
            # company before deciding (measured, 30,000 units, 64 buyers in flight: batches of
            # 6-10 and 1,400-1,800 confirmed/s without; 2,000-2,500 with 1 ms).
            until = time.monotonic() + self.linger
            while len(batch) < self.max_batch:
                wait = until - time.monotonic() if len(batch) < self.gather else 0.0
                try:
                    more = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._decide_and_answer(batch)
                    self._queue.put(None)  # keep the stop marker for stop() to drain behind
                    return
                batch.append(more)
            self._decide_and_answer(batch)

    def _decide_and_answer(self, batch: list[_Purchase]) -> None:
        try:
            self._settle(batch)
        except BaseException as error:  # every buyer must hear something
            for purchase in batch:
                if purchase.answer is None:
                    purchase.answer = error
            raise
        finally:
            _wake(batch)

    def _settle(self, batch: list[_Purchase]) -> None:
        """Gives every purchase of the batch its answer (the caller wakes the buyers)."""
        now = time.monotonic()
        # A buyer who gave up before we got to them is not decided: no answer could reach
        # them. A retry with the same order id is decided then (or answered as a replay).
        live = [p for p in batch if p.deadline > now]
        for purchase in batch:
            if purchase.deadline <= now:
                purchase.answer = TimeoutError("the purchase was not decided in time")
        if not live:
            return
        for _ in range(MAX_ATTEMPTS):
            try:
                results = self._decide(live)
                break
            except IntegrityError:
                # Another writer touched the stock item: read it and the flash orders saved
                # meanwhile again, and decide the batch again from what the store says.
                self._item = None
                self.book.refresh()
                continue
            except Exception as error:  # every buyer must hear the failure
                self._item = None
                for purchase in live:
                    purchase.answer = error
                return
        else:
            contended = ConflictError("the flash sale is contended; retry the purchase")
            for purchase in live:
                purchase.answer = contended
            return
        self.batches += 1
        for purchase, result in zip(live, results, strict=True):
            purchase.answer = result

    def _decide(self, batch: list[_Purchase]) -> list[FlashResult | DomainError]:
        """Decides the batch in arrival order against the stock in memory and saves every
        confirmed purchase in one commit; order ids claimed on the way are given back if the
        commit fails."""
        app = self.app
        items = _Items(app, self.location)
        cached, now = self._item, time.monotonic()
        if cached is not None and (
            app.stock_versions.get((self.sku, self.location), cached.version) != cached.version
            or now - self._read_at > STALE_AFTER
        ):
            cached = None  # moved by another command here (a receipt), or maybe elsewhere
        if cached is None:
            self._position, self._read_at = app._head(), now
        else:
            items.items[self.sku] = cached
        item = items.get(self.sku)
        round_ = _Round(app, self.book, self._sku, item)
        try:
            outcomes = [round_.decide(purchase) for purchase in batch]
            if round_.lines:
                saved = FlashBatch(
                    sku=self.sku, location=self.location, unit_price=self._sku.list_price,
                    tax_rate_bp=self._sku.terms.tax_rate_bp, orders=FlashBatch.rows(round_.lines),
                )  # fmt: skip
                sold: dict[str, int] = {}
                for line in round_.lines:
                    sold[line.campaign] = sold.get(line.campaign, 0) + line.quantity
                for campaign, quantity in sold.items():
                    item.sell_online(quantity, saved.reference, campaign)
                pending = [a for q in round_.quotas.values() for a in q.pending()]
                self._position = app._save(*items.pending(), saved, *pending)
                self._read_at = now
        except BaseException:
            self._item = None  # it may hold this batch's unsaved decisions
            self.book.release(round_.claimed)
            raise
        self._item = item
        return [
            entry
            if isinstance(entry, DomainError)
            else FlashResult(*entry[:4], self._position, entry[4])
            for entry in outcomes
        ]


class _Round:
    """The decisions of one batch, in memory, before they are saved."""

    def __init__(self, app: RetailApp, book: OrderBook, sku: Sku, item: StockItem) -> None:
        self.app, self.book, self.sku, self.item = app, book, sku, item
        # What a purchase may still take, per campaign ("" is general availability). Selling
        # from one never changes another's (see StockItem.available_to), so the batch can be
        # booked as one movement per campaign afterwards.
        self.left: dict[str, int] = {}
        self.quotas: dict[str, _Quotas] = {}
        self.lines: list[FlashLine] = []
        self.claimed: list[str] = []

    def decide(self, purchase: _Purchase) -> tuple[str, Outcome, int, int, bool] | DomainError:
        order_id, quantity, campaign = purchase.order_id, purchase.quantity, purchase.campaign
        order = _order_of(purchase)
        available = self.left.get(campaign)
        if available is None:
            available = self.left[campaign] = self.item.available_to(campaign)
        earlier = self.book.get(order_id)
        if earlier is None:
            outcome = self._try(purchase, order, available)
            if isinstance(outcome, Outcome):
                return order_id, outcome, quantity, self.left[campaign], False
            earlier = outcome  # another desk confirmed this order id a moment ago
        # The order id was confirmed before: a retry is answered as it was.
        if earlier != order:
            return AlreadyExistsError(f"order {order_id!r} was placed with other contents")
        return order_id, Outcome.CONFIRMED, quantity, available, True

    def _try(self, purchase: _Purchase, order: _Order, available: int) -> Outcome | _Order:
        quota = self.quotas.get(purchase.member)
        if quota is None:
            quota = self.quotas[purchase.member] = _Quotas(self.app, purchase.member)
        if available < purchase.quantity:
            return Outcome.SOLD_OUT
        room = quota.room(self.sku)
        if room is not None and room < purchase.quantity:
            return Outcome.LIMIT_REACHED
        earlier = self.book.claim(purchase.order_id, order)
        if earlier is not None:
            return earlier
        self.claimed.append(purchase.order_id)
        quota.take(self.sku, purchase.quantity, purchase.order_id)
        self.lines.append(
            FlashLine(purchase.order_id, purchase.member, purchase.quantity, purchase.campaign)
        )
        self.left[purchase.campaign] = available - purchase.quantity
        return Outcome.CONFIRMED


def _give_up(future: asyncio.Future[FlashResult]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("the flash sale desk did not answer in time"))


class FlashSales:
    """The desks of every SKU on flash sale, created on first purchase."""

    def __init__(self, app: RetailApp, max_batch: int = 1000) -> None:
        self.app = app
        self.max_batch = max_batch
        self._desks: dict[tuple[str, str], FlashDesk] = {}
        self._book: OrderBook | None = None
        self._lock = threading.Lock()

    def buy(
        self,
        order_id: str,
        sku: str,
        location: str,
        member: str,
        quantity: int,
        campaign: str = "",
        timeout: float = 10.0,
    ) -> FlashResult:
        """Decides one purchase; raises only for bad input, broken rules or overload."""
        desk = self._admit(order_id, sku, location, member, quantity, campaign)
        purchase = _Purchase(order_id, member, quantity, campaign, time.monotonic() + timeout, sku)
        return desk.submit(purchase).wait(timeout + 5)

    async def buy_async(
        self,
        order_id: str,
        sku: str,
        location: str,
        member: str,
        quantity: int,
        campaign: str = "",
        timeout: float = 10.0,
    ) -> FlashResult:
        """`buy` for a caller on an event loop: the loop is never blocked on the desk, and on
        the store only when the purchase needs a read (a campaign, a SKU or desk not yet in
        memory: then the admission runs in the loop's executor)."""
        loop = asyncio.get_running_loop()
        args = (order_id, sku, location, member, quantity, campaign)
        if campaign or (sku, location) not in self._desks or not self.app.knows_sku(sku):
            desk = await loop.run_in_executor(None, self._admit, *args)
        else:
            desk = self._admit(*args)
        purchase = _Purchase(
            order_id, member, quantity, campaign, time.monotonic() + timeout, sku, loop
        )
        desk.submit(purchase)
        # The desk answers every purchase it takes (by its deadline at the latest); this
        # timer only covers a desk that stopped working.
        late = loop.call_later(timeout + 5, _give_up, purchase.future)
        try:
            return await purchase.future
        finally:
            late.cancel()

    def _admit(
        self, order_id: str, sku: str, location: str, member: str, quantity: int, campaign: str
    ) -> FlashDesk:
        """Checks the purchase against the rules that need no stock; answers its desk."""
        require_code("order_id", order_id)
        require_positive("quantity", quantity)
        if quantity > MAX_UNITS_PER_PURCHASE:
            raise InvalidValueError(
                "quantity", f"at most {MAX_UNITS_PER_PURCHASE} units per purchase"
            )
        if member:
            require_code("member_id", member)
        self.app._require_flagship(location)
        article = self.app.get_sku(sku)
        presale = False
        if campaign:
            drive = self.app._get_campaign(campaign)
            drive.check_admits(member, location, [sku])
            presale = drive.kind is CampaignKind.PRESALE
        article.check_sellable(self.app.clock(), member, presale=False)
        if article.terms.member_limit and not member:
            raise MembersOnlyError(f"{sku} (limited to {article.terms.member_limit} per member)")
        if presale:  # a pre-sale reserves before launch and confirms at launch: not a flash buy
            raise InvalidValueError("campaign", f"{campaign!r} is a pre-sale: reserve instead")
        return self._desk(sku, location)

    def _desk(self, sku: str, location: str) -> FlashDesk:
        key = (sku, location)
        desk = self._desks.get(key)
        if desk is None:
            with self._lock:
                desk = self._desks.get(key)
                if desk is None:
                    if self._book is None:
                        self._book = OrderBook(self.app)
                    desk = FlashDesk(self.app, self._book, sku, location, self.max_batch)
                    self._desks[key] = desk
        return desk

    def stop(self) -> None:
        with self._lock:
            desks, self._desks = list(self._desks.values()), {}
        for desk in desks:
            desk.stop()
