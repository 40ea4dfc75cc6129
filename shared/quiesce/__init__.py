"""Quiesce: application-consistent, group-consistent backups of VM workloads."""

__version__ = "0.1.0"
