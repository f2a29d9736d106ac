"""Sales and finance queries over the fact tables: summaries, day reports, reconciliation."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from projections.models import (
    DayCloseView,
    PaymentFact,
    SalesFact,
    SettlementLineView,
    ShiftView,
)

GROUPS = {
    "channel": SalesFact.channel,
    "location": SalesFact.location,
    "district": SalesFact.district,
    "sku": SalesFact.sku,
    "campaign": SalesFact.campaign,
}


@dataclass(frozen=True)
class SalesRow:
    bucket: str  # a day (2026-02-06) or an hour (2026-02-06T14), Asia/Shanghai
    key: str
    units: int
    revenue_minor: int
    currency: str


class SalesQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def summary(
        self, first_day: str, last_day: str, bucket: str, group_by: str, channel: str = ""
    ) -> list[SalesRow]:
        """Units and net revenue (returns deducted) per bucket and group, days inclusive."""
        period = SalesFact.business_day if bucket == "day" else SalesFact.local_hour
        key = GROUPS[group_by]
        statement = (
            select(
                period,
                key,
                func.sum(SalesFact.units),
                func.sum(SalesFact.net_minor),
                SalesFact.currency,
            )
            .where(SalesFact.business_day >= first_day, SalesFact.business_day <= last_day)
            .group_by(period, key, SalesFact.currency)
            .order_by(period, key)
        )
        if channel:
            statement = statement.where(SalesFact.channel == channel)
        with self.engine.connect() as conn:
            return [SalesRow(b, k, int(u), int(r), c) for b, k, u, r, c in conn.execute(statement)]

    def top_sellers(
        self, first_day: str, last_day: str, limit: int, channel: str = ""
    ) -> list[SalesRow]:
        units = func.sum(SalesFact.units)
        statement = (
            select(SalesFact.sku, units, func.sum(SalesFact.net_minor), SalesFact.currency)
            .where(SalesFact.business_day >= first_day, SalesFact.business_day <= last_day)
            .group_by(SalesFact.sku, SalesFact.currency)
            .order_by(units.desc(), SalesFact.sku)
            .limit(limit)
        )
        if channel:
            statement = statement.where(SalesFact.channel == channel)
        with self.engine.connect() as conn:
            return [
                SalesRow(f"{first_day}..{last_day}", sku, int(u), int(r), c)
                for sku, u, r, c in conn.execute(statement)
            ]


@dataclass
class Totals:
    """A day's money in minor units; returns and refunds are positive amounts taken off."""

    gross: int = 0
    discounts: int = 0
    returns: int = 0
    tax: int = 0
    sales: int = 0
    payments: dict[str, int] = field(default_factory=dict)

    @property
    def net(self) -> int:
        return self.gross - self.discounts - self.returns


@dataclass(frozen=True)
class DailyReport:
    location: str
    business_day: str
    currency: str
    closed: bool
    # As issued when the day closed (everything, while it is open).
    reported: Totals
    # What arrived after the close: late offline sales and other corrections, never merged
    # silently into the reported figures.
    adjustments: Totals
    adjusting_sales: list[str]

    @property
    def current(self) -> Totals:
        both = Totals()
        for part in (self.reported, self.adjustments):
            both.gross += part.gross
            both.discounts += part.discounts
            both.returns += part.returns
            both.tax += part.tax
            both.sales += part.sales
            for method, amount in part.payments.items():
                both.payments[method] = both.payments.get(method, 0) + amount
        return both


@dataclass(frozen=True)
class MethodVariance:
    method: str
    z_report: int
    recorded: int

    @property
    def variance(self) -> int:
        return self.z_report - self.recorded


@dataclass(frozen=True)
class ShiftReconciliation:
    terminal: str
    shift_id: str
    location: str
    closed: bool
    currency: str
    methods: list[MethodVariance]
    cash_expected: int  # float + cash taken
    cash_counted: int

    @property
    def cash_variance(self) -> int:
        return self.cash_counted - self.cash_expected


