"""gRPC servicers of the sales and finance reports (read side)."""

from __future__ import annotations

from datetime import datetime

import grpc

from domain.errors import InvalidValueError
from domain.finance import SettlementLine, require_day
from domain.values import PaymentMethod, require_code
from projections.finance import FinanceQueries, SalesQueries, Totals
from projections.queries import ProgressQueries
from protos.retail.v1 import (
    common_pb2,
    finance_pb2,
    finance_pb2_grpc,
    sales_pb2,
    sales_pb2_grpc,
)
from services.application import RetailApp
from services.envelopes import PAYMENT_TO_PROTO
from services.rpc import convert
from services.rpc.servicers import CHANNEL_BY_NAME, wait_budget

GROUPS = {
    sales_pb2.SALES_GROUP_CHANNEL: "channel",
    sales_pb2.SALES_GROUP_LOCATION: "location",
    sales_pb2.SALES_GROUP_DISTRICT: "district",
    sales_pb2.SALES_GROUP_SKU: "sku",
    sales_pb2.SALES_GROUP_CAMPAIGN: "campaign",
}
STATUSES = {
    "matched": finance_pb2.MATCH_STATUS_MATCHED,
    "amount_differs": finance_pb2.MATCH_STATUS_AMOUNT_DIFFERS,
    "missing_in_settlement": finance_pb2.MATCH_STATUS_MISSING_IN_SETTLEMENT,
    "missing_in_records": finance_pb2.MATCH_STATUS_MISSING_IN_RECORDS,
}


def _channel(value: common_pb2.Channel.ValueType) -> str:
    return next((name for name, proto in CHANNEL_BY_NAME.items() if proto == value), "")


def _days(first: str, last: str) -> tuple[str, str]:
    require_day("first_day", first)
    require_day("last_day", last)
    if last < first:
        raise InvalidValueError("last_day", "comes before first_day")
    return first, last


def _method(name: str) -> common_pb2.PaymentMethod.ValueType:
    return PAYMENT_TO_PROTO.get(PaymentMethod(name), common_pb2.PAYMENT_METHOD_UNSPECIFIED)


def _money(amount: int, currency: str) -> common_pb2.Money:
    return common_pb2.Money(minor_units=amount, currency=currency)


class _Reads:
    def __init__(self, progress: ProgressQueries) -> None:
        self.progress = progress

    def reached(self, min_position: int, context: grpc.ServicerContext) -> int:
        if min_position:
            return self.progress.wait_for(min_position, wait_budget(context))
        return self.progress.view_position()


class SalesServicer(sales_pb2_grpc.SalesServiceServicer, _Reads):
    def __init__(self, queries: SalesQueries, progress: ProgressQueries) -> None:
        super().__init__(progress)
        self.queries = queries

    def GetSalesSummary(
        self, request: sales_pb2.SalesSummaryRequest, context: grpc.ServicerContext
    ) -> sales_pb2.SalesSummary:
        first, last = _days(request.first_day, request.last_day)
        group = GROUPS.get(request.group_by)
        if group is None:
            raise InvalidValueError(
                "group_by", "is required (channel, location, district, SKU or campaign)"
            )
        bucket = "hour" if request.bucket == sales_pb2.BUCKET_HOUR else "day"
        reached = self.reached(request.min_position, context)
        rows = self.queries.summary(first, last, bucket, group, _channel(request.channel))
        summary = sales_pb2.SalesSummary(view_position=reached)
        for row in rows:
            summary.rows.add(bucket=row.bucket, key=row.key, units=row.units,
                             revenue=_money(row.revenue_minor, row.currency))  # fmt: skip
        return summary

    def GetTopSellers(
        self, request: sales_pb2.TopSellersRequest, context: grpc.ServicerContext
    ) -> sales_pb2.SalesSummary:
        first, last = _days(request.first_day, request.last_day)
        limit = request.limit or 10
        if not 1 <= limit <= 100:
            raise InvalidValueError("limit", "must be between 1 and 100")
        reached = self.reached(request.min_position, context)
        summary = sales_pb2.SalesSummary(view_position=reached)
        for row in self.queries.top_sellers(first, last, limit, _channel(request.channel)):
            summary.rows.add(bucket=row.bucket, key=row.key, units=row.units,
                             revenue=_money(row.revenue_minor, row.currency))  # fmt: skip
        return summary


def _totals(totals: Totals, currency: str) -> finance_pb2.DayTotals:
    out = finance_pb2.DayTotals(
        gross=_money(totals.gross, currency), discounts=_money(totals.discounts, currency),
        returns=_money(totals.returns, currency), net=_money(totals.net, currency),
        tax=_money(totals.tax, currency), sales=totals.sales,
    )  # fmt: skip
    for method, amount in sorted(totals.payments.items()):
        out.payments.add(method=_method(method), amount=_money(amount, currency))
    return out


