"""Tools operators call: the sandboxed Python runner and the calculator."""
