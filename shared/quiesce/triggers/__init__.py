"""Triggers: the policy's `triggers:` model, the normalized trigger event every cloud event is
converted into, and the router that fires runs (pure apart from calling the engine)."""

from quiesce.triggers.event import TriggerEvent
from quiesce.triggers.model import Trigger

__all__ = ["Trigger", "TriggerEvent"]
