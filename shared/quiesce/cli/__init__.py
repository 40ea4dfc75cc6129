"""The `quiesce` command line."""
