"""gRPC servicers of retail.v1: translate, call one use case or query, translate back.

No try/except here: services.rpc.errors.guarded maps every refusal to its status.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
from grpc import aio

from domain.catalog import Location, PopupDetails, Sku, SkuTerms
from domain.errors import InvalidValueError, UnknownSkuError
from domain.online import Campaign, ReservedLine
from domain.shifts import Shift, ZTotal
from domain.values import ReservationStatus, require_code
from projections.queries import LocationStock, ProgressQueries, StockFilter, StockQueries
from protos.retail.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    location_pb2,
    location_pb2_grpc,
    order_pb2,
    order_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from services.application import (
    DEFAULT_HOLD,
    ReservationView,
    RetailApp,
    SaleInput,
    SaleReceipt,
    StockReceipt,
    TransferView,
)
from services.envelopes import CHANNEL_TO_PROTO, KIND_TO_PROTO, PAYMENT_TO_PROTO
from services.flash import FlashResult, FlashSales, Outcome
from services.rpc import convert
from services.tills import TillDesk

CHANNEL_BY_NAME = {channel.value: proto for channel, proto in CHANNEL_TO_PROTO.items()}
KIND_BY_NAME = {kind.value: proto for kind, proto in KIND_TO_PROTO.items()}
RESERVATION_TO_PROTO = {
    ReservationStatus.HELD: order_pb2.RESERVATION_STATUS_HELD,
    ReservationStatus.CONFIRMED: order_pb2.RESERVATION_STATUS_CONFIRMED,
    ReservationStatus.RELEASED: order_pb2.RESERVATION_STATUS_RELEASED,
    ReservationStatus.EXPIRED: order_pb2.RESERVATION_STATUS_EXPIRED,
}
OUTCOME_TO_PROTO = {
    Outcome.CONFIRMED: order_pb2.FLASH_OUTCOME_CONFIRMED,
    Outcome.SOLD_OUT: order_pb2.FLASH_OUTCOME_SOLD_OUT,
    Outcome.LIMIT_REACHED: order_pb2.FLASH_OUTCOME_LIMIT_REACHED,
}


def _sku_out(sku: Sku) -> catalog_pb2.Sku:
    terms = sku.terms
    out = catalog_pb2.Sku(
        sku=sku.code, name=sku.name, series=sku.series,
        list_price=convert.money_out(sku.list_price), tax_rate_bp=terms.tax_rate_bp,
        limited_edition=terms.limited_edition,
        member_only=terms.member_only, member_limit=terms.member_limit,
    )  # fmt: skip
    if terms.launch_at is not None:
        out.launch_at.CopyFrom(convert.timestamp_out(terms.launch_at))
    return out


def _location_out(location: Location) -> location_pb2.Location:
    return location_pb2.Location(
        location=location.code,
        kind=KIND_TO_PROTO[location.kind],
        name=location.name,
        city=location.city,
        district=location.district,
        venue=location.popup.venue,
        opens_on=location.popup.opens_on,
        closes_on=location.popup.closes_on,
        status=convert.POPUP_TO_PROTO[location.status],
        final_count=location.final_count,
    )


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, app: RetailApp) -> None:
        self.app = app

    def RegisterSku(
        self, request: catalog_pb2.RegisterSkuRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.RegisterSkuResponse:
        given = request.sku
        terms = SkuTerms(
            tax_rate_bp=given.tax_rate_bp,
            limited_edition=given.limited_edition,
            member_only=given.member_only,
            launch_at=convert.timestamp_in(given, "launch_at"),
            member_limit=given.member_limit,
        )
        price = convert.money_in("sku.list_price", given.list_price)
        sku, position = self.app.register_sku(given.sku, given.name, given.series, price, terms)
        return catalog_pb2.RegisterSkuResponse(sku=_sku_out(sku), position=position)

    def GetSku(
        self, request: catalog_pb2.GetSkuRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.Sku:
        return _sku_out(self.app.get_sku(request.sku))


class LocationServicer(location_pb2_grpc.LocationServiceServicer):
    def __init__(self, app: RetailApp) -> None:
        self.app = app

    def RegisterLocation(
        self, request: location_pb2.RegisterLocationRequest, context: grpc.ServicerContext
    ) -> location_pb2.RegisterLocationResponse:
        given = request.location
        popup = PopupDetails(given.venue, given.opens_on, given.closes_on)
        location, position = self.app.register_location(
            given.location, convert.kind_in("location.kind", given.kind), given.name, given.city,
            given.district, popup,
        )  # fmt: skip
        return location_pb2.RegisterLocationResponse(
            location=_location_out(location), position=position
        )

    def GetLocation(
        self, request: location_pb2.GetLocationRequest, context: grpc.ServicerContext
    ) -> location_pb2.Location:
        return _location_out(self.app.get_location(request.location))

    def OpenPopup(
        self, request: location_pb2.PopupRequest, context: grpc.ServicerContext
    ) -> location_pb2.Location:
        return _location_out(self.app.open_popup(request.location)[0])

    def StartClosingPopup(
        self, request: location_pb2.PopupRequest, context: grpc.ServicerContext
    ) -> location_pb2.Location:
        return _location_out(self.app.start_closing_popup(request.location)[0])

    def ClosePopup(
        self, request: location_pb2.ClosePopupRequest, context: grpc.ServicerContext
    ) -> location_pb2.Location:
        counted = dict(request.final_count)
        return _location_out(self.app.close_popup(request.location, counted)[0])


def _change_out(receipt: StockReceipt) -> inventory_pb2.StockChange:
    return inventory_pb2.StockChange(
        sku=receipt.sku, location=receipt.location, on_hand=receipt.on_hand,
        position=receipt.position, levels=convert.levels_out(receipt.levels),
    )  # fmt: skip


def _transfer_out(view: TransferView) -> inventory_pb2.Transfer:
    return inventory_pb2.Transfer(
        transfer_id=view.code, from_location=view.source, to_location=view.destination,
        sent=convert.sku_quantities_out(view.sent),
        received=convert.sku_quantities_out(view.received or {}),
        lost_in_transit=convert.sku_quantities_out(view.lost),
        arrived=view.received is not None, position=view.position,
    )  # fmt: skip


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, app: RetailApp) -> None:
        self.app = app

    def ReceiveStock(
        self, request: inventory_pb2.ReceiveStockRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.StockChange:
        return _change_out(
            self.app.receive_stock(
                request.sku, request.location, request.quantity, request.reference
            )
        )

    def AdjustStock(
        self, request: inventory_pb2.AdjustStockRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.StockChange:
        reason = convert.adjustment_in("reason", request.reason)
        return _change_out(
            self.app.adjust_stock(
                request.sku, request.location, reason, request.quantity, request.reference
            )
        )

    def SetSafetyStock(
        self, request: inventory_pb2.SetSafetyStockRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.StockChange:
        return _change_out(
            self.app.set_safety_stock(
                request.sku, request.location, request.quantity, request.reference
            )
        )

    def GetStockLevels(
        self, request: inventory_pb2.GetStockLevelsRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.StockChange:
        levels = self.app.stock_levels(request.sku, request.location)
        return _change_out(StockReceipt(request.sku, request.location, levels, self.app._head()))

    def DispatchTransfer(
        self, request: inventory_pb2.DispatchTransferRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.Transfer:
        lines = convert.sku_quantities_in("lines", request.lines)
        return _transfer_out(
            self.app.dispatch_transfer(
                request.transfer_id, request.from_location, request.to_location, lines
            )
        )

    def ReceiveTransfer(
        self, request: inventory_pb2.ReceiveTransferRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.Transfer:
        lines = convert.sku_quantities_in("lines", request.lines)
        return _transfer_out(self.app.receive_transfer(request.transfer_id, lines))


def _reservation_out(view: ReservationView) -> order_pb2.Reservation:
    return order_pb2.Reservation(
        order_id=view.order_id, member_id=view.member, location=view.location,
        lines=[common_pb2.SkuQuantity(sku=line.sku, quantity=line.quantity) for line in view.lines],
        campaign=view.campaign, status=RESERVATION_TO_PROTO[view.status],
        expires_at=convert.timestamp_out(view.expires_at), position=view.position,
        replayed=view.replayed,
    )  # fmt: skip


def _campaign_out(
    campaign: Campaign, position: int, returned: dict[str, int] | None = None
) -> order_pb2.Campaign:
    return order_pb2.Campaign(
        campaign=campaign.code, kind=convert.CAMPAIGN_TO_PROTO[campaign.kind],
        location=campaign.location, allocations=convert.sku_quantities_out(campaign.allocations),
        active=campaign.active, returned=convert.sku_quantities_out(returned or {}),
        position=position,
    )  # fmt: skip


def _flash_out(result: FlashResult) -> order_pb2.FlashBuyResponse:
    return order_pb2.FlashBuyResponse(
        order_id=result.order_id, outcome=OUTCOME_TO_PROTO[result.outcome],
        quantity=result.quantity, remaining=result.remaining, position=result.position,
        replayed=result.replayed,
    )  # fmt: skip


class OrderServicer(order_pb2_grpc.OrderServiceServicer):
    def __init__(self, app: RetailApp, flash: FlashSales) -> None:
        self.app = app
        self.flash = flash

    def Reserve(
        self, request: order_pb2.ReserveRequest, context: grpc.ServicerContext
    ) -> order_pb2.Reservation:
        lines = [
            ReservedLine(sku, quantity)
            for sku, quantity in convert.sku_quantities_in("lines", request.lines).items()
        ]
        hold = timedelta(seconds=request.hold_seconds) if request.hold_seconds else DEFAULT_HOLD
        return _reservation_out(
            self.app.reserve(
                request.order_id, request.member_id, request.location, lines, request.campaign,
                hold,
            )
        )  # fmt: skip

    def ConfirmReservation(
        self, request: order_pb2.OrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.Reservation:
        return _reservation_out(self.app.confirm_reservation(request.order_id))

    def CancelReservation(
        self, request: order_pb2.OrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.Reservation:
        return _reservation_out(self.app.cancel_reservation(request.order_id))

    def GetReservation(
        self, request: order_pb2.OrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.Reservation:
        return _reservation_out(self.app.get_reservation(request.order_id))

    async def FlashBuy(
        self, request: order_pb2.FlashBuyRequest, context: aio.ServicerContext[Any, Any]
    ) -> order_pb2.FlashBuyResponse:
        """On the server's event loop: the buyer waits for its desk without a thread."""
        remaining = context.time_remaining()
        timeout = min(remaining, 30.0) if remaining is not None else 30.0
        return _flash_out(
            await self.flash.buy_async(
                request.order_id, request.sku, request.location, request.member_id,
                request.quantity or 1, request.campaign, timeout=timeout,
            )
        )  # fmt: skip

    def StartCampaign(
        self, request: order_pb2.StartCampaignRequest, context: grpc.ServicerContext
    ) -> order_pb2.Campaign:
        kind = convert.campaign_kind_in("kind", request.kind)
        allocations = convert.sku_quantities_in("allocations", request.allocations)
        campaign, position = self.app.start_campaign(
            request.campaign, kind, request.location, allocations
        )
        return _campaign_out(campaign, position)

    def EndCampaign(
        self, request: order_pb2.EndCampaignRequest, context: grpc.ServicerContext
    ) -> order_pb2.Campaign:
        campaign, returned, position = self.app.end_campaign(request.campaign)
        return _campaign_out(campaign, position, returned)


