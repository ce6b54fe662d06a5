"""The plant variables the OPC UA simulator serves, and their stable names."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from simulators.plant import STATES, PlantSnapshot

if TYPE_CHECKING:
    from collections.abc import Callable

NAMESPACE_URI = "urn:plantgate:sim"
# Distinct from NAMESPACE_URI on purpose: asyncua makes the application URI namespace 1, and
# the plant namespace must stay free to move behind ``extra_namespaces``.
APPLICATION_URI = "urn:plantgate:sim:server"
DEFAULT_PORT = 4840
# What a PLC gateway reports when it lost the device behind a tag: the usual "Bad" to inject.
BAD_STATUS = StatusCodes.BadNoCommunication

VT = ua.VariantType


@dataclass(frozen=True, slots=True)
class PlantVariable:
    """One simulated variable: its string node id, OPC UA type and how it follows the plant."""

    name: str  # string node id and folder path, e.g. "Oven.Zone1.Temp"
    vtype: ua.VariantType
    value: Callable[[PlantSnapshot], Any] | None  # None: held value that only clients change
    initial: Any = None  # starting value of a held variable
    writable: bool = False
    array_length: int = 0  # 0: scalar; otherwise a one-dimensional array of this length


def _oven_profile(s: PlantSnapshot) -> list[float]:
    """Temperatures at 10 points along the oven belt: cooler at the ends than in the middle."""
    return [
        round(s.temperature - 6.0 + 8.0 * math.sin(math.pi * (i + 0.5) / 10), 3) for i in range(10)
    ]


# Every OPC UA built-in type a plant's tags use appears at least once, so clients' type
# mapping is exercised end to end.
PLANT_VARIABLES: tuple[PlantVariable, ...] = (
    PlantVariable("Oven.Zone1.Temp", VT.Double, lambda s: s.temperature),
    PlantVariable("Oven.Zone1.Setpoint", VT.Double, None, initial=180.0, writable=True),
    PlantVariable("Oven.Zone2.Temp", VT.Float, lambda s: s.temperature - 2.5),
    PlantVariable("Oven.Profile", VT.Double, _oven_profile, array_length=10),
    PlantVariable("Filler.Counter", VT.UInt32, lambda s: s.counter),
    PlantVariable("Filler.TotalBottles", VT.UInt64, lambda s: int(s.t * 10)),
    PlantVariable("Filler.Rejects", VT.Int32, lambda s: s.counter // 250),
    PlantVariable("Filler.Speed", VT.UInt16, lambda s: s.speed),
    PlantVariable("Filler.State", VT.Int16, lambda s: s.state),
    PlantVariable(
        "Filler.StateText", VT.LocalizedText, lambda s: ua.LocalizedText(STATES[s.state], "en")
    ),
    PlantVariable(
        "Filler.StateSince", VT.DateTime, lambda s: datetime.fromtimestamp(s.t // 15 * 15, UTC)
    ),
    PlantVariable("Filler.Running", VT.Boolean, lambda s: s.running),
    PlantVariable("Filler.Recipe", VT.String, lambda s: s.recipe),
    PlantVariable(
        "Filler.BatchId", VT.ByteString, lambda s: f"{s.recipe}/{int(s.t // 30)}".encode()
    ),
    PlantVariable("Filler.AlarmWord", VT.UInt16, lambda s: s.alarm_word),
    PlantVariable("Filler.Heartbeat", VT.Byte, lambda s: int(s.t) % 256),
    PlantVariable("Utilities.Pressure", VT.Double, lambda s: s.pressure),
    PlantVariable("Utilities.Ramp", VT.Double, lambda s: s.ramp),
    PlantVariable("Utilities.Sine", VT.Double, lambda s: s.sine),
    PlantVariable("Utilities.Trim", VT.SByte, lambda s: round(s.sine - 50.0)),
    PlantVariable("Utilities.EnergyWh", VT.Int64, lambda s: int(s.t * 12.5)),
    PlantVariable("Utilities.Toggle", VT.Boolean, lambda s: s.toggle),
    PlantVariable("Utilities.Flaky", VT.Double, lambda s: s.sine),
    # Setpoints an MES downloads, one of each type a command can write; kept as written.
    PlantVariable("Recipe.Enabled", VT.Boolean, None, initial=False, writable=True),
    PlantVariable("Recipe.Trim", VT.SByte, None, initial=0, writable=True),
    PlantVariable("Recipe.Station", VT.Byte, None, initial=1, writable=True),
    PlantVariable("Recipe.FillOffset", VT.Int16, None, initial=0, writable=True),
    PlantVariable("Recipe.TargetSpeed", VT.UInt16, None, initial=600, writable=True),
    PlantVariable("Recipe.LotNumber", VT.Int32, None, initial=0, writable=True),
    PlantVariable("Recipe.BatchSize", VT.UInt32, None, initial=1000, writable=True),
    PlantVariable("Recipe.EnergyBudget", VT.Int64, None, initial=0, writable=True),
    PlantVariable("Recipe.TotalTarget", VT.UInt64, None, initial=0, writable=True),
    PlantVariable("Recipe.FillWeight", VT.Float, None, initial=500.0, writable=True),
    PlantVariable("Recipe.Pressure", VT.Double, None, initial=2.5, writable=True),
    PlantVariable("Recipe.Name", VT.String, None, initial="PLAIN-500", writable=True),
    PlantVariable(
        "Recipe.ZoneTemps", VT.Double, None, initial=[180.0] * 4, writable=True, array_length=4
    ),
)


# asyncua scans a parent's references on every node it adds, so thousands of siblings build in
# quadratic time; folders of 100 keep a 10 000-variable benchmark start in seconds.
BULK_GROUP_SIZE = 100


def bulk_names(count: int) -> list[str]:
    """Names of ``count`` benchmark variables: ``Bench.Group00.Var0000``, ``...Var0001``, ..."""
    width = max(4, len(str(count - 1)))
    group_width = max(2, len(str((count - 1) // BULK_GROUP_SIZE)))
    return [
        f"Bench.Group{i // BULK_GROUP_SIZE:0{group_width}d}.Var{i:0{width}d}" for i in range(count)
    ]


def nsu(name: str) -> str:
    """The ``nsu=urn:plantgate:sim;s=<name>`` node id of a simulator variable."""
    return f"nsu={NAMESPACE_URI};s={name}"
