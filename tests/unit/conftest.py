from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.values import LocationKind, Money
from services.application import RetailApp


@pytest.fixture
def app() -> Iterator[RetailApp]:
    """The write side on the library's in-memory store, with one SKU and a few locations."""
    retail = RetailApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    retail.register_sku("TINA-30", "Tina plush 30 cm", "Mascots", Money(12800, "CNY"))
    retail.register_sku("MILO-KEY", "Milo keychain", "Mascots", Money(3900, "CNY"))
    retail.register_location(
        "STORE-1", LocationKind.PARTNER_STORE, "Store 1", "Beijing", "Dongcheng"
    )
    retail.register_location("POPUP-1", LocationKind.POPUP, "Pop-up 1", "Shanghai", "Pudong")
    retail.register_location("WH-1", LocationKind.WAREHOUSE, "Warehouse", "Tianjin", "Binhai")
    yield retail
    retail.close()
