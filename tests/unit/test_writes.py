"""The write guard: a write reaches a PLC only when the gateway and the tag both allow it."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.modbus.config import ModbusSource
from gateway.writes import WriteRefused, authorise_write


def source(tags: list[dict[str, Any]]) -> ModbusSource:
    return ModbusSource.model_validate(
        {"name": "press1", "protocol": "modbus", "host": "127.0.0.1", "port": 502, "tags": tags}
    )


@pytest.mark.parametrize(
    ("gateway_writes", "writable"), [(False, True), (True, False), (False, False)]
)
def test_the_guard_refuses_unless_both_allow(
    gateway_writes: bool, writable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    src = source([{"name": "x", "address": "holding:150", "writable": writable}])
    with pytest.raises(WriteRefused, match="refused"):
        authorise_write(gateway_writes, src, src.tags[0], 1)
    assert "refused" in caplog.text  # refused writes are audited too


def test_the_guard_lets_an_allowed_write_through_and_audits_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    src = source([{"name": "x", "address": "holding:150", "writable": True}])
    with caplog.at_level("INFO", logger="plantgate.audit"):
        authorise_write(True, src, src.tags[0], 7)
    assert "write press1/x = 7" in caplog.text
