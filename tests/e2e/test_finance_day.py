"""A scripted business day across the flagship, two stores and a pop-up, settled to the fen.

Everything goes through gRPC and the real broker; the figures come from the projections. A
rebuild of the views from Kafka gives the identical report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from projections.db import make_engine
from projections.finance import FinanceQueries
from projections.rebuild import differences, rebuild
from protos.retail.v1 import (
    common_pb2,
    finance_pb2,
    finance_pb2_grpc,
    order_pb2,
    order_pb2_grpc,
    pos_pb2,
    sales_pb2,
    sales_pb2_grpc,
)
from services.bus import topic_names
from services.localkafka import LocalKafka
from services.runtime import Backend
from tests.e2e.conftest import Client

pytestmark = pytest.mark.kafka

SHANGHAI = ZoneInfo("Asia/Shanghai")
STORE_A, STORE_B, POPUP, FLAGSHIP = (
    "STORE-BJ-0001",
    "STORE-BJ-0002",
    "POPUP-SH-EXPO",
    "ONLINE-FLAGSHIP",
)
PLUSH, KEYCHAIN, FIGURINE, PENDANT = (
    "MC26-TINA-PLUSH-30", "MC26-TINA-KEYCHAIN", "MC26-MILO-FIGURINE", "JW-SNOWFLAKE-PENDANT",
)  # fmt: skip
CASH, ALIPAY, WECHAT, CARD = (
    common_pb2.PAYMENT_METHOD_CASH, common_pb2.PAYMENT_METHOD_ALIPAY,
    common_pb2.PAYMENT_METHOD_WECHAT_PAY, common_pb2.PAYMENT_METHOD_BANK_CARD,
)  # fmt: skip


def cny(amount: int) -> common_pb2.Money:
    return common_pb2.Money(minor_units=amount, currency="CNY")


def at(day: datetime, hour: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(day.replace(hour=hour).astimezone(UTC))
    return stamp


def sale(
    client: Client, terminal: str, sale_id: str, location: str, when: Timestamp, sku: str,
    quantity: int, payments: list[pos_pb2.PaymentInput], discount: int = 0,
) -> pos_pb2.SaleReceipt:  # fmt: skip
    line = pos_pb2.SaleLineInput(sku=sku, quantity=quantity)
    if discount:
        line.discount.CopyFrom(cny(discount))
    return client.pos.RecordSale(
        pos_pb2.RecordSaleRequest(
            terminal_id=terminal, client_sale_id=sale_id, location=location, occurred_at=when,
            lines=[line], payments=payments, staff_id="staff-1",
        )
    )  # fmt: skip


def pay(
    method: common_pb2.PaymentMethod.ValueType, amount: int, ref: str = ""
) -> pos_pb2.PaymentInput:
    return pos_pb2.PaymentInput(method=method, amount=cny(amount), reference=ref)


def amounts(totals: finance_pb2.DayTotals) -> dict[str, int]:
    figures = {
        name: getattr(totals, name).minor_units
        for name in ("gross", "discounts", "returns", "net", "tax")
    }
    figures.update(
        {common_pb2.PaymentMethod.Name(p.method): p.amount.minor_units for p in totals.payments}
    )
    figures["sales"] = totals.sales
    return figures


def run_the_day(
    client: Client, finance: finance_pb2_grpc.FinanceServiceStub, yesterday: datetime
) -> tuple[pos_pb2.SaleReceipt, int]:
    """The day as the stores, the pop-up and the shop live it; answers the late sale and the
    position of the last write."""
    day = yesterday.date().isoformat()
    for location, sku in ((STORE_A, PLUSH), (STORE_A, KEYCHAIN), (STORE_B, FIGURINE),
                          (POPUP, PENDANT), (FLAGSHIP, "LTD-HOURGLASS-01")):  # fmt: skip
        client.receive(sku, location, 20)

    # Store A: a shift with a 500 yuan float, a discounted cash sale, an Alipay sale, a return.
    client.pos.OpenShift(pos_pb2.OpenShiftRequest(
        terminal_id="TA", shift_id="SH-A", location=STORE_A, staff_id="s",
        cash_float=cny(50000)))  # fmt: skip
    sale(client, "TA", "A1", STORE_A, at(yesterday, 10), PLUSH, 2, [pay(CASH, 25000)], 600)
    sale(client, "TA", "A2", STORE_A, at(yesterday, 11), KEYCHAIN, 1,
         [pay(ALIPAY, 3900, "ALI-1")])  # fmt: skip
    refund = client.pos.RecordReturn(pos_pb2.RecordReturnRequest(
        terminal_id="TA", client_sale_id="A1", return_id="R-1", occurred_at=at(yesterday, 15),
        lines=[common_pb2.SkuQuantity(sku=PLUSH, quantity=1)],
        refunds=[pay(CASH, 12500)]))  # fmt: skip
    assert refund.refund.minor_units == 12500
    # The till says cash 125.00 and Alipay 39.00; the drawer is 10 yuan short.
    client.pos.CloseShift(pos_pb2.CloseShiftRequest(
        terminal_id="TA", shift_id="SH-A", z_report=[pay(CASH, 12500), pay(ALIPAY, 3900)],
        counted_cash=cny(50000 + 12500 - 1000)))  # fmt: skip
    # Store B and the pop-up.
    sale(client, "TB", "B1", STORE_B, at(yesterday, 12), FIGURINE, 1, [pay(WECHAT, 6900, "WX-1")])
    sale(client, "TP", "P1", POPUP, at(yesterday, 13), PENDANT, 1, [pay(CARD, 59900, "CARD-1")])
    # The flagship: a flash sale today.
    orders = order_pb2_grpc.OrderServiceStub(client.channel)
    for n in range(2):
        orders.FlashBuy(order_pb2.FlashBuyRequest(order_id=f"F-{n}", sku="LTD-HOURGLASS-01",
                                                  location=FLAGSHIP))  # fmt: skip

    # Store A's day is reported; then a terminal that was offline posts a sale of that day.
    finance.CloseBusinessDay(
        finance_pb2.CloseBusinessDayRequest(location=STORE_A, business_day=day)
    )
    late = sale(client, "TA", "A3", STORE_A, at(yesterday, 20), KEYCHAIN, 1, [pay(CASH, 3900)])
    assert late.late and late.after_shift_close
    # The provider's settlement: one line matches, one differs, one is missing, one is unknown.
    done = finance.ImportSettlement(finance_pb2.ImportSettlementRequest(
        batch_id="ALIPAY-WX-CARD-1", provider="acquirer", lines=[
            finance_pb2.SettlementLineInput(reference="ALI-1", method=ALIPAY, amount=cny(3900),
                                            settled_at=at(yesterday, 23).ToJsonString()),
            finance_pb2.SettlementLineInput(reference="WX-1", method=WECHAT, amount=cny(6800),
                                            settled_at=at(yesterday, 23).ToJsonString()),
            finance_pb2.SettlementLineInput(reference="ALI-999", method=ALIPAY, amount=cny(1000),
                                            settled_at=at(yesterday, 23).ToJsonString()),
        ]))  # fmt: skip

    return late, max(done.position, late.position)


def test_a_business_day_settles_exactly_and_a_rebuild_gives_the_identical_report(
    backend: Backend, client: Client, kafka_broker: LocalKafka, namespace: str, tmp_path: Path
) -> None:
    now = datetime.now(SHANGHAI)
    yesterday = (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    day = yesterday.date().isoformat()
    finance = finance_pb2_grpc.FinanceServiceStub(client.channel)
    late, position = run_the_day(client, finance, yesterday)

    report = finance.GetDailyReport(finance_pb2.DailyReportRequest(
        location=STORE_A, business_day=day, min_position=position), timeout=20)  # fmt: skip
    assert report.closed
    assert amounts(report.reported) == {
        "gross": 25600 + 3900, "discounts": 600, "returns": 12500, "net": 16400,
        "tax": 2876 + 449 - 1438,  # 13 % VAT inside each net amount, to the fen
        "PAYMENT_METHOD_CASH": 12500, "PAYMENT_METHOD_ALIPAY": 3900, "sales": 2,
    }  # fmt: skip
    assert amounts(report.adjustments) == {
        "gross": 3900, "discounts": 0, "returns": 0, "net": 3900, "tax": 449,
        "PAYMENT_METHOD_CASH": 3900, "sales": 1,
    }  # fmt: skip
    assert list(report.adjusting_sales) == [late.sale_id]
    assert amounts(report.current)["net"] == 16400 + 3900

    shift = finance.GetShiftReconciliation(finance_pb2.ShiftReconciliationRequest(
        terminal_id="TA", shift_id="SH-A"))  # fmt: skip
    variances = [(common_pb2.PaymentMethod.Name(m.method), m.variance.minor_units)
                 for m in shift.methods]  # fmt: skip
    assert variances == [("PAYMENT_METHOD_ALIPAY", 0), ("PAYMENT_METHOD_CASH", 0)]
    assert (shift.cash_expected.minor_units, shift.cash_counted.minor_units) == (62500, 61500)
    assert shift.cash_variance.minor_units == -1000

    match = finance.GetSettlementMatch(finance_pb2.SettlementMatchRequest(business_day=day))
    assert {(i.reference, finance_pb2.MatchStatus.Name(i.status)) for i in match.items} == {
        ("ALI-1", "MATCH_STATUS_MATCHED"), ("WX-1", "MATCH_STATUS_AMOUNT_DIFFERS"),
        ("CARD-1", "MATCH_STATUS_MISSING_IN_SETTLEMENT"),
        ("ALI-999", "MATCH_STATUS_MISSING_IN_RECORDS"),
    }  # fmt: skip
    three_ways = {
        common_pb2.PaymentMethod.Name(m.method): (m.recorded.minor_units, m.settled.minor_units,
                                                  m.z_report.minor_units)
        for m in match.methods
    }  # fmt: skip
    assert three_ways == {
        "PAYMENT_METHOD_ALIPAY": (3900, 4900, 3900),
        "PAYMENT_METHOD_WECHAT_PAY": (6900, 6800, 0),
        "PAYMENT_METHOD_BANK_CARD": (59900, 0, 0),
    }

    ledger = finance.ExportLedger(
        finance_pb2.DailyReportRequest(location=STORE_A, business_day=day)
    )
    assert ledger.filename == f"ledger-{STORE_A}-{day}.csv"
    assert ledger.csv.count("\nline,") == 4 and ledger.csv.count("\npayment,") == 4

    sales = sales_pb2_grpc.SalesServiceStub(client.channel)
    today = now.date().isoformat()
    by_channel = sales.GetSalesSummary(sales_pb2.SalesSummaryRequest(
        first_day=day, last_day=today, group_by=sales_pb2.SALES_GROUP_CHANNEL))  # fmt: skip
    channels: dict[str, int] = {}
    for row in by_channel.rows:
        channels[row.key] = channels.get(row.key, 0) + row.revenue.minor_units
    assert channels == {"store": 16400 + 3900 + 6900, "popup": 59900, "online": 2 * 29900}
    top = sales.GetTopSellers(sales_pb2.TopSellersRequest(first_day=day, last_day=today, limit=1))
    assert [(r.key, r.units) for r in top.rows] == [("LTD-HOURGLASS-01", 2)]

    # Rebuilt from the start of the topics: the same views and the same report, to the fen.
    assert backend.engine is not None
    rebuilt = make_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    try:
        rebuild(kafka_broker.bootstrap, topic_names(namespace), rebuilt)
        assert differences(backend.engine, rebuilt) == []
        live_report = FinanceQueries(backend.engine).daily_report(STORE_A, day)
        assert FinanceQueries(rebuilt).daily_report(STORE_A, day) == live_report
    finally:
        rebuilt.dispose()


def test_a_confirmed_campaign_reservation_counts_as_an_online_sale_of_its_campaign(
    client: Client,
) -> None:
    today = datetime.now(SHANGHAI).date().isoformat()
    sku = "MC26-MILO-PLUSH-30"
    client.receive(sku, FLAGSHIP, 10)
    orders = order_pb2_grpc.OrderServiceStub(client.channel)
    orders.StartCampaign(order_pb2.StartCampaignRequest(
        campaign="LIVE-0206", kind=common_pb2.CAMPAIGN_KIND_LIVESTREAM, location=FLAGSHIP,
        allocations=[common_pb2.SkuQuantity(sku=sku, quantity=5)]))  # fmt: skip
    orders.Reserve(order_pb2.ReserveRequest(
        order_id="LIVE-ORDER-1", location=FLAGSHIP, campaign="LIVE-0206",
        lines=[common_pb2.SkuQuantity(sku=sku, quantity=3)]))  # fmt: skip
    paid = orders.ConfirmReservation(order_pb2.OrderRequest(order_id="LIVE-ORDER-1"))
    summary = sales_pb2_grpc.SalesServiceStub(client.channel).GetSalesSummary(
        sales_pb2.SalesSummaryRequest(
            first_day=today, last_day=today, group_by=sales_pb2.SALES_GROUP_CAMPAIGN,
            channel=common_pb2.CHANNEL_ONLINE, min_position=paid.position,
        ), timeout=20,
    )  # fmt: skip
    assert [(r.key, r.units, r.revenue.minor_units) for r in summary.rows] == [
        ("LIVE-0206", 3, 3 * 12800)
    ]
