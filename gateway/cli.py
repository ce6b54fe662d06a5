"""The ``plantgate`` command line: run, validate, simulate, tail."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import gc
import json
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import __version__
from gateway.config import Config, load_config
from gateway.errors import EXIT_CONFIG, EXIT_FATAL, EXIT_OK, ConfigError, PlantgateError

DEFAULT_CONFIG = "config.yaml"


def setup_logging(verbose: bool) -> None:
    """Log to stderr; quiet the protocol libraries, which log every failed poll."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("pymodbus", "asyncua", "pycomm3", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if not verbose else logging.WARNING)


def dump_tasks() -> None:
    """Print every asyncio task's stack to stderr (``kill -USR2 <pid>``)."""
    for task in asyncio.all_tasks():
        print(f"--- task {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


def ignore_hangup() -> None:
    """SIGHUP would kill a process by default; where it means nothing, say so and go on."""
    logging.getLogger("plantgate").warning("SIGHUP: nothing to reload here; ignored")


def run_until_signal(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    on_hangup: Callable[[], None] = ignore_hangup,
) -> None:
    """Run ``main(stop)`` on a new event loop; SIGTERM and SIGINT set ``stop``, SIGHUP calls
    ``on_hangup`` (the gateway reloads its tag map)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        loop.add_signal_handler(signal.SIGUSR2, dump_tasks)  # where is every task waiting?
        await main(stop)

    asyncio.run(runner())


def _load(path: str, lenient: bool = False) -> Config | None:
    """The config, or None after printing every problem; warnings are printed too."""
    warnings: list[str] = []
    try:
        config = load_config(path, lenient=lenient, warnings=warnings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None
    for warning in warnings if not lenient else []:
        print(f"{path}: warning: {warning}", file=sys.stderr)
    return config


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a config file; print every problem."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    tags = sum(len(s.tags) for s in config.sources)
    print(f"{args.config}: ok ({len(config.sources)} source(s), {tags} tag(s))")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run the gateway until SIGTERM/SIGINT; see gateway.errors for the exit codes."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from gateway.app import Gateway

    gateway = Gateway(config, Path(args.config))
    # Everything loaded so far (modules, the validated tag map) lives as long as the process:
    # out of the collector's sight, a full collection takes milliseconds instead of stalling
    # the scans for hundreds (measured with 10,000 tags).
    gc.freeze()
    try:
        run_until_signal(gateway.run, on_hangup=gateway.request_reload)
    except PlantgateError as exc:
        # One line that says why, for the operator and the container runtime's log.
        logging.getLogger("plantgate").critical("fatal: %s", exc)
        return EXIT_FATAL
    return EXIT_OK


PROTOCOLS = ("modbus", "opcua", "logix")


def protocol_list(text: str) -> list[str]:
    """``modbus,logix`` -> the simulators to run; an unknown name is refused."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(PROTOCOLS)}"
        )
    return list(dict.fromkeys(names))


def cmd_simulate(args: argparse.Namespace) -> int:
    """Serve the plant model over the simulated protocols until SIGTERM/SIGINT."""
    from simulators.logix import serve_logix
    from simulators.modbus import serve_modbus
    from simulators.opcua import serve_opcua

    simulators = {  # name: (server, port, how a client addresses it)
        "modbus": (serve_modbus, args.modbus_port, "modbus tcp://{}:{}"),
        "opcua": (serve_opcua, args.opcua_port, "opc.tcp://{}:{}"),
        "logix": (serve_logix, args.logix_port, "logix {}:{}"),
    }
    chosen = [(name, *simulators[name]) for name in args.protocols]

    failed: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        servers = [
            asyncio.create_task(serve(args.host, port), name=name)
            for name, serve, port, _ in chosen
        ]
        where = ", ".join(address.format(args.host, port) for _, _, port, address in chosen)
        print(f"simulating the plant: {where}", flush=True)
        await asyncio.wait(
            [asyncio.create_task(stop.wait()), *servers], return_when=asyncio.FIRST_COMPLETED
        )
        # Let the other servers finish starting (or failing) before judging: every failure is
        # reported, not only the first.
        await asyncio.wait(servers, timeout=2.0)
        for task in servers:
            if task.done() and not task.cancelled() and task.exception() is not None:
                failed.append(task.get_name())
                print(f"simulator {task.get_name()} failed: {task.exception()}", file=sys.stderr)
        for task in servers:
            task.cancel()
        await asyncio.gather(*servers, return_exceptions=True)

    run_until_signal(main)
    return EXIT_FATAL if failed else EXIT_OK


