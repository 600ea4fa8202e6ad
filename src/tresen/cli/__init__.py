"""The ``tresen`` command."""
