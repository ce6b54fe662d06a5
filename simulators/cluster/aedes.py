"""Start a cluster of aedes MQTT brokers sharing sessions through one Redis (failover tests)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from simulators.broker import free_port
from simulators.cluster.process import kill_group, stop_group
from simulators.cluster.redis_server import RedisServer

PROJECT = Path(__file__).resolve().parent  # the node project: package.json, node.mjs
INSTALL_HINT = "the cluster's node packages are not installed; run: make cluster-deps"


def find_node() -> str:
    """Path of the node binary."""
    found = shutil.which("node")
    if found is None:
        raise FileNotFoundError("node is not installed; run: make cluster-deps")
    return found


def node_packages_installed() -> bool:
    """True when ``npm ci`` has installed the node project's packages."""
    return (PROJECT / "node_modules" / "aedes" / "package.json").exists()


def accepts_connections(port: int) -> bool:
    """True when something on 127.0.0.1:``port`` accepts a TCP connection."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class AedesNode:
    """One broker node: a node.js process on a fixed loopback port, its log in the workdir."""

    def __init__(self, name: str, port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the node."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the node's process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, args: list[str], timeout: float) -> None:
        """Start the node process and wait until it accepts connections.

        node.mjs opens its port only once its Redis subscriptions are confirmed, so a node that
        accepts a connection is part of the cluster.
        """
        self._log_file = self.log.open("ab")
        # Its own process group: kill() and stop() take down whatever node leaves behind too.
        self.proc = subprocess.Popen(
            args,
            cwd=PROJECT,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reap()
                tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"aedes node {self.name} exited with {code}: {tail}")
            if accepts_connections(self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"aedes node {self.name} did not listen on {self.port} in {timeout}s")

    def kill(self) -> None:
        """SIGKILL the node: no goodbye to its clients, nothing flushed."""
        if self.proc is not None:
            kill_group(self.proc)
        self._reap()

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): its connections stay open and answer nothing."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen node go on (SIGCONT)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the node cleanly (SIGTERM: it closes its clients and its Redis connections)."""
        if self.proc is not None:
            self.resume()  # a frozen process would sit on its SIGTERM until the SIGKILL
            stop_group(self.proc)
        self._reap()

    def _reap(self) -> None:
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class AedesCluster:
    """``nodes`` aedes brokers on 127.0.0.1 sharing subscriptions, sessions and wills via Redis.

    Each node stores and routes a QoS 1 message before it sends the PUBACK (``stock_puback``
    restores aedes' own order, which loses acknowledged messages when a node is killed).
    Redis runs on a free port with its data in a temporary directory; logs go to ``workdir``.
    ``heartbeat`` (seconds) is how often a node tells the others it is alive: the wills of a
    dead (or frozen) node's clients are published 3 to 7 heartbeats after its last one (aedes'
    own default is 60 s). ``max_session_delivery`` caps the queued messages a reconnecting
    session is sent (aedes-persistence-redis' default, 1,000, strands the rest of a backlog).
    """

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        *,
        heartbeat: float = 1.0,
        stock_puback: bool = False,
        max_session_delivery: int = 1_000_000,
    ) -> None:
        self.workdir = workdir
        self.heartbeat = heartbeat
        self.stock_puback = stock_puback
        self.max_session_delivery = max_session_delivery
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(workdir)
        self.nodes = [
            AedesNode(f"n{i}", free_port(), workdir / f"node-{i}.log") for i in range(nodes)
        ]

    @property
    def urls(self) -> list[str]:
        """mqtt:// URL of every node, in order."""
        return [node.url for node in self.nodes]

    def url(self, i: int) -> str:
        """mqtt:// URL of node ``i``."""
        return self.nodes[i].url

    def port(self, i: int) -> int:
        """TCP port of node ``i``."""
        return self.nodes[i].port

    def start(self, timeout: float = 20.0) -> None:
        """Start Redis, then every node; return once all of them accept connections."""
        if not node_packages_installed():
            raise FileNotFoundError(INSTALL_HINT)
        try:
            self.redis.start(timeout)
            for i in range(len(self.nodes)):
                self.start_node(i, timeout)
        except BaseException:
            self.stop()
            raise

    def start_node(self, i: int, timeout: float = 20.0) -> None:
        """Start node ``i`` (again) on its own port."""
        node = self.nodes[i]
        if node.running:
            raise RuntimeError(f"aedes node {node.name} is already running")
        args = [
            find_node(),
            str(PROJECT / "node.mjs"),
            "--port", str(node.port),
            "--redis", self.redis.url,
            "--node-id", node.name,
            "--heartbeat-ms", str(round(self.heartbeat * 1000)),
            "--max-session-delivery", str(self.max_session_delivery),
        ]  # fmt: skip
        if self.stock_puback:
            args.append("--stock-puback")
        node.start(args, timeout)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``, as a crash or a pulled power cord would."""
        self.nodes[i].kill()

    def pause_node(self, i: int) -> None:
        """Freeze node ``i`` (SIGSTOP), as a hung process or a cut cable would look to a client."""
        self.nodes[i].pause()

    def resume_node(self, i: int) -> None:
        """Let frozen node ``i`` go on."""
        self.nodes[i].resume()

    def stop_node(self, i: int) -> None:
        """Stop node ``i`` cleanly."""
        self.nodes[i].stop()

    def stop(self) -> None:
        """Stop every node, then Redis; nothing of the cluster is left running."""
        self.redis.resume()  # a node stops cleanly only when it can say goodbye to Redis
        for node in self.nodes:
            node.stop()
        self.redis.stop()

    def __enter__(self) -> AedesCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
