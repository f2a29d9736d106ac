"""Till sales through one writer: many sales per commit.

Every RecordSale of the gRPC API goes through the till desk (services.desks). Its thread takes
the sales that have queued up, checks each one as `RetailApp.record_sale` does, books them
against the stores' stock items it keeps in memory, and saves the whole batch in one
transaction; only then are the tills answered. Sales never race each other for a stock item,
and a store read or a commit is shared by the batch instead of paid per sale.

Measured before (cProfile and py-spy, one process, 1,000 terminals in 50 stores): a sale cost
about 2 ms of one core, a third of it in store reads (whether the sale id was used, the
terminal, each stock item: a query and a copy each), a tenth in the commit, and with 32
threads a lost race for a stock item meant doing it all again.

What the desk keeps in memory is only ever a shortcut: a stock item is used as kept while
this process saved no other version of it; a sale always writes every stock item it touches,
so a version saved elsewhere meanwhile (another process) fails the commit, as does a sale id
posted before (a till's retry). Then the batch is decided again sale by sale the ordinary way
(`RetailApp.record_posted_sale`: a retry answers the first receipt), from what the store says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from uuid import UUID

from domain.errors import DomainError
from domain.sales import PosSale
from domain.shifts import (
    TERMINAL_REGISTERED,
    TERMINAL_SHIFT_CLOSED,
    TERMINAL_SHIFT_OPENED,
    Terminal,
)
from domain.stock import StockItem
from services.application import (
    AdmittedSale,
    RetailApp,
    SaleInput,
    SaleReceipt,
    _Items,
)
from services.desks import Desk, Ticket, answer_of

log = logging.getLogger(__name__)

# The desk keeps at most this many stock items in memory (the least recently saved go first);
# the repository's cache holds as many aggregates.
MAX_KEPT = 20_000
PAGE = 1000
TERMINAL_TOPICS = [TERMINAL_REGISTERED, TERMINAL_SHIFT_OPENED, TERMINAL_SHIFT_CLOSED]


class _Sale(Ticket):
    __slots__ = ("posted",)

    def __init__(
        self, posted: SaleInput, deadline: float, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(deadline, loop)
        self.posted = posted


def _trim(kept: dict[Any, Any]) -> None:
    """Drops the oldest entries beyond MAX_KEPT (dicts keep insertion order)."""
    while len(kept) > MAX_KEPT:
        del kept[next(iter(kept))]


class _KeptItems(_Items):
    """A location's stock items for one batch, taken from the desk's copies while current."""

    def __init__(
        self, app: RetailApp, location: str, kept: dict[tuple[str, str], StockItem]
    ) -> None:
        super().__init__(app, location)
        self.kept = kept

    def get(self, sku: str) -> StockItem:
        if sku not in self.items:
            key = (sku, self.location)
            item = self.kept.get(key)
            if item is not None and self.app.stock_versions.get(key) == item.version:
                self.items[sku] = item
        return super().get(sku)


class _Terminals:
    """The terminals the desk has read (or found unregistered), kept until the store shows an
    event of theirs: one query per batch for every terminal event saved since (by anyone),
    instead of one read per sale."""

    def __init__(self, app: RetailApp) -> None:
        self.app = app
        self._kept: dict[str, Terminal | None] = {}  # by stream id
        self._read_to = app._head()  # before any terminal is read: nothing later is missed

    def catch_up(self) -> None:
        # Up to the head as read first: an event saved after it is read next time. Without
        # the bound the position only moved on a terminal event, and every batch scanned all
        # the events saved since the last one (RecordSale p99 246 ms at half load).
        head = self.app._head()
        if head <= self._read_to:
            return
        while page := self.app.recorder.select_notifications(
            start=self._read_to, limit=PAGE, stop=head, topics=TERMINAL_TOPICS,
            inclusive_of_start=False,
        ):  # fmt: skip
            for notification in page:
                self._kept.pop(str(notification.originator_id), None)
            self._read_to = page[-1].id
            if len(page) < PAGE:
                break
        self._read_to = head

    def get(self, terminal: str) -> Terminal | None:
        key = str(Terminal.create_id(terminal))  # as notifications name it (SQLite: text)
        try:
            return self._kept[key]
        except KeyError:
            pass
        till = self._kept[key] = self.app.find_terminal(terminal)
        _trim(self._kept)
        return till


class TillDesk(Desk[_Sale]):
    """The single writer of till sales."""

    def __init__(
        self,
        app: RetailApp,
        max_batch: int = 256,
        max_queue: int = 20_000,
        linger: float = 0.001,
        gather: int = 16,
    ) -> None:
        super().__init__("till desk", max_batch, max_queue, linger, gather)
        self.app = app
        # The stock items as this desk last saved them, by (sku, location).
        self._kept: dict[tuple[str, str], StockItem] = {}
        self._terminals = _Terminals(app)
        self.start()

    def record(self, posted: SaleInput, timeout: float = 10.0) -> SaleReceipt:
        """Records one sale (as `RetailApp.record_sale`) and waits for its receipt."""
        ticket = self.submit(_Sale(posted, time.monotonic() + timeout))
        receipt: SaleReceipt = ticket.wait(timeout + 5)
        return receipt

    async def record_async(self, posted: SaleInput, timeout: float = 10.0) -> SaleReceipt:
        """`record` for a caller on an event loop, which is never blocked on the desk."""
        loop = asyncio.get_running_loop()
        ticket = self.submit(_Sale(posted, time.monotonic() + timeout, loop))
        receipt: SaleReceipt = await answer_of(ticket, timeout)
        return receipt

    def _settle(self, batch: list[_Sale]) -> None:
        app = self.app
        admitted: list[tuple[_Sale, AdmittedSale]] = []
        one_by_one: list[_Sale] = []
        seen: set[UUID] = set()
        for ticket in batch:
            try:
                sale = app.admit_sale(ticket.posted)
            except Exception as error:
                ticket.answer = error
                continue
            if sale.sale_id in seen:  # posted twice in one batch: the second is a retry
                one_by_one.append(ticket)
                continue
            seen.add(sale.sale_id)
            admitted.append((ticket, sale))
        if admitted:
            try:
                self._book(admitted)
                self.batches += 1
            except Exception as error:
                # A sale id used before, a stock item saved elsewhere, or something no sale
                # should meet: decide each sale again on its own, from what the store says.
                log.debug("till batch of %d decided one by one: %r", len(admitted), error)
                self._kept.clear()
                one_by_one[:0] = [ticket for ticket, _ in admitted]
        for ticket in one_by_one:
            ticket.answer = self._one(ticket.posted)

    def _book(self, admitted: list[tuple[_Sale, AdmittedSale]]) -> None:
        """Books the batch's sales and saves them in one commit, or raises having saved none."""
        app = self.app
        places: dict[str, _KeptItems] = {}
        terminals = self._terminals
        terminals.catch_up()
        booked: list[tuple[_Sale, PosSale]] = []
        for ticket, sale in admitted:
            till = terminals.get(sale.posted.terminal)
            try:
                app.check_till(sale, till)
            except DomainError as error:  # refused before it touched anything
                ticket.answer = error
                continue
            items = places.get(sale.posted.location)
            if items is None:
                items = places[sale.posted.location] = _KeptItems(
                    app, sale.posted.location, self._kept
                )
            booked.append((ticket, app.book_sale(sale, till, items)))
        if not booked:
            return
        touched = [a for items in places.values() for a in items.pending()]
        position = app._save(*[sale for _, sale in booked], *touched)
        for items in places.values():
            for sku, item in items.items.items():
                self._kept.pop((sku, items.location), None)  # now the most recently saved
                self._kept[sku, items.location] = item
        _trim(self._kept)
        for ticket, booked_sale in booked:
            # The batch's newest position: at or after each sale's own events.
            ticket.answer = app._receipt(booked_sale, position, replayed=False)

    def _one(self, posted: SaleInput) -> SaleReceipt | Exception:
        try:
            return self.app.record_posted_sale(posted)
        except Exception as error:
            return error
