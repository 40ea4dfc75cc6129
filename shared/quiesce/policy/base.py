"""The base of every policy model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are errors: a typo must never silently disable a hook. Numbers are finite:
    `.inf` and `.nan` are refused wherever a float is read."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
