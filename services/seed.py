"""A demo catalogue and locations, registered on first start so a newcomer can try the API."""

from __future__ import annotations

from domain.values import LocationKind, Money, PopupStatus
from services.application import RetailApp

DEMO_SKUS = (
    ("MC26-TINA-PLUSH-30", "Tina plush toy 30 cm", "Milano Cortina 2026 mascots", 12800),
    ("MC26-MILO-PLUSH-30", "Milo plush toy 30 cm", "Milano Cortina 2026 mascots", 12800),
    ("MC26-TINA-KEYCHAIN", "Tina keychain", "Milano Cortina 2026 mascots", 3900),
    ("MC26-MILO-FIGURINE", "Milo figurine", "Milano Cortina 2026 mascots", 6900),
    ("JW-SNOWFLAKE-PENDANT", "Snowflake silver pendant", "Winter jewellery", 59900),
    ("LTD-HOURGLASS-01", "Limited edition hourglass", "Limited", 29900),
)

DEMO_LOCATIONS = (
    ("ONLINE-FLAGSHIP", LocationKind.ONLINE_FLAGSHIP, "Online flagship store", "Beijing", "Shunyi"),
    ("WH-NORTH", LocationKind.WAREHOUSE, "North China warehouse", "Tianjin", "Binhai"),
    (
        "STORE-BJ-0001",
        LocationKind.PARTNER_STORE,
        "Wangfujing partner store",
        "Beijing",
        "Dongcheng",
    ),
    ("STORE-BJ-0002", LocationKind.PARTNER_STORE, "Sanlitun partner store", "Beijing", "Chaoyang"),
    (
        "STORE-SH-0001",
        LocationKind.PARTNER_STORE,
        "Nanjing Road partner store",
        "Shanghai",
        "Huangpu",
    ),
    ("POPUP-SH-EXPO", LocationKind.POPUP, "Winter sports pop-up", "Shanghai", "Pudong"),
)


def seed_demo(app: RetailApp) -> None:
    """Registers the demo data; repeated starts find it registered and change nothing."""
    for code, name, series, price in DEMO_SKUS:
        app.register_sku(code, name, series, Money(price, "CNY"))
    for code, kind, name, city, district in DEMO_LOCATIONS:
        location, _ = app.register_location(code, kind, name, city, district)
        if kind is LocationKind.POPUP and location.status is PopupStatus.PLANNED:
            app.open_popup(code)
