"""The bounds every policy text is read within, whatever its format."""

MAX_POLICY_BYTES = 512 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_INT_DIGITS = 30
