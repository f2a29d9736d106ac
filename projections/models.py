"""SQL read models: flat, query-shaped `*_view` tables, plus the projector's own bookkeeping."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class LocationView(Base):
    __tablename__ = "location_view"

    location: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    district: Mapped[str] = mapped_column(String(100))
    # open, or for a pop-up: planned, open, closing, closed.
    status: Mapped[str] = mapped_column(String(16), default="open")


class SkuView(Base):
    __tablename__ = "sku_view"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    series: Mapped[str] = mapped_column(String(200))
    list_price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class StockView(Base):
    """Stock levels per SKU and location, as of the last movement applied."""

    __tablename__ = "stock_view"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    location: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_hand: Mapped[int] = mapped_column(BigInteger)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    safety_stock: Mapped[int] = mapped_column(BigInteger, default=0)
    unavailable: Mapped[int] = mapped_column(BigInteger, default=0)
    incoming: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated: Mapped[int] = mapped_column(BigInteger, default=0)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_stock_view_location", "location"),)


class SaleView(Base):
    __tablename__ = "sale_view"

    sale_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    terminal: Mapped[str] = mapped_column(String(64))
    client_sale_id: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(String(64), index=True)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    units: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    position: Mapped[int] = mapped_column(BigInteger)


class SaleReturnView(Base):
    __tablename__ = "sale_return_view"

    sale_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    return_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    location: Mapped[str] = mapped_column(String(64), index=True)
    units: Mapped[int] = mapped_column(BigInteger)
    refund_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    damaged: Mapped[bool] = mapped_column(default=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    position: Mapped[int] = mapped_column(BigInteger)


class AppliedStream(Base):
    """The last version applied per stream: how a redelivered event is recognised and dropped."""

    __tablename__ = "applied_stream"

    stream_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class StreamGap(Base):
    """A stream version arrived before the one before it: reported here, never papered over."""

    __tablename__ = "stream_gap"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[str] = mapped_column(String(36))
    expected_version: Mapped[int] = mapped_column(BigInteger)
    got_version: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(200))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)


class ConsumerOffset(Base):
    """Per partition: the next Kafka offset to read (committed in the same transaction as the
    rows it produced), the write-side position everything before it covers, and the
    partition's end offset when last seen (for lag)."""

    __tablename__ = "consumer_offset"

    consumer_group: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    end_offset: Mapped[int] = mapped_column(BigInteger, default=0)
