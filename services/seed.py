"""A demo catalogue and locations, registered on first start so a newcomer can try the API."""

from __future__ import annotations

import logging

from domain.catalog import SkuTerms
from domain.errors import AlreadyExistsError
from domain.values import LocationKind, Money, PopupStatus
from services.application import RetailApp

log = logging.getLogger(__name__)

MASCOTS = "Milano Cortina 2026 mascots"
VAT = 1300  # 13 % VAT, included in list prices
STANDARD = SkuTerms(tax_rate_bp=VAT)
LIMITED = SkuTerms(tax_rate_bp=VAT, limited_edition=True)

DEMO_SKUS = (
    ("MC26-TINA-PLUSH-30", "Tina plush toy 30 cm", MASCOTS, 12800, STANDARD),
    ("MC26-MILO-PLUSH-30", "Milo plush toy 30 cm", MASCOTS, 12800, STANDARD),
    ("MC26-TINA-KEYCHAIN", "Tina keychain", MASCOTS, 3900, STANDARD),
    ("MC26-MILO-FIGURINE", "Milo figurine", MASCOTS, 6900, STANDARD),
    ("JW-SNOWFLAKE-PENDANT", "Snowflake silver pendant", "Winter jewellery", 59900, STANDARD),
    ("LTD-HOURGLASS-01", "Limited edition hourglass", "Limited", 29900, LIMITED),
    (
        "LTD-TINA-GOLD-PLUSH", "Tina gold-thread plush, numbered", "Limited", 49900,
        SkuTerms(tax_rate_bp=VAT, limited_edition=True, member_limit=2),
    ),
    (
        "CLUB-PIN-2026", "Members' club pin 2026", "Members", 5900,
        SkuTerms(tax_rate_bp=VAT, member_only=True),
    ),
)  # fmt: skip

DEMO_LOCATIONS = (
    ("ONLINE-FLAGSHIP", LocationKind.ONLINE_FLAGSHIP, "Online flagship store", "Beijing", "Shunyi"),
    ("WH-NORTH", LocationKind.WAREHOUSE, "North China warehouse", "Tianjin", "Binhai"),
    ("STORE-BJ-0001", LocationKind.PARTNER_STORE, "Wangfujing store", "Beijing", "Dongcheng"),
    ("STORE-BJ-0002", LocationKind.PARTNER_STORE, "Sanlitun store", "Beijing", "Chaoyang"),
    ("STORE-SH-0001", LocationKind.PARTNER_STORE, "Nanjing Road store", "Shanghai", "Huangpu"),
    ("POPUP-SH-EXPO", LocationKind.POPUP, "Winter sports pop-up", "Shanghai", "Pudong"),
)


def seed_demo(app: RetailApp) -> None:
    """Registers the demo data; repeated starts find it registered and change nothing. An
    entry an operator has since registered differently is left as it is."""
    for code, name, series, price, terms in DEMO_SKUS:
        try:
            app.register_sku(code, name, series, Money(price, "CNY"), terms)
        except AlreadyExistsError:
            log.info("demo SKU %s exists with other details; left as it is", code)
    for code, kind, name, city, district in DEMO_LOCATIONS:
        try:
            location, _ = app.register_location(code, kind, name, city, district)
        except AlreadyExistsError:
            log.info("demo location %s exists with other details; left as it is", code)
            continue
        if kind is LocationKind.POPUP and location.status is PopupStatus.PLANNED:
            app.open_popup(code)
