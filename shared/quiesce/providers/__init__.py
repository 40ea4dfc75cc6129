"""Providers: the adapters that implement the engine's ports (quiesce.ports) for one platform.

`local` (this machine: folders, local processes, SQLite) needs nothing beyond the standard
library and pydantic; cloud providers live in their own packages with their own SDKs.
"""
