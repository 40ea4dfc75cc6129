"""Five-field cron expressions (minute hour day-of-month month day-of-week): validation. Each
provider turns them into the form its scheduler wants."""

from __future__ import annotations

import re

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_ITEM = re.compile(r"^(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?$")


def _value(text: str, name: str, low: int, high: int) -> int:
    names = MONTHS if name == "month" else DAYS if name == "day of week" else []
    upper = text.upper()
    if upper in names:
        return names.index(upper) + (1 if name == "month" else 0)
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside {low}-{high}")
    return value


def validate_cron(expression: str) -> str:
    """Checks a five-field cron expression (minute hour day-of-month month day-of-week)."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            f"schedule {expression!r} needs 5 fields (minute hour day-of-month month "
            f"day-of-week), not {len(parts)}"
        )
    for part, (name, low, high) in zip(parts, FIELDS, strict=True):
        for item in part.split(","):
            match = _ITEM.match(item)
            if match is None:
                raise ValueError(f"{name}: {item!r} is not a cron item")
            body, step = match.groups()
            if step is not None and int(step) == 0:
                raise ValueError(f"{name}: a step of 0 never fires")
            if body != "*":
                ends = [_value(v, name, low, high) for v in body.split("-")]
                if len(ends) == 2 and ends[0] > ends[1]:
                    raise ValueError(f"{name}: range {body} runs backwards")
    return " ".join(parts)
