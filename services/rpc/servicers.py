"""gRPC servicers of retail.v1: translate, call one use case or query, translate back.

No try/except here: the interceptor in services.rpc.errors maps every refusal to its status.
"""

from __future__ import annotations

import grpc

from domain.catalog import Location, Sku
from domain.errors import UnknownSkuError
from domain.values import Money
from projections.queries import StockQueries
from protos.retail.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    inventory_pb2,
    inventory_pb2_grpc,
    location_pb2,
    location_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from services.application import RetailApp, SaleReceipt
from services.envelopes import CHANNEL_TO_PROTO, KIND_TO_PROTO
from services.rpc import convert

CHANNEL_BY_NAME = {channel.value: proto for channel, proto in CHANNEL_TO_PROTO.items()}
KIND_BY_NAME = {kind.value: proto for kind, proto in KIND_TO_PROTO.items()}


def _sku_out(sku: Sku) -> catalog_pb2.Sku:
    return catalog_pb2.Sku(
        sku=sku.code, name=sku.name, series=sku.series, list_price=convert.money_out(sku.list_price)
    )


def _location_out(location: Location) -> location_pb2.Location:
    return location_pb2.Location(
        location=location.code,
        kind=KIND_TO_PROTO[location.kind],
        name=location.name,
        city=location.city,
        district=location.district,
    )


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, app: RetailApp) -> None:
        self.app = app

    def RegisterSku(
        self, request: catalog_pb2.RegisterSkuRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.RegisterSkuResponse:
        given = request.sku
        price: Money = convert.money_in("sku.list_price", given.list_price)
        sku, position = self.app.register_sku(given.sku, given.name, given.series, price)
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
        location, position = self.app.register_location(
            given.location, convert.kind_in("location.kind", given.kind), given.name, given.city,
            given.district,
        )  # fmt: skip
        return location_pb2.RegisterLocationResponse(
            location=_location_out(location), position=position
        )

    def GetLocation(
        self, request: location_pb2.GetLocationRequest, context: grpc.ServicerContext
    ) -> location_pb2.Location:
        return _location_out(self.app.get_location(request.location))


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, app: RetailApp) -> None:
        self.app = app

    def ReceiveStock(
        self, request: inventory_pb2.ReceiveStockRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.ReceiveStockResponse:
        receipt = self.app.receive_stock(
            request.sku, request.location, request.quantity, request.reference
        )
        return inventory_pb2.ReceiveStockResponse(
            sku=receipt.sku, location=receipt.location, on_hand=receipt.on_hand,
            position=receipt.position,
        )  # fmt: skip


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
    )
    for line in receipt.lines:
        out.lines.add(
            sku=line.sku, quantity=line.quantity, unit_price=convert.money_out(line.unit_price),
            discount=convert.money_out(line.discount), line_total=convert.money_out(line.total),
        )  # fmt: skip
    return out


class PosServicer(pos_pb2_grpc.PosServiceServicer):
    def __init__(self, app: RetailApp) -> None:
        self.app = app

    def RecordSale(
        self, request: pos_pb2.RecordSaleRequest, context: grpc.ServicerContext
    ) -> pos_pb2.SaleReceipt:
        receipt = self.app.record_sale(
            terminal=request.terminal_id,
            client_sale_id=request.client_sale_id,
            location=request.location,
            staff=request.staff_id,
            occurred_at=convert.timestamp_in(request, "occurred_at"),
            lines=convert.sale_lines_in(request.lines),
            payments=convert.payments_in(request.payments),
        )
        return _receipt_out(receipt)


class StockServicer(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, queries: StockQueries, app: RetailApp | None) -> None:
        self.queries = queries
        self.app = app

    def GetStock(
        self, request: stock_pb2.GetStockRequest, context: grpc.ServicerContext
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
            view_position=snapshot.view_position,
        )
        for row in snapshot.locations:
            response.locations.add(
                location=row.location,
                kind=KIND_BY_NAME.get(row.kind, common_pb2.LOCATION_KIND_UNSPECIFIED),
                channel=CHANNEL_BY_NAME.get(row.channel, common_pb2.CHANNEL_UNSPECIFIED),
                city=row.city, district=row.district, on_hand=row.on_hand,
            )  # fmt: skip
        for channel, on_hand in sorted(snapshot.by_channel.items()):
            response.channels.add(
                channel=CHANNEL_BY_NAME.get(channel, common_pb2.CHANNEL_UNSPECIFIED),
                on_hand=on_hand,
            )
        return response
