"""The ``vmwarden`` command line: thin Typer commands over the engine."""
