"""Units of the documents' claims, and the two readings of "GB".

The design documents write GB, MB and TB without saying whether they mean 10**9 or 2**30 bytes. A claim
is judged under DEFAULT_READING (decimal: GB = 10**9 bytes, as the SI prefix says); the verdicts also
judge it under the other reading and show both where the reading changes the verdict.

    to_base(2.6, "GB")                      # 2.6e9 bytes (decimal reading)
    to_base(2.6, "GB", reading="binary")    # 2.6 * 2**30 bytes
    from_base(2.6e9, "GB")                  # 2.6
    base_unit("GB/s")                       # "bytes/s"
    reading_matters("GB")                   # True: the value depends on the reading

Every claim's unit must be one of UNITS (tests/test_claims.py checks it). Base units: bytes, bytes/s,
seconds, tokens/s, 1/s, fractions (a percentage is stored as its fraction), counts, joules, USD.
"""
from __future__ import annotations

from dataclasses import dataclass

from zo2bench.errors import UserError

DECIMAL, BINARY = "decimal", "binary"
READINGS = (DECIMAL, BINARY)
DEFAULT_READING = DECIMAL   # the documents never say; SI is what the letters mean

# The factors of each prefix under each reading (bytes).
_BYTE_FACTORS = {
    "B": (1, 1),
    "KB": (10**3, 2**10),
    "MB": (10**6, 2**20),
    "GB": (10**9, 2**30),
    "TB": (10**12, 2**40),
}
# Explicitly binary units mean the same under both readings.
_BINARY_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


@dataclass(frozen=True)
class Unit:
    name: str       # as claims write it
    base: str       # the unit measured values are stored in
    factor: float   # base units per one of this unit (decimal reading for byte units)
    ambiguous: bool = False  # a byte unit whose factor depends on the reading
    what: str = ""


def _units() -> dict[str, Unit]:
    u = {}
    for name, (dec, _) in _BYTE_FACTORS.items():
        u[name] = Unit(name, "bytes", dec, ambiguous=name != "B", what="memory")
        u[f"{name}/s"] = Unit(f"{name}/s", "bytes/s", dec, ambiguous=name != "B", what="bandwidth")
    for name, f in _BINARY_UNITS.items():
        u[name] = Unit(name, "bytes", f, what="memory")
        u[f"{name}/s"] = Unit(f"{name}/s", "bytes/s", f, what="bandwidth")
    # Growth rates "GB per billion parameters": bytes per parameter under the base.
    u["GB/B params"] = Unit("GB/B params", "bytes/param", 1.0, ambiguous=True, what="growth")
    u["MB/B params"] = Unit("MB/B params", "bytes/param", 1e-3, ambiguous=True, what="growth")
    for name, base, f, what in [
        ("params", "params", 1, "count"), ("layers", "layers", 1, "count"), ("blocks", "blocks", 1, "count"),
        ("iterations", "iterations", 1, "count"), ("epochs", "epochs", 1, "count"),
        ("B params", "params", 1e9, "count"), ("T params", "params", 1e12, "count"),
        ("tokens/s", "tokens/s", 1, "speed"), ("it/s", "1/s", 1, "speed"),
        ("s", "s", 1, "time"), ("ms", "s", 1e-3, "time"), ("hours", "s", 3600, "time"),
        ("months", "s", 30 * 86400, "time"),
        ("x", "ratio", 1, "ratio"), ("%", "ratio", 0.01, "ratio"), ("fraction", "ratio", 1, "ratio"),
        ("bytes/param", "bytes/param", 1, "density"),
        ("J/token", "J/token", 1, "energy"), ("W", "W", 1, "power"),
        ("USD", "USD", 1, "money"), ("USD/hour", "USD/s", 1 / 3600, "money"),
        ("bool", "bool", 1, "flag"), ("GPUs", "GPUs", 1, "count"),
    ]:
        u[name] = Unit(name, base, f, what=what)
    return u


UNITS: dict[str, Unit] = _units()


def unit(name: str) -> Unit:
    try:
        return UNITS[name]
    except KeyError:
        raise UserError(f"unknown unit '{name}'; known: {', '.join(sorted(UNITS))}") from None


def base_unit(name: str) -> str:
    return unit(name).base


def reading_matters(name: str) -> bool:
    """True where the unit's size depends on reading GB as 10**9 or 2**30 bytes."""
    return unit(name).ambiguous


def factor(name: str, reading: str = DEFAULT_READING) -> float:
    """Base units per one `name` under `reading`."""
    if reading not in READINGS:
        raise UserError(f"unknown reading '{reading}'; use {' or '.join(READINGS)}")
    u = unit(name)
    if not u.ambiguous or reading == DECIMAL:
        return u.factor
    prefix = name.split("/")[0]
    dec, binary = _BYTE_FACTORS[prefix]
    return u.factor * binary / dec


def to_base(value, name: str, reading: str = DEFAULT_READING):
    """A claim's value (number or (lo, hi)) in its base unit under `reading`."""
    f = factor(name, reading)
    if isinstance(value, (tuple, list)):
        return tuple(v * f for v in value)
    return value * f


def from_base(value, name: str, reading: str = DEFAULT_READING):
    """A base-unit value (number or (lo, hi)) in `name` under `reading`."""
    f = factor(name, reading)
    if isinstance(value, (tuple, list)):
        return tuple(v / f for v in value)
    return value / f


def label(name: str, reading: str = DEFAULT_READING) -> str:
    """How a report names the unit under a reading: 'GB (10^9 B)' or 'GB read as GiB (2^30 B)'."""
    u = unit(name)
    if not u.ambiguous:
        return name
    prefix = name.split("/")[0]
    if reading == DECIMAL:
        return f"{name} (read as 10^{len(str(_BYTE_FACTORS[prefix][0])) - 1} B)"
    return f"{name} (read as {prefix[0]}iB, 2^{_BYTE_FACTORS[prefix][1].bit_length() - 1} B)"