class FinanceServicer(finance_pb2_grpc.FinanceServiceServicer, _Reads):
    def __init__(self, app: RetailApp, queries: FinanceQueries, progress: ProgressQueries) -> None:
        super().__init__(progress)
        self.app = app
        self.queries = queries

    def CloseBusinessDay(
        self, request: finance_pb2.CloseBusinessDayRequest, context: grpc.ServicerContext
    ) -> finance_pb2.CloseBusinessDayResponse:
        position = self.app.close_business_day(request.location, request.business_day)
        return finance_pb2.CloseBusinessDayResponse(position=position)

    def GetDailyReport(
        self, request: finance_pb2.DailyReportRequest, context: grpc.ServicerContext
    ) -> finance_pb2.DailyReport:
        self.app.get_location(request.location)
        require_day("business_day", request.business_day)
        reached = self.reached(request.min_position, context)
        report = self.queries.daily_report(request.location, request.business_day)
        return finance_pb2.DailyReport(
            location=report.location, business_day=report.business_day, closed=report.closed,
            reported=_totals(report.reported, report.currency),
            adjustments=_totals(report.adjustments, report.currency),
            current=_totals(report.current, report.currency),
            adjusting_sales=report.adjusting_sales, view_position=reached,
        )  # fmt: skip

    def GetShiftReconciliation(
        self, request: finance_pb2.ShiftReconciliationRequest, context: grpc.ServicerContext
    ) -> finance_pb2.ShiftReconciliation:
        require_code("terminal_id", request.terminal_id)
        require_code("shift_id", request.shift_id)
        reached = self.reached(request.min_position, context)
        found = self.queries.shift_reconciliation(request.terminal_id, request.shift_id)
        if found is None:
            raise InvalidValueError(
                "shift_id", f"no shift {request.shift_id!r} of this terminal in the views"
            )
        c = found.currency
        out = finance_pb2.ShiftReconciliation(
            terminal_id=found.terminal, shift_id=found.shift_id, location=found.location,
            closed=found.closed, cash_expected=_money(found.cash_expected, c),
            cash_counted=_money(found.cash_counted, c),
            cash_variance=_money(found.cash_variance, c), view_position=reached,
        )  # fmt: skip
        for m in found.methods:
            out.methods.add(
                method=_method(m.method), z_report=_money(m.z_report, c),
                recorded=_money(m.recorded, c), variance=_money(m.variance, c),
            )  # fmt: skip
        return out

    def ImportSettlement(
        self, request: finance_pb2.ImportSettlementRequest, context: grpc.ServicerContext
    ) -> finance_pb2.ImportSettlementResponse:
        lines = []
        for index, line in enumerate(request.lines):
            try:
                settled_at = datetime.fromisoformat(line.settled_at)
            except ValueError:
                raise InvalidValueError(
                    f"lines[{index}].settled_at", "is not an RFC 3339 time"
                ) from None
            lines.append(SettlementLine(
                line.reference.strip(),
                convert.payment_method_in(f"lines[{index}].method", line.method),
                convert.money_in(f"lines[{index}].amount", line.amount), settled_at,
            ))  # fmt: skip
        position = self.app.import_settlement(request.batch_id, request.provider, lines)
        return finance_pb2.ImportSettlementResponse(position=position)

    def GetSettlementMatch(
        self, request: finance_pb2.SettlementMatchRequest, context: grpc.ServicerContext
    ) -> finance_pb2.SettlementMatch:
        require_day("business_day", request.business_day)
        reached = self.reached(request.min_position, context)
        items, totals = self.queries.settlement_match(request.business_day, request.location)
        out = finance_pb2.SettlementMatch(view_position=reached)
        for item in items:
            entry = out.items.add(reference=item.reference, method=_method(item.method),
                                  status=STATUSES[item.status], location=item.location)  # fmt: skip
            if item.recorded is not None:
                entry.recorded.CopyFrom(_money(item.recorded, "CNY"))
            if item.settled is not None:
                entry.settled.CopyFrom(_money(item.settled, "CNY"))
        for t in totals:
            out.methods.add(
                method=_method(t.method), recorded=_money(t.recorded, "CNY"),
                settled=_money(t.settled, "CNY"), z_report=_money(t.z_report, "CNY"),
            )  # fmt: skip
        return out

    def ExportLedger(
        self, request: finance_pb2.DailyReportRequest, context: grpc.ServicerContext
    ) -> finance_pb2.LedgerExport:
        self.app.get_location(request.location)
        require_day("business_day", request.business_day)
        reached = self.reached(request.min_position, context)
        return finance_pb2.LedgerExport(
            filename=f"ledger-{request.location}-{request.business_day}.csv",
            csv=self.queries.ledger_csv(request.location, request.business_day),
            view_position=reached,
        )
