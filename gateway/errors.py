"""The gateway's small error tree; library errors are translated into it at the boundary."""

from __future__ import annotations


class PlantgateError(Exception):
    """Base of every error plantgate raises on purpose."""

    retryable: bool = False


class ConfigError(PlantgateError):
    """The configuration is invalid; ``problems`` lists every ``path: message`` found."""

    def __init__(self, problems: list[str], file: str | None = None) -> None:
        self.problems = problems
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(
            f"{where}{len(problems)} problem(s) in config:\n  " + "\n  ".join(problems)
        )


class SourceError(PlantgateError):
    """A source (PLC connection) failed."""


class ConnectionLost(SourceError):
    """The connection to a device is gone or could not be made; reconnect with backoff."""

    retryable = True


class DeviceError(SourceError):
    """The device answered but refused a request (e.g. a Modbus exception); the connection lives."""

    retryable = True


class GatewayFailed(PlantgateError):
    """The gateway cannot do its job (a task that may not restart died, or one kept failing)."""


EXIT_OK = 0  # stopped on request (SIGTERM, SIGINT), after a clean flush
EXIT_FATAL = 1  # could not start (e.g. the buffer is unusable) or had to stop: see the log line
EXIT_CONFIG = 2  # the config file is invalid or the command line is wrong: nothing started


class WriteUnconfirmed(DeviceError):
    """A write got no answer in time: the device may or may not have applied it.

    Never retried (a second write could land twice); read the tag back to know.
    """

    retryable = False


class StoreError(PlantgateError):
    """The store-and-forward buffer failed."""


class StoreCorrupt(StoreError):
    """The buffer database failed its integrity check."""


class BrokerError(PlantgateError):
    """The MQTT broker refused us or the connection to it failed."""

    retryable = True


class BrokerRefused(BrokerError):
    """The broker answered CONNACK with a refusal (bad credentials, not authorised...)."""


class MalformedMessage(PlantgateError):
    """A Sparkplug topic or payload that cannot be decoded, or lacks what it must carry."""
