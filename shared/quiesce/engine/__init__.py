"""The consistency-group engine: phases over a serializable run record."""

from quiesce.engine.recover import find_abandoned, recover_abandoned, recover_run
from quiesce.engine.result import run_result
from quiesce.engine.run import RunInterrupted, run_group

__all__ = [
    "RunInterrupted",
    "find_abandoned",
    "recover_abandoned",
    "recover_run",
    "run_group",
    "run_result",
]