def _receipt_out(receipt: SaleReceipt) -> pos_pb2.SaleReceipt:
    out = pos_pb2.SaleReceipt(
        sale_id=str(receipt.sale_id),
        terminal_id=receipt.terminal,
        client_sale_id=receipt.client_sale_id,
        location=receipt.location,
        total=convert.money_out(receipt.total),
        occurred_at=convert.timestamp_out(receipt.occurred_at),
        recorded_at=convert.timestamp_out(receipt.recorded_at),
        position=receipt.position,
        replayed=receipt.replayed,
        negative_stock_skus=receipt.negative_stock_skus,
        shift_id=receipt.shift_id,
        late=receipt.late,
        after_shift_close=receipt.after_shift_close,
    )
    for line in receipt.lines:
        out.lines.add(
            sku=line.sku, quantity=line.quantity, unit_price=convert.money_out(line.unit_price),
            discount=convert.money_out(line.discount), line_total=convert.money_out(line.total),
        )  # fmt: skip
    return out


def _shift_out(shift: Shift, position: int) -> pos_pb2.Shift:
    out = pos_pb2.Shift(
        terminal_id=shift.terminal, shift_id=shift.shift_id, location=shift.location,
        staff_id=shift.staff, cash_float=convert.money_out(shift.cash_float),
        opened_at=convert.timestamp_out(shift.opened_at), position=position,
    )  # fmt: skip
    if shift.closed_at is not None:
        out.closed_at.CopyFrom(convert.timestamp_out(shift.closed_at))
    if shift.counted_cash is not None:
        out.counted_cash.CopyFrom(convert.money_out(shift.counted_cash))
    for total in shift.z_report:
        out.z_report.add(
            method=PAYMENT_TO_PROTO[total.method], amount=convert.money_out(total.amount)
        )
    return out


