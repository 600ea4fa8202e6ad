"""Tresen: self-hostable, end-to-end encrypted business messaging."""
