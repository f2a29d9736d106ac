"""`python -m bench` (what `make bench` runs)."""

import os
import sys

# The orchestrator talks gRPC while it starts processes: with gRPC's fork support on, a child
# between fork and exec may restart gRPC's poller on a descriptor that close_fds just closed,
# and abort (grpc/grpc#43157). Our children exec at once, so the support is not needed here.
os.environ["BENCH_GRPC_FORK_SUPPORT_WAS"] = os.environ.get("GRPC_ENABLE_FORK_SUPPORT", "")
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

from bench.main import main  # after the variable above, before gRPC loads

sys.exit(main())
