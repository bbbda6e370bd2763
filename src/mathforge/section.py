"""The base class of every config section.

It imports nothing of mathforge, so any module can declare its own section
without depending on the modules that compose the sections (`mathforge.config`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
