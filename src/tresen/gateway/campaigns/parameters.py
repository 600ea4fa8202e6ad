"""A campaign's template parameters filled in per recipient: ``{{attribute}}`` from the
recipient's attributes, ``{{name}}`` and ``{{phone}}`` from the recipient itself."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MissingAttribute", "fill_components", "placeholders"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


class MissingAttribute(ValueError):
    """A recipient lacks an attribute the parameters need: never sent with a hole."""

    def __init__(self, attribute: str) -> None:
        super().__init__(f"no value for {{{{{attribute}}}}}")
        self.attribute = attribute


def placeholders(components: list[dict[str, Any]]) -> set[str]:
    """Every ``{{attribute}}`` the components name."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.update(PLACEHOLDER.findall(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(components)
    return found


def fill_components(
    components: list[dict[str, Any]], values: dict[str, str]
) -> list[dict[str, Any]]:
    """``components`` with every ``{{attribute}}`` in a string replaced by its value; raises
    :class:`MissingAttribute` for the first one without a non-empty value."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: _value(values, m.group(1)), value)
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value

    filled: list[dict[str, Any]] = fill(components)
    return filled


def _value(values: dict[str, str], attribute: str) -> str:
    value = values.get(attribute)
    if value is None or not value.strip():
        raise MissingAttribute(attribute)
    return value
