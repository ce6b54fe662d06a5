"""``make demo``: mosquitto, the simulators and the gateway here, with live values on screen."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from simulators.broker import Mosquitto, free_port


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0
) -> None:
    """Wait until something listens on 127.0.0.1:port, or fail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Start everything, tail the broker until Ctrl-C (or --seconds), stop everything."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-c", "--config", default="config.yaml")
    parser.add_argument("--workdir", default=".demo")
    parser.add_argument("--seconds", type=float, help="stop by itself after this long")
    args = parser.parse_args(argv)

    work = Path(args.workdir).resolve()
    work.mkdir(exist_ok=True)
    modbus_port, opcua_port, logix_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PLANTGATE_DATA": str(work / "data"),
        "PLANTGATE_MODBUS_PORT": str(modbus_port),
        "PLANTGATE_OPCUA_PORT": str(opcua_port),
        "PLANTGATE_LOGIX_PORT": str(logix_port),
    }
    broker = Mosquitto(work / "broker", persistence=False)
    simulator = gateway = None
    try:
        broker.start()
        env["PLANTGATE_MQTT_URL"] = broker.url
        print(f"demo: mosquitto on {broker.url}", flush=True)
        py = sys.executable
        ports = {"modbus": modbus_port, "opcua": opcua_port, "logix": logix_port}
        with open(work / "simulators.log", "wb") as log:
            simulator = subprocess.Popen(
                [py, "-m", "gateway", "simulate", *(f"--{k}-port={v}" for k, v in ports.items())],
                stdout=log,
                stderr=log,
            )
        for name, port in ports.items():
            wait_for_port(port, simulator, f"the {name} simulator", timeout=30)
        listed = ", ".join(f"{name} on 127.0.0.1:{port}" for name, port in ports.items())
        print(f"demo: simulators: {listed} (log: {work / 'simulators.log'})", flush=True)
        with open(work / "gateway.log", "wb") as log:
            gateway = subprocess.Popen(
                [py, "-m", "gateway", "run", "-c", args.config], stdout=log, stderr=log, env=env
            )
        print(
            f"demo: gateway running with {args.config} (log: {work / 'gateway.log'})\n"
            "demo: Ctrl-C stops everything\n",
            flush=True,
        )

        os.environ.update(env)
        from gateway.config import load_config
        from gateway.tail import tail

        config = load_config(args.config)
        if args.seconds:
            timer = threading.Timer(args.seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
        with contextlib.suppress(KeyboardInterrupt):
            tail(config.mqtt)
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\ndemo: stopping", flush=True)
        stop(gateway)
        stop(simulator)
        broker.stop()
    if gateway is not None and gateway.returncode not in (0, None):
        print(
            f"demo: gateway exited with {gateway.returncode}; see {work / 'gateway.log'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