@dataclass(frozen=True)
class SettlementItem:
    reference: str
    method: str
    status: str  # matched, amount_differs, missing_in_settlement, missing_in_records
    recorded: int | None
    settled: int | None
    location: str


@dataclass(frozen=True)
class MethodTotals:
    method: str
    recorded: int
    settled: int
    z_report: int


class FinanceQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def daily_report(self, location: str, day: str) -> DailyReport:
        with self.engine.connect() as conn:
            closed_at = conn.execute(
                select(DayCloseView.position).where(
                    DayCloseView.location == location, DayCloseView.business_day == day
                )
            ).scalar()
            facts = conn.execute(
                select(
                    SalesFact.kind,
                    SalesFact.sale_id,
                    SalesFact.gross_minor,
                    SalesFact.discount_minor,
                    SalesFact.net_minor,
                    SalesFact.tax_minor,
                    SalesFact.currency,
                    SalesFact.position,
                ).where(SalesFact.location == location, SalesFact.business_day == day)
            ).all()
            payments = conn.execute(
                select(PaymentFact.method, PaymentFact.amount_minor, PaymentFact.position).where(
                    PaymentFact.location == location, PaymentFact.business_day == day
                )
            ).all()
        reported, adjustments = Totals(), Totals()
        adjusting: set[str] = set()
        counted: dict[int, set[str]] = {0: set(), 1: set()}
        currency = "CNY"
        for kind, sale, gross, discount, net, tax, fact_currency, position in facts:
            currency = fact_currency
            late = closed_at is not None and position > closed_at
            part = adjustments if late else reported
            if late:
                adjusting.add(sale)
            if kind == "return":
                part.returns -= net
            else:
                part.gross += gross
                part.discounts += discount
                counted[int(late)].add(sale)
            part.tax += tax
        reported.sales, adjustments.sales = len(counted[0]), len(counted[1])
        for method, amount, position in payments:
            part = adjustments if closed_at is not None and position > closed_at else reported
            part.payments[method] = part.payments.get(method, 0) + amount
        return DailyReport(
            location, day, currency, closed_at is not None, reported, adjustments,
            sorted(adjusting),
        )  # fmt: skip

    def shift_reconciliation(self, terminal: str, shift_id: str) -> ShiftReconciliation | None:
        with self.engine.connect() as conn:
            shift = conn.execute(
                select(*ShiftView.__table__.columns).where(
                    ShiftView.terminal == terminal, ShiftView.shift_id == shift_id
                )
            ).first()
            if shift is None:
                return None
            recorded: dict[str, int] = defaultdict(int)
            for method, amount in conn.execute(
                select(PaymentFact.method, PaymentFact.amount_minor).where(
                    PaymentFact.terminal == terminal, PaymentFact.shift_id == shift_id
                )
            ):
                recorded[method] += amount
        z_report = _parse_z(shift.z_report)
        methods = sorted(set(recorded) | set(z_report))
        return ShiftReconciliation(
            terminal, shift_id, shift.location, shift.closed, shift.currency,
            [MethodVariance(m, z_report.get(m, 0), recorded.get(m, 0)) for m in methods],
            cash_expected=shift.cash_float_minor + recorded.get("cash", 0),
            cash_counted=shift.counted_cash_minor,
        )  # fmt: skip

    def settlement_match(
        self, day: str, location: str = ""
    ) -> tuple[list[SettlementItem], list[MethodTotals]]:
        """Settlement lines of `day` against the non-cash payments recorded that day, and the
        totals per method three ways: recorded, settled, and the tills' Z-reports."""
        with self.engine.connect() as conn:
            statement = select(
                PaymentFact.reference, PaymentFact.method, PaymentFact.amount_minor,
                PaymentFact.location, PaymentFact.terminal, PaymentFact.shift_id,
            ).where(PaymentFact.business_day == day, PaymentFact.method != "cash")  # fmt: skip
            if location:
                statement = statement.where(PaymentFact.location == location)
            recorded_rows = conn.execute(statement).all()
            lines = conn.execute(
                select(
                    SettlementLineView.reference,
                    SettlementLineView.method,
                    SettlementLineView.amount_minor,
                ).where(SettlementLineView.business_day == day)
            ).all()
            shifts = {(t, s) for *_, t, s in recorded_rows if s}
            z_rows = conn.execute(
                select(ShiftView.terminal, ShiftView.shift_id, ShiftView.z_report)
            ).all()
        recorded: dict[str, tuple[str, int, str]] = {}
        for reference, method, amount, where, _, _ in recorded_rows:
            if reference:
                _, total, _ = recorded.get(reference, (method, 0, where))
                recorded[reference] = (method, total + amount, where)
        settled = {reference: (method, amount) for reference, method, amount in lines}
        items = [
            item
            for reference in sorted(set(recorded) | set(settled))
            if (item := _classify(reference, recorded.get(reference), settled.get(reference)))
            and not (location and item.status == "missing_in_records")
        ]
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for _, method, amount, *_ in recorded_rows:
            totals[method][0] += amount
        for reference, method, amount in lines:
            if not location or reference in recorded:
                totals[method][1] += amount
        for terminal, shift_id, z_report in z_rows:
            if (terminal, shift_id) in shifts:
                for method, amount in _parse_z(z_report).items():
                    if method != "cash":
                        totals[method][2] += amount
        return items, [MethodTotals(m, *totals[m]) for m in sorted(totals)]

    def ledger_csv(self, location: str, day: str) -> str:
        """The day's ledger: every sold and returned line, then every payment and refund."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["record", "id", "kind", "sale_id", "terminal", "shift_id", "sku",
                         "units", "gross", "discount", "net", "tax", "method", "amount",
                         "reference", "currency", "occurred_at", "late", "position"])  # fmt: skip
        with self.engine.connect() as conn:
            for f in conn.execute(
                select(*SalesFact.__table__.columns)
                .where(SalesFact.location == location, SalesFact.business_day == day)
                .order_by(SalesFact.position, SalesFact.id)
            ):
                writer.writerow(["line", f.id, f.kind, f.sale_id, f.terminal, f.shift_id, f.sku,
                                 f.units, f.gross_minor, f.discount_minor, f.net_minor,
                                 f.tax_minor, "", "", "", f.currency, f.occurred_at.isoformat()
                                 if f.occurred_at else "", int(f.late), f.position])  # fmt: skip
            for p in conn.execute(
                select(*PaymentFact.__table__.columns)
                .where(PaymentFact.location == location, PaymentFact.business_day == day)
                .order_by(PaymentFact.position, PaymentFact.id)
            ):
                writer.writerow(["payment", p.id, "refund" if p.amount_minor < 0 else "payment",
                                 p.sale_id, p.terminal, p.shift_id, "", "", "", "", "", "",
                                 p.method, p.amount_minor, p.reference, p.currency, "", "",
                                 p.position])  # fmt: skip
        return out.getvalue()


def _classify(
    reference: str, mine: tuple[str, int, str] | None, theirs: tuple[str, int] | None
) -> SettlementItem | None:
    if mine is None:
        if theirs is None:
            return None
        return SettlementItem(reference, theirs[0], "missing_in_records", None, theirs[1], "")
    if theirs is None:
        return SettlementItem(reference, mine[0], "missing_in_settlement", mine[1], None, mine[2])
    status = "matched" if mine[1] == theirs[1] else "amount_differs"
    return SettlementItem(reference, mine[0], status, mine[1], theirs[1], mine[2])


def _parse_z(text: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for pair in filter(None, text.split(";")):
        method, _, amount = pair.partition("=")
        totals[method] = totals.get(method, 0) + int(amount)
    return totals
