"""The plant model every simulator serves: values that move as pure functions of time."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

RECIPES = ("IDLE", "COLA_330", "COLA_500", "WATER_1L", "CIP_CLEAN")
STATES = ("stopped", "starting", "running", "blocked", "starved")


@dataclass(frozen=True, slots=True)
class PlantSnapshot:
    """One instant of the plant: every simulator derives its values from this."""

    t: float
    counter: int  # bottles made: +10 per second, wraps at 2**31
    ramp: float  # 0.0 .. 100.0 over 60 s, then restarts
    sine: float  # 50 + 25*sin(2*pi*t/30)
    temperature: float  # oven zone temperature, degC, slow sine around 180
    pressure: float  # bar, fast sine around 4
    speed: int  # line speed, bottles/min, steps every 10 s
    state: int  # index into STATES, changes every 15 s
    running: bool  # True while state is "running"
    toggle: bool  # flips every second
    recipe: str  # changes every 30 s
    alarm_word: int  # 16 alarm bits, a walking bit every 2 s


def snapshot(t: float | None = None) -> PlantSnapshot:
    """Return the plant's values at wall-clock time ``t`` (now by default)."""
    now = time.time() if t is None else t
    state = int(now // 15) % len(STATES)
    return PlantSnapshot(
        t=now,
        counter=int(now * 10) % 2**31,
        ramp=round((now % 60.0) / 60.0 * 100.0, 3),
        sine=50.0 + 25.0 * math.sin(2 * math.pi * now / 30.0),
        temperature=180.0 + 5.0 * math.sin(2 * math.pi * now / 120.0),
        pressure=4.0 + 0.5 * math.sin(2 * math.pi * now / 5.0),
        speed=600 + 60 * (int(now // 10) % 5),
        state=state,
        running=STATES[state] == "running",
        toggle=int(now) % 2 == 1,
        recipe=RECIPES[int(now // 30) % len(RECIPES)],
        alarm_word=1 << (int(now // 2) % 16),
    )
