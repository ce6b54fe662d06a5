"""Start a throw-away redis-server on a free loopback port (the cluster's shared store)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from simulators.broker import free_port
from simulators.cluster.process import stop_group

INSTALL_HINT = "redis-server is not installed; run: make cluster-deps"


def find_redis_server() -> str:
    """Path of the redis-server binary (Debian puts it in /usr/bin)."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def answers_ping(port: int) -> bool:
    """True when a Redis on 127.0.0.1:``port`` answers PING (it has loaded and serves)."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
        s.settimeout(0.5)
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


class RedisServer:
    """A redis-server on 127.0.0.1 with its data in its own temporary directory, logs in workdir.

    Nothing is saved to disk: the cluster's nodes are what the tests kill, never Redis.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.datadir: Path | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """redis:// URL of the server."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start Redis and wait until it answers PING."""
        self.datadir = Path(tempfile.mkdtemp(prefix="plantgate-redis-"))
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.datadir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        # Its own process group, so stop() can take the whole group down whatever happens.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}: {err.strip()}"
                )
            if answers_ping(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def pause(self) -> None:
        """Freeze Redis (SIGSTOP): every node's store and routing stall until resume()."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused Redis go on (SIGCONT); it serves what piled up meanwhile."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop Redis and remove its data directory."""
        if self.proc is not None:
            self.resume()  # a stopped process would sit on its SIGTERM until the SIGKILL
            stop_group(self.proc)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
        if self.datadir is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self.datadir = None
