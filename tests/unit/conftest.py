from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from domain.catalog import SkuTerms
from domain.values import LocationKind, Money
from services.application import RetailApp

START = datetime(2026, 2, 6, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = field(default=START)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> Iterator[RetailApp]:
    """The write side on the library's in-memory store, with SKUs and a few locations."""
    retail = RetailApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    cny = Money(12800, "CNY")
    retail.register_sku("TINA-30", "Tina plush 30 cm", "Mascots", cny)
    retail.register_sku("MILO-KEY", "Milo keychain", "Mascots", Money(3900, "CNY"))
    retail.register_sku("HOURGLASS", "Limited hourglass", "Limited", Money(29900, "CNY"),
                        SkuTerms(limited_edition=True, member_limit=2))  # fmt: skip
    retail.register_sku("MEMBER-PIN", "Members' pin", "Club", Money(5900, "CNY"),
                        SkuTerms(member_only=True))  # fmt: skip
    retail.register_sku("LAUNCH-FIG", "Launch figurine", "Mascots", Money(6900, "CNY"),
                        SkuTerms(launch_at=START + timedelta(hours=2)))  # fmt: skip
    retail.register_location(
        "STORE-1", LocationKind.PARTNER_STORE, "Store 1", "Beijing", "Dongcheng"
    )
    retail.register_location("POPUP-1", LocationKind.POPUP, "Pop-up 1", "Shanghai", "Pudong")
    retail.open_popup("POPUP-1")
    retail.register_location("WH-1", LocationKind.WAREHOUSE, "Warehouse", "Tianjin", "Binhai")
    retail.register_location(
        "ONLINE", LocationKind.ONLINE_FLAGSHIP, "Flagship", "Beijing", "Shunyi"
    )
    yield retail
    retail.close()
