"""Use cases, configuration, the gRPC adapter, the outbox relay and the entry points."""

import os

# What this package starts (the relay+projector process, the local broker) execs right after
# fork, so gRPC's fork support is not needed; with it on, a child between fork and exec may
# restart gRPC's poller on a descriptor that close_fds just closed and abort (grpc/grpc#43157;
# seen here as SIGABRT with "epoll_wait error: Bad file descriptor" when a process that talks
# gRPC started others). Set here, before any module of the package loads gRPC, for every
# process that uses it (`services.cli`, a backend run in-process); a caller's setting is kept.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
