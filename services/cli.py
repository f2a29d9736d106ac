"""Command-line entry points: `python -m services.cli run` (what `make run` calls)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
from types import FrameType

import typer
from sqlalchemy.engine import URL

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
    one_process: bool = typer.Option(
        False,
        "--one-process",
        help="Run the relay and projector as threads of this process instead of a child "
        "process (RETAIL_PIPELINE_PROCESS=0 does the same).",
    ),
) -> None:
    """Starts the backend (and a local Kafka broker unless RETAIL_KAFKA_BOOTSTRAP is set).

    With every role, the relay and projector run in a child process of their own."""
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
        if one_process:
            settings = settings.with_changes(pipeline_process=False)
        elif "RETAIL_PIPELINE_PROCESS" not in os.environ:
            settings = settings.with_changes(pipeline_process=True)
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
        settle_collector()
        typer.echo(
            f"retail backend up: roles {','.join(sorted(settings.roles))}; "
            f"gRPC on {settings.grpc_address}; data in {settings.data_dir.resolve()}. Ctrl-C stops."
        )
        while not stop.wait(1.0):
            if backend.pipeline is not None:
                backend.pipeline.check()
    except BrokerError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        backend.stop()
        typer.echo("retail backend stopped")


def settle_collector() -> None:
    """Once started, the objects of the imports and the set-up (some 110,000 of them in the
    API) live as long as the process: collected once, then frozen, they are left out of every
    later collection. Measured in the API during a flash sale then GetStock at 1,600 calls/s:
    six full collections of up to 95 ms each before; none, and no pause above 4 ms, after."""
    gc.collect()
    gc.freeze()


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


dead_letters = typer.Typer(no_args_is_help=True, help="Records the projector could not apply.")
cli.add_typer(dead_letters, name="dead-letters")


def _settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@dead_letters.command("list")
def list_dead_letters() -> None:
    """Lists the dead-letter topic: where each record came from and why it was refused."""
    from services.bus import DEAD_LETTER_TOPIC, read_dead_letters  # noqa: PLC0415

    settings = _settings_or_exit()
    topic = settings.topic_namespace + DEAD_LETTER_TOPIC
    letters = read_dead_letters(settings.kafka_bootstrap_servers, topic)
    for letter in letters:
        typer.echo(
            f"{letter.partition}:{letter.offset}\t{letter.source_topic}[{letter.source_partition}]"
            f"@{letter.source_offset}\t{letter.reason}"
        )
    typer.echo(f"{len(letters)} dead letters on {topic}")


@dead_letters.command("replay")
def replay_dead_letters(
    source_topic: str = typer.Option("", help="Only records that came from this topic."),
) -> None:
    """Sends dead letters back to the topics they came from, for a fixed projector to apply.
    Replaying is safe: events already applied are dropped by stream version."""
    from services.bus import DEAD_LETTER_TOPIC, EnvelopeProducer, read_dead_letters  # noqa: PLC0415

    settings = _settings_or_exit()
    topic = settings.topic_namespace + DEAD_LETTER_TOPIC
    producer = EnvelopeProducer(settings.kafka_bootstrap_servers, client_id="retail-replay")
    try:
        chosen = [
            letter
            for letter in read_dead_letters(settings.kafka_bootstrap_servers, topic)
            if letter.source_topic and (not source_topic or letter.source_topic == source_topic)
        ]
        for letter in chosen:
            producer.send(letter.source_topic, letter.key, letter.value).get(timeout=30)
    finally:
        producer.close()
    typer.echo(f"replayed {len(chosen)} dead letters")


@cli.command()
def rebuild(
    target: str = typer.Option(
        "", help="SQLAlchemy URL to rebuild into (default: a new SQLite file beside the views)."
    ),
    swap: bool = typer.Option(
        True, help="Switch the live SQLite views to the rebuilt file (keeps the old as .previous)."
    ),
    compare: bool = typer.Option(True, help="Compare the rebuilt views with the live ones."),
) -> None:
    """Replays every event topic from the start into fresh tables, then switches over.

    Run it with the backend stopped (the rebuilt file replaces the live one); in the embedded
    mode it starts the local broker itself. With --no-swap it may run beside a live backend."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    from services.localkafka import LocalKafka  # noqa: PLC0415

    settings = _settings_or_exit()
    live_url = make_url(settings.views_database_url)
    if not target:
        if live_url.get_backend_name() != "sqlite" or not live_url.database:
            typer.echo("error: give --target for views that are not a SQLite file", err=True)
            raise typer.Exit(2)
        target = f"sqlite:///{live_url.database}.rebuild"
    with contextlib.ExitStack() as stack:
        if not settings.kafka_bootstrap and not _port_open(settings.kafka_port):
            stack.enter_context(
                LocalKafka(
                    settings.data_dir / "kafka",
                    port=settings.kafka_port,
                    controller_port=settings.kafka_controller_port,
                )
            )
        _rebuild(settings, target, live_url, swap=swap, compare=compare)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _rebuild(settings: Settings, target: str, live_url: URL, *, swap: bool, compare: bool) -> None:
    import os  # noqa: PLC0415

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    from projections.db import make_engine  # noqa: PLC0415
    from projections.rebuild import differences  # noqa: PLC0415
    from projections.rebuild import rebuild as replay  # noqa: PLC0415
    from services.bus import topic_names  # noqa: PLC0415

    engine = make_engine(target)
    # Redrawn at each progress report rather than by rich's refresh thread: from a process
    # with no other thread, the rebuild forks its replaying processes instead of spawning them.
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), auto_refresh=False,
    ) as bar:  # fmt: skip
        task = bar.add_task("replaying events", total=None)
        result = replay(
            settings.kafka_bootstrap_servers,
            topic_names(settings.topic_namespace),
            engine,
            progress=lambda done, total: bar.update(
                task, completed=done, total=total, refresh=True
            ),
        )
    rate = result.records / result.seconds if result.seconds else 0.0
    typer.echo(
        f"rebuilt from {result.records} records: {result.applied} events applied, "
        f"{result.dead_letters} refused, in {result.seconds:.1f}s ({rate:,.0f} records/s)"
    )
    if compare:
        live = make_engine(settings.views_database_url)
        diff = differences(live, engine)
        live.dispose()
        if diff:
            typer.echo("the rebuilt views differ from the live ones:\n" + "\n".join(diff))
            engine.dispose()
            raise typer.Exit(1)
        typer.echo("the rebuilt views equal the live ones, row for row")
    engine.dispose()
    rebuilt_url = make_url(target)
    if (
        swap
        and rebuilt_url.get_backend_name() == "sqlite"
        and live_url.get_backend_name() == "sqlite"
    ):
        assert live_url.database and rebuilt_url.database
        # A SQLite database is its file with its -wal and -shm companions: move them together.
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(live_url.database + suffix):
                os.replace(live_url.database + suffix, live_url.database + ".previous" + suffix)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(rebuilt_url.database + suffix):
                os.replace(rebuilt_url.database + suffix, live_url.database + suffix)
        typer.echo(f"switched: {live_url.database} is the rebuilt view (old one kept as .previous)")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
