"""Command-line entry points: `python -m services.cli run` (what `make run` calls)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import typer

from services.config import Settings, SettingsError
from services.localkafka import BrokerError

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Omnichannel retail backend.")


@cli.callback()
def _root() -> None:
    """Omnichannel retail backend: write side, Kafka relay, projector and gRPC API."""


@cli.command()
def run(
    roles: str = typer.Option(
        "", help="Comma-separated subset of api,relay,projector (default: all)."
    ),
    address: str = typer.Option("", help="gRPC listen address (default 127.0.0.1:50051)."),
) -> None:
    """Starts the backend (and a local Kafka broker unless RETAIL_KAFKA_BOOTSTRAP is set)."""
    from services.runtime import Backend  # noqa: PLC0415 - keep `--help` fast

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        if roles:
            settings = settings.with_changes(roles=frozenset(r.strip() for r in roles.split(",")))
        if address:
            settings = settings.with_changes(grpc_address=address)
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    backend = Backend(settings)
    try:
        backend.start()
        typer.echo(
            f"retail backend up: roles {','.join(sorted(settings.roles))}; "
            f"gRPC on {settings.grpc_address}; data in {settings.data_dir.resolve()}. Ctrl-C stops."
        )
        while not stop.wait(1.0):
            pass
    except BrokerError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        backend.stop()
        typer.echo("retail backend stopped")


@cli.command()
def health(
    address: str = typer.Option("127.0.0.1:50051", help="The server to ask."),
    timeout: float = typer.Option(3.0, help="Seconds to wait for the answer."),
) -> None:
    """Exits 0 when the server reports SERVING (for container health checks and scripts)."""
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as error:
            typer.echo(f"{address}: {error.code().name} {error.details()}", err=True)
            raise typer.Exit(1) from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    typer.echo(f"{address}: {status}")
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        raise typer.Exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
