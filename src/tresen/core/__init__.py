"""Cross-cutting building blocks: settings, logging, clock, ids, errors, database."""