class PosServicer(pos_pb2_grpc.PosServiceServicer):
    def __init__(self, app: RetailApp, tills: TillDesk) -> None:
        self.app = app
        self.tills = tills

    async def RecordSale(
        self, request: pos_pb2.RecordSaleRequest, context: aio.ServicerContext[Any, Any]
    ) -> pos_pb2.SaleReceipt:
        """On the server's event loop: the till waits for the till desk without a thread."""
        posted = SaleInput(
            terminal=request.terminal_id,
            client_sale_id=request.client_sale_id,
            location=request.location,
            staff=request.staff_id,
            occurred_at=convert.timestamp_in(request, "occurred_at"),
            lines=convert.sale_lines_in(request.lines),
            payments=convert.payments_in(request.payments),
        )
        remaining = context.time_remaining()
        timeout = min(remaining, 30.0) if remaining is not None else 30.0
        return _receipt_out(await self.tills.record_async(posted, timeout))

    def RecordReturn(
        self, request: pos_pb2.RecordReturnRequest, context: grpc.ServicerContext
    ) -> pos_pb2.ReturnReceipt:
        receipt = self.app.record_return(
            request.terminal_id, request.client_sale_id, request.return_id,
            convert.sku_quantities_in("lines", request.lines),
            convert.payments_in(request.refunds), damaged=request.damaged,
            occurred_at=convert.timestamp_in(request, "occurred_at"),
        )  # fmt: skip
        out = pos_pb2.ReturnReceipt(
            sale_id=str(receipt.sale_id), return_id=receipt.return_id,
            refund=convert.money_out(receipt.refund), position=receipt.position,
            replayed=receipt.replayed,
        )  # fmt: skip
        for line in receipt.lines:
            out.lines.add(
                sku=line.sku, quantity=line.quantity, refund=convert.money_out(line.refund)
            )
        return out

    def OpenShift(
        self, request: pos_pb2.OpenShiftRequest, context: grpc.ServicerContext
    ) -> pos_pb2.Shift:
        cash_float = convert.money_in("cash_float", request.cash_float)
        shift, position = self.app.open_shift(
            request.terminal_id, request.shift_id, request.location, request.staff_id, cash_float
        )
        return _shift_out(shift, position)

    def CloseShift(
        self, request: pos_pb2.CloseShiftRequest, context: grpc.ServicerContext
    ) -> pos_pb2.Shift:
        z_report = [
            ZTotal(payment.method, payment.amount)
            for payment in convert.payments_in(request.z_report)
        ]
        counted = convert.money_in("counted_cash", request.counted_cash)
        shift, position = self.app.close_shift(
            request.terminal_id, request.shift_id, z_report, counted
        )
        return _shift_out(shift, position)


