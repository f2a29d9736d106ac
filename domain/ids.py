"""Deterministic aggregate ids: the same business key always names the same stream."""

from __future__ import annotations

from uuid import UUID, uuid5

# A fixed namespace for this product's UUIDv5 ids. Changing it would orphan every stored stream.
NAMESPACE = UUID("6f1b2a8e-5c1d-4f0a-9a57-3d0c2e9b7a11")


def stream_id(*parts: str) -> UUID:
    return uuid5(NAMESPACE, "/".join(parts))
