"""The ``celltrack`` command line: one module per command, all parsing and no logic."""
