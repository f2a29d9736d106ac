"""`python -m services.localkafka fetch`: fetch the broker jars into the cache (used by make)."""

from __future__ import annotations

import sys

from services.localkafka.broker import BrokerError, ensure_jars, find_java


def main() -> int:
    if sys.argv[1:] != ["fetch"]:
        print("usage: python -m services.localkafka fetch", file=sys.stderr)
        return 2
    try:
        find_java()
        print(ensure_jars())
    except BrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
