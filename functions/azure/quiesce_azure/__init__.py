"""Quiesce on Azure: adapters for the core's ports (managed Run Command hooks, restore points
and incremental snapshots, Event Grid events, Table Storage state) and the Function App."""
