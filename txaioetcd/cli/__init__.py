"""Command-line commands beyond ``demo`` and ``server``: one module per command group."""
