"""Start a local mosquitto broker on a free loopback port (for the demo and the tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

INSTALL_HINT = "mosquitto is not installed; run: sudo apt-get install -y mosquitto"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def find_passwd() -> str:
    """Path of mosquitto_passwd (ships with mosquitto)."""
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/sbin")
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


class Mosquitto:
    """A mosquitto process on 127.0.0.1; persistence keeps queued messages across a restart."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persistence: bool = True,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
        autosave_interval: int = 1,
        client_ca: Path | None = None,
        acl_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.persistence = persistence
        self.users = users  # name -> password; anonymous clients are refused when set
        self.tls = tls  # (certificate, key) for a TLS listener
        self.client_ca = client_ca  # with tls: clients must show a certificate this CA signed
        self.acl_file = acl_file  # mosquitto's acl_file: who may publish and read which topics
        # Seconds between saves of the persistence file (0: only when stopped). Every second
        # survives a SIGKILL; a benchmark queueing gigabytes needs the save at stop only.
        self.autosave_interval = autosave_interval
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1"]
        if (
            os.geteuid() == 0
        ):  # as root, mosquitto would drop to user "mosquitto", who cannot read our files
            lines.append("user root")
        if self.tls is not None:
            lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
            if self.client_ca is not None:
                lines += [f"cafile {self.client_ca}", "require_certificate true"]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = self.workdir / "passwords"
            passwords.write_text("")
            for name, password in self.users.items():
                subprocess.run(
                    [find_passwd(), "-b", str(passwords), name, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        lines += [
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.workdir}/",
                f"autosave_interval {self.autosave_interval}",
            ]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err.strip()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        """Stop the broker gracefully (SIGTERM: it saves its persistence file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
