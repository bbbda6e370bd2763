"""Slot domains and the error every template step raises.

`SlotSpec` is the domain of one numeric slot (integers by a step, or decimals
with fixed places): it draws a value uniformly, says whether a value belongs
to it, and renders a value as the problem text shows it. `TemplateError`
carries the snake_case reason that becomes a Rejected row's `reason`.
Guarantee: an integer slot only ever yields ints (5.0 in a spec is read as 5),
so `solve` never receives a float for it.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Number = int | float | Fraction


class TemplateError(ValueError):
    """A template is unusable: snake_case `reason`, human `detail`, and the offending `key` when known."""

    def __init__(self, reason: str, detail: str, key: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.key = key


class SlotSpec(BaseModel):
    """Domain of one numeric slot: integers in [min, max] by `step`, or decimals with `places` digits.

    >>> SlotSpec(type="integer", min=1, max=9, step=2).n_values
    5
    >>> SlotSpec(type="decimal", min=0.5, max=2, step=0.25).render(1.5)
    '1.50'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["integer", "decimal"] = Field(description="'integer' or 'decimal' (fixed places).")
    min: int | float = Field(description="Smallest value, inclusive.")
    max: int | float = Field(description="Largest value, inclusive.")
    step: int | float | None = Field(default=None, description="Spacing of values from min; default 1 / 10**-places.")
    places: int | None = Field(default=None, ge=1, le=6, description="Decimal places (decimal slots; default 2).")
    original: int | float | None = Field(default=None, description="The seed problem's value (decoupled templates).")

    @model_validator(mode="before")
    @classmethod
    def _integers_stay_integers(cls, data: Any) -> Any:
        """Read 5.0 as 5 in an integer slot, so solve never receives a float for it."""
        if isinstance(data, dict) and data.get("type") == "integer":
            return {
                key: int(value)
                if key in ("min", "max", "step", "original") and isinstance(value, float) and value.is_integer()
                else value
                for key, value in data.items()
            }
        return data

    @model_validator(mode="after")
    def _check_domain(self) -> SlotSpec:
        if self.type == "integer":
            if self.places is not None:
                raise ValueError("'places' applies to decimal slots only")
            for name in ("min", "max", "step", "original"):
                value = getattr(self, name)
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"{name} of an integer slot must be an integer, got {value}")
        if self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if self.type == "decimal" and self._units_of(self.step_value).denominator != 1:
            raise ValueError(f"step {self.step_value} has more than {self.n_places} decimal places")
        if self.n_values < 1:
            raise ValueError(f"no value between {self.min} and {self.max}")
        return self

    @property
    def n_places(self) -> int:
        """Decimal places of values (0 for integers)."""
        return 0 if self.type == "integer" else (self.places or 2)

    @property
    def step_value(self) -> Fraction:
        """Spacing of the domain's values."""
        if self.step is not None:
            return Fraction(str(self.step))
        return Fraction(1, 10**self.n_places)

    def _units_of(self, value: Fraction | int | float) -> Fraction:
        return Fraction(str(value)) * 10**self.n_places

    @cached_property
    def _grid(self) -> tuple[int, int, int]:
        """(first, count, step) of the domain in units of 10**-places (computed once: draws are hot)."""
        step = int(self._units_of(self.step_value))
        first = math.ceil(self._units_of(self.min))
        last = math.floor(self._units_of(self.max))
        return first, max(0, (last - first) // step + 1), step

    @property
    def n_values(self) -> int:
        """Number of values in the domain."""
        return self._grid[1]

    def draw(self, rng: random.Random) -> int | float:
        """One value drawn uniformly from the domain."""
        first, count, step = self._grid
        units = first + step * rng.randrange(count)
        return units if self.type == "integer" else round(units / 10**self.n_places, self.n_places)

    def contains(self, value: object) -> bool:
        """Whether `value` is one of the domain's values."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "integer" and not float(value).is_integer():
            return False
        first, count, step = self._grid
        units = self._units_of(value)
        return units.denominator == 1 and 0 <= units - first < count * step and (units - first) % step == 0

    def render(self, value: int | float) -> str:
        """The value as it appears in a problem text: fixed places for decimals."""
        return str(int(value)) if self.type == "integer" else f"{value:.{self.n_places}f}"
