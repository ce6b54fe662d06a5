"""The simulated bottling-line controller program: its UDTs, tags and plant-driven values."""

from __future__ import annotations

from simulators.logix.tags import PlantFn, ProgramSpec, TagDatabase, TagSpec
from simulators.logix.types import (
    BOOL,
    DINT,
    INT,
    LINT,
    LREAL,
    REAL,
    SINT,
    STRING,
    UDINT,
    UINT,
    USINT,
    DataType,
    Field,
    TagValue,
    define_struct,
)
from simulators.plant import STATES

__all__ = ["LIMITS", "MACHINE_STATUS", "PROGRAM_NAME", "RECIPE", "build_database"]

PROGRAM_NAME = "PlantGate_Line1"

# Two-level nesting: Recipe holds a STRING and a Limits struct.
LIMITS = define_struct("Limits", 0x101, [Field("Low", REAL), Field("High", REAL)])
RECIPE = define_struct(
    "Recipe",
    0x102,
    [
        Field("Name", STRING),
        Field("BatchSize", DINT),
        Field("FillVolume", REAL),
        Field("OvenTemp", REAL),
        Field("Limits", LIMITS),
        Field("Steps", INT, 4),
    ],
)
# BOOL members packed into a hidden host SINT, the way Logix lays them out.
MACHINE_STATUS = define_struct(
    "MachineStatus",
    0x103,
    [
        Field("Running", BOOL),
        Field("Faulted", BOOL),
        Field("Blocked", BOOL),
        Field("Starved", BOOL),
        Field("State", SINT),
        Field("Speed", DINT),
        Field("AlarmWord", INT),
        Field("Count", DINT),
    ],
)

TREND_POINTS = 1000  # 4,000 bytes of REAL: more than one reply on any connection


def _int16(word: int) -> int:
    """A 16-bit alarm word as the signed INT a Logix tag holds."""
    return word - 0x10000 if word & 0x8000 else word


def _state_is(name: str) -> PlantFn:
    index = STATES.index(name)
    return lambda s: s.state == index


def _recipe(name: str, batch: int, volume: float, temp: float) -> dict[str, TagValue]:
    return {
        "Name": name,
        "BatchSize": batch,
        "FillVolume": volume,
        "OvenTemp": temp,
        "Limits": {"Low": temp - 10.0, "High": temp + 10.0},
        "Steps": [10, 20, 30, 40],
    }


def _machine_plant() -> dict[str, PlantFn]:
    return {
        "Running": lambda s: s.running,
        "Blocked": _state_is("blocked"),
        "Starved": _state_is("starved"),
        "State": lambda s: s.state,
        "Speed": lambda s: s.speed,
        "AlarmWord": lambda s: _int16(s.alarm_word),
        "Count": lambda s: s.counter,
    }


def _atomic_tags() -> list[TagSpec]:
    return [
        TagSpec("TestBool", BOOL, initial=True),
        TagSpec("TestSint", SINT, initial=-12),
        TagSpec("TestInt", INT, initial=-1234),
        TagSpec("TestDint", DINT, initial=123456),
        TagSpec("TestLint", LINT, initial=9_000_000_000),
        TagSpec("TestUsint", USINT, initial=200),
        TagSpec("TestUint", UINT, initial=60000),
        TagSpec("TestUdint", UDINT, initial=4_000_000_000),
        TagSpec("TestReal", REAL, initial=3.5),
        TagSpec("TestLreal", LREAL, initial=2.718281828459045),
        TagSpec("StatusBits", DINT, initial=0b1010_0000),
        TagSpec("LineName", STRING, initial="Bottling Line 1"),
        # External access Read Only: clients read it, and a write is a privilege violation.
        TagSpec("SpeedLimit", INT, initial=900, access="Read Only"),
    ]


def _array_tags() -> list[TagSpec]:
    return [
        TagSpec("DintArray", DINT, (20,), [i * 10 for i in range(20)]),
        TagSpec("IntMatrix", INT, (4, 5), [r * 10 + c for r in range(4) for c in range(5)]),
        TagSpec(
            "RealCube",
            REAL,
            (2, 3, 4),
            [a * 100.0 + b * 10.0 + c for a in range(2) for b in range(3) for c in range(4)],
        ),
        TagSpec("Trend", REAL, (TREND_POINTS,), [i * 0.25 for i in range(TREND_POINTS)]),
        TagSpec("Messages", STRING, (3,), ["ok", "check filler", "stopped"]),
    ]


def _plant_tags() -> list[TagSpec]:
    scalars: list[tuple[str, DataType, PlantFn]] = [
        ("Ramp", REAL, lambda s: s.ramp),
        ("Sine", LREAL, lambda s: s.sine),
        ("Temperature", REAL, lambda s: s.temperature),
        ("Pressure", REAL, lambda s: s.pressure),
        ("LineSpeed", INT, lambda s: s.speed),
        ("MachineState", SINT, lambda s: s.state),
        ("Running", BOOL, lambda s: s.running),
        ("Toggle", BOOL, lambda s: s.toggle),
        ("TotalCount", LINT, lambda s: s.counter),
    ]
    return [TagSpec(name, dtype, plant={"": fn}) for name, dtype, fn in scalars]


def _udt_tags() -> list[TagSpec]:
    recipes: list[TagValue] = [
        _recipe("COLA_330", 1200, 330.0, 182.0),
        _recipe("COLA_500", 800, 500.0, 184.0),
        _recipe("WATER_1L", 400, 1000.0, 175.0),
    ]
    current: dict[str, PlantFn] = {
        "Name": lambda s: s.recipe,
        "OvenTemp": lambda s: s.temperature,
    }
    return [
        TagSpec("CurrentRecipe", RECIPE, initial=recipes[0], plant=current),
        TagSpec("Recipes", RECIPE, (3,), list(recipes)),
        TagSpec("Line1", MACHINE_STATUS, plant=_machine_plant()),
    ]


def _program_tags() -> list[TagSpec]:
    return [
        TagSpec("BottleCount", DINT, program="MainProgram", plant={"": lambda s: s.counter}),
        TagSpec("Setpoint", REAL, program="MainProgram", initial=72.5),
        TagSpec("StepIndex", INT, program="MainProgram", initial=3),
        TagSpec("CaseCount", DINT, program="Packaging", plant={"": lambda s: s.counter // 24}),
        TagSpec("Enabled", BOOL, program="Packaging", initial=True),
    ]


def build_database() -> TagDatabase:
    """A fresh tag database for the bottling line (each simulator owns its own copy)."""
    specs = _atomic_tags() + _array_tags() + _plant_tags() + _udt_tags() + _program_tags()
    programs = [ProgramSpec("MainProgram"), ProgramSpec("Packaging", ("Pack", "Palletise"))]
    return TagDatabase(specs, programs)