def cmd_tail(args: argparse.Namespace) -> int:
    """Print what the gateway publishes."""
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from gateway.tail import tail

    return tail(config.mqtt, args.topic, args.count)


def cmd_health(args: argparse.Namespace) -> int:
    """Report whether the gateway of this config is alive (for HEALTHCHECK and operators)."""
    config = _load(args.config, lenient=True)  # needs no broker secrets
    if config is None:
        return 1
    from gateway.health import check_health, health_path

    max_age = 3 * config.gateway.metrics_interval + 10
    code, report = check_health(health_path(config.gateway.buffer.path), max_age, args.strict)
    print(report, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_buffer_stats(args: argparse.Namespace) -> int:
    """Print the buffer's backlog per source, its size and what was dropped."""
    config = _load(args.config, lenient=True)  # needs no broker secrets
    if config is None:
        return EXIT_CONFIG
    from buffer.inspect import format_stats

    try:
        print(format_stats(config.gateway.buffer.path))
    except (OSError, sqlite3.Error) as exc:
        print(f"buffer stats: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the running gateway of this config to reload it (as SIGHUP does) and say the result."""
    import os
    import time

    from gateway.health import health_path, process_gone

    config = _load(args.config)  # a file it would refuse is refused here first, in full
    if config is None:
        return EXIT_CONFIG
    path = health_path(config.gateway.buffer.path)
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        print(f"reload: no running gateway found ({path} unreadable)", file=sys.stderr)
        return 1
    process = before.get("process", {})
    if before.get("state") != "running" or process_gone(process) or not process.get("pid"):
        print(f"reload: the gateway of {args.config} is not running", file=sys.stderr)
        return 1
    os.kill(int(process["pid"]), signal.SIGHUP)
    was = before.get("config", {})
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            now = json.loads(path.read_text()).get("config", {})
        except (OSError, ValueError):
            continue  # being replaced
        if now != was:
            if now.get("last_error"):
                print(f"reload refused: {now['last_error']}", file=sys.stderr)
                return 1
            print(f"reloaded {args.config} (config {now.get('hash')})")
            return 0
    print(f"reload: no answer from the gateway within {args.timeout:.0f}s", file=sys.stderr)
    return 1


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the write commands the gateway received and what became of each."""
    config = _load(args.config, lenient=True)  # needs no broker secrets
    if config is None:
        return EXIT_CONFIG
    from buffer.inspect import format_audit

    try:
        print(format_audit(config.gateway.buffer.path, args.limit))
    except (OSError, sqlite3.Error) as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Read raw registers once and print every plausible interpretation."""
    from connectors.modbus.probe import probe

    try:
        print(asyncio.run(probe(args.url, args.address, args.unit, args.count)))
    except (ValueError, ConnectionError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_browse(args: argparse.Namespace) -> int:
    """List a controller's or server's tags, or emit a ready-to-paste ``sources:`` entry."""
    parts = urlsplit(args.url)
    try:
        if parts.scheme == "opc.tcp":
            from connectors.opcua.browse import browse as browse_opcua

            print(asyncio.run(browse_opcua(args.url, args.root, args.depth, args.yaml)))
        elif parts.scheme == "logix" and parts.hostname:
            from connectors.logix.browse import browse as browse_logix
            from connectors.logix.config import DEFAULT_PORT

            slot_text = parts.path.strip("/")
            slot = int(slot_text) if slot_text else None
            port = parts.port or DEFAULT_PORT
            print(browse_logix(parts.hostname, port, slot, args.yaml))
        else:
            print("browse: use opc.tcp://HOST:PORT or logix://HOST[:PORT][/SLOT]", file=sys.stderr)
            print(
                "(for Modbus, whose devices hold no tag list, use `plantgate probe`)",
                file=sys.stderr,
            )
            return 1
    except (PlantgateError, ValueError) as exc:
        print(f"browse: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Turn a tag list (simple CSV, Kepware CSV, Studio 5000 L5X) into ready-to-paste YAML."""
    from gateway.importers.command import run

    return run(
        args.file, args.format, args.source, args.protocol, args.host, args.port,
        args.byte_order, args.output,
    )  # fmt: skip


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the tag map's JSON Schema (the repository ships it as plantgate.schema.json)."""
    from gateway.schema_export import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="plantgate", description="Edge data gateway: PLC tags to MQTT."
    )
    parser.add_argument("--version", action="version", version=f"plantgate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", default=DEFAULT_CONFIG, help="tag map (default: config.yaml)"
        )

    p = sub.add_parser("run", help="run the gateway")
    with_config(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="check a config file and list every problem")
    with_config(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("simulate", help="serve the plant over Modbus TCP, OPC UA and Logix")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--modbus-port", type=int, default=5020)
    p.add_argument("--opcua-port", type=int, default=4840)
    p.add_argument("--logix-port", type=int, default=44818)
    p.add_argument(
        "--protocols",
        type=protocol_list,
        default=list(PROTOCOLS),
        help="comma-separated, e.g. modbus (default: modbus,opcua,logix)",
    )
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("browse", help="list an OPC UA server's or Logix controller's tags")
    p.add_argument("url", help="opc.tcp://HOST:PORT or logix://HOST[:PORT][/SLOT]")
    p.add_argument("--root", help="OPC UA: start below this node (default: Objects)")
    p.add_argument("--depth", type=int, default=10, help="OPC UA: levels to walk")
    p.add_argument("--yaml", action="store_true", help="print a ready-to-paste sources: entry")
    p.set_defaults(func=cmd_browse)
    p = sub.add_parser("import", help="turn a CSV, Kepware CSV or L5X tag list into YAML tags")
    p.add_argument("file", help="the tag list (docs/import.md)")
    p.add_argument("--format", choices=("csv", "kepware", "l5x"), help="default: from the file")
    p.add_argument("--source", help="emit a whole sources: entry with this name")
    p.add_argument("--protocol", choices=PROTOCOLS, help="csv: default from the addresses")
    p.add_argument("--host", help="the device's address (with --source)")
    p.add_argument("--port", type=int, help="the device's port (with --source)")
    p.add_argument("--byte-order", help="Modbus: the source's byte_order, e.g. CDAB")
    p.add_argument("-o", "--output", help="write the YAML here (default: stdout)")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("buffer", help="inspect the store-and-forward buffer")
    buffer_sub = p.add_subparsers(dest="buffer_command", required=True)
    p = buffer_sub.add_parser("stats", help="backlog per source, oldest unsent, size, drops")
    with_config(p)
    p.set_defaults(func=cmd_buffer_stats)
    p = sub.add_parser("reload", help="make the running gateway reload its tag map")
    with_config(p)
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for its answer")
    p.set_defaults(func=cmd_reload)
    p = sub.add_parser("audit", help="list the write commands received and their results")
    with_config(p)
    p.add_argument("--limit", type=int, default=100, help="the newest this many (default 100)")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("probe", help="read Modbus registers once and show every interpretation")
    p.add_argument("url", help="modbus://HOST[:PORT]")
    p.add_argument("address", help="e.g. holding:100, 40101, input:3, coil:0")
    p.add_argument("--unit", type=int, default=1)
    p.add_argument("--count", type=int, default=4, help="registers (or bits) to read")
    p.set_defaults(func=cmd_probe)
    p = sub.add_parser("health", help="is the gateway alive? (exit 0 yes, 1 no)")
    with_config(p)
    p.add_argument(
        "--strict", action="store_true", help="exit 2 when the broker or a source is down"
    )
    p.set_defaults(func=cmd_health)
    p = sub.add_parser("schema", help="print the tag map's JSON Schema (for editors)")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("tail", help="print the values the gateway publishes")
    with_config(p)
    p.add_argument("--topic", help="topic filter (default: {topic_prefix}/#)")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.set_defaults(func=cmd_tail)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``plantgate`` command."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: a field diagnosis for a hang.
    with contextlib.suppress(ValueError, OSError):  # no real stderr (e.g. captured in tests)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    with contextlib.suppress(KeyboardInterrupt):
        code: int = args.func(args)
        return code
    return 130


if __name__ == "__main__":
    sys.exit(main())