log = logging.getLogger(__name__)

MAX_WAIT = 10.0
# GetStock without min_position: how old the views' version may be (seconds), and how many
# answers are kept before the cache starts over.
STOCK_VERSION_FRESH_FOR = 0.02
MAX_KEPT_ANSWERS = 50_000
WATCH_POLL = 0.1


def wait_budget(context: grpc.ServicerContext | aio.ServicerContext[Any, Any]) -> float:
    remaining = context.time_remaining()
    if remaining is None:
        return MAX_WAIT
    # Leave the caller time to receive the answer: a fifth of its deadline, at least 0.1 s.
    return min(max(remaining - max(remaining * 0.2, 0.1), 0.0), MAX_WAIT)


def _location_stock_out(row: LocationStock) -> stock_pb2.LocationStock:
    return stock_pb2.LocationStock(
        location=row.location,
        kind=KIND_BY_NAME.get(row.kind, common_pb2.LOCATION_KIND_UNSPECIFIED),
        channel=CHANNEL_BY_NAME.get(row.channel, common_pb2.CHANNEL_UNSPECIFIED),
        city=row.city, district=row.district, on_hand=row.on_hand,
        levels=convert.levels_out(row.levels),
    )  # fmt: skip


def _page_token(key: tuple[str, str] | None) -> str:
    return base64.urlsafe_b64encode("\t".join(key).encode()).decode() if key else ""


