"""`python -m bench` (what `make bench` runs)."""

import os
import sys

# The orchestrator talks gRPC while it starts processes: gRPC's fork support off (why:
# services/__init__.py), the caller's setting kept for the backends it starts.
os.environ["BENCH_GRPC_FORK_SUPPORT_WAS"] = os.environ.get("GRPC_ENABLE_FORK_SUPPORT", "")
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

from bench.main import main  # after the variable above, before gRPC loads

sys.exit(main())