def _page_key(token: str) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        sku, location = base64.urlsafe_b64decode(token.encode()).decode().split("\t")
    except (ValueError, UnicodeDecodeError):
        raise InvalidValueError("page_token", "is not a token this service gave out") from None
    return sku, location


class _RecentVersion:
    """The views' version as a thread of its own reads it every `fresh_for` seconds, so no
    call waits for that read. Measured at 1,200 GetStock/s: with the read done by the call
    that found it stale, p99 was 32 ms against 2.5 ms for a no-op server (a read can wait
    tens of ms behind the projector's writes and checkpoints); then every call in that window
    waits with it."""

    def __init__(self, progress: ProgressQueries, fresh_for: float) -> None:
        self.progress = progress
        self.fresh_for = fresh_for
        self._version: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self) -> tuple[int, int] | None:
        """The last version read, or None before the first read (start the reader)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="views-version", daemon=True
                    )
                    self._thread.start()
        return self._version

    def _run(self) -> None:
        while True:
            try:
                self.offer(self.progress.version())
            except Exception:  # the views are unavailable for now: keep the last version
                log.warning("reading the views' version failed; trying again", exc_info=True)
            if self._stop.wait(self.fresh_for):
                return

    def offer(self, version: tuple[int, int]) -> None:
        """Takes a version read elsewhere (after a min_position wait) if it is newer, so a
        caller who waited for its write does not read an older answer next."""
        known = self._version
        if known is None or version[1] >= known[1]:
            self._version = version

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class StockServicer(stock_pb2_grpc.StockServiceServicer):
    """Stock queries. GetStock answers are kept per (sku, location) with the views' version
    they were built from and served again until a projector commit changes the version. A
    call without min_position takes the version a reader thread reads every
    STOCK_VERSION_FRESH_FOR seconds, so its answer may trail the views by that much more (its
    view_position says where it is); a call with min_position reads it after the wait.
    Measured with 64 callers: 608 calls/s with a query per call; see docs/benchmarks.md."""

    def __init__(
        self, queries: StockQueries, progress: ProgressQueries, app: RetailApp | None
    ) -> None:
        self.queries = queries
        self.progress = progress
        self.app = app
        self._recent = _RecentVersion(progress, STOCK_VERSION_FRESH_FOR)
        self._answers: dict[tuple[str, str], tuple[tuple[int, int], stock_pb2.GetStockResponse]]
        self._answers = {}

    def GetPipelineStatus(
        self, request: stock_pb2.GetPipelineStatusRequest, context: grpc.ServicerContext
    ) -> stock_pb2.PipelineStatus:
        partitions = self.progress.partitions()
        status = stock_pb2.PipelineStatus(
            view_position=min((p.position for p in partitions), default=0),
            total_lag=sum(p.lag for p in partitions),
        )
        for p in partitions:
            status.partitions.add(
                topic=p.topic, partition=p.partition, next_offset=p.next_offset,
                end_offset=p.end_offset, lag=p.lag, position=p.position,
            )  # fmt: skip
        return status

    def _reached(self, min_position: int, context: grpc.ServicerContext) -> int:
        if min_position:
            return self.progress.wait_for(min_position, wait_budget(context))
        return self.progress.view_position()

    async def GetStock(
        self, request: stock_pb2.GetStockRequest, context: aio.ServicerContext[Any, Any]
    ) -> stock_pb2.GetStockResponse:
        """On the server's event loop: a kept answer is served there; the database is read
        in the loop's thread pool."""
        loop = asyncio.get_running_loop()
        version: tuple[int, int] | None
        if request.min_position:
            version = await loop.run_in_executor(
                None, self._version_after, request.min_position, wait_budget(context)
            )
        else:
            version = self._recent.get()
        key = (request.sku, request.location)
        kept = self._answers.get(key)
        # Kept answers are served while no projector commit is newer than the one they were
        # built from (the offsets' sum only grows).
        if kept is not None and version is not None and kept[0][1] >= version[1]:
            return kept[1]
        built, response = await loop.run_in_executor(None, self._build_fresh, request)
        if len(self._answers) >= MAX_KEPT_ANSWERS:
            self._answers.clear()
        self._answers[key] = (built, response)
        return response

    def _build_fresh(
        self, request: stock_pb2.GetStockRequest
    ) -> tuple[tuple[int, int], stock_pb2.GetStockResponse]:
        """Reads the version, then the rows: the answer is at least as new as its version
        says (a version read earlier may be older than rows read now)."""
        version = self.progress.version()
        self._recent.offer(version)
        return version, self._build_stock(request, version[0])

    def _version_after(self, min_position: int, budget: float) -> tuple[int, int]:
        version = self.progress.wait_for_version(min_position, budget)
        self._recent.offer(version)
        return version

    def _build_stock(
        self, request: stock_pb2.GetStockRequest, reached: int
    ) -> stock_pb2.GetStockResponse:
        snapshot = self.queries.get_stock(request.sku, request.location)
        if not snapshot.known:
            # The view may trail a registration; the write side has the last word on existence.
            if self.app is None:
                raise UnknownSkuError(request.sku)
            self.app.get_sku(request.sku)
        response = stock_pb2.GetStockResponse(
            sku=snapshot.sku,
            total_on_hand=snapshot.total_on_hand,
            view_position=reached,
            districts=snapshot.by_district,
            online_available_to_promise=snapshot.online_available,
        )
        response.locations.extend(_location_stock_out(row) for row in snapshot.locations)
        for channel, on_hand in sorted(snapshot.by_channel.items()):
            response.channels.add(
                channel=CHANNEL_BY_NAME.get(channel, common_pb2.CHANNEL_UNSPECIFIED),
                on_hand=on_hand,
            )
        return response

    def FindNearbyStock(
        self, request: stock_pb2.FindNearbyStockRequest, context: grpc.ServicerContext
    ) -> stock_pb2.FindNearbyStockResponse:
        require_code("sku", request.sku)
        if not request.city.strip():
            raise InvalidValueError("city", "is required")
        limit = request.limit or 10
        if not 1 <= limit <= 100:
            raise InvalidValueError("limit", "must be between 1 and 100")
        reached = self._reached(request.min_position, context)
        places = self.queries.nearby(
            request.sku, request.city.strip(), request.district.strip(),
            request.min_available or 1, limit,
        )  # fmt: skip
        response = stock_pb2.FindNearbyStockResponse(view_position=reached)
        for row in places:
            response.places.add(
                stock=_location_stock_out(row), same_district=row.district == request.district
            )
        return response

    def ListStock(
        self, request: stock_pb2.ListStockRequest, context: grpc.ServicerContext
    ) -> stock_pb2.ListStockResponse:
        size = request.page_size or 100
        if not 1 <= size <= 1000:
            raise InvalidValueError("page_size", "must be between 1 and 1000")
        channel = next((n for n, p in CHANNEL_BY_NAME.items() if p == request.channel), "")
        where = StockFilter(
            sku=request.sku, location=request.location, channel=channel,
            district=request.district, low_stock_below=request.low_stock_below,
            negative_only=request.negative_only,
        )  # fmt: skip
        reached = self._reached(request.min_position, context)
        rows, after = self.queries.page(where, size, _page_key(request.page_token))
        response = stock_pb2.ListStockResponse(
            next_page_token=_page_token(after), view_position=reached
        )
        for row in rows:
            response.rows.add(sku=row.sku, stock=_location_stock_out(row))
        return response

    def close(self) -> None:
        self._recent.close()

    def _changes(self, sku: str, location: str, after: int) -> list[LocationStock]:
        return list(self.queries.changes(sku, location, after))

    async def WatchStock(
        self, request: stock_pb2.WatchStockRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[stock_pb2.StockChanged]:
        """On the server's event loop (no thread held per watcher); ends when the caller
        cancels or the server stops."""
        if not request.sku and not request.location:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "sku or location: name at least one"
            )
        loop = asyncio.get_running_loop()
        after = -1
        while True:
            rows = await loop.run_in_executor(
                None, self._changes, request.sku, request.location, after
            )
            for row in rows:
                after = max(after, row.position)
                yield stock_pb2.StockChanged(
                    sku=row.sku, stock=_location_stock_out(row), position=row.position
                )
            await asyncio.sleep(WATCH_POLL)
