"""The trace store: one SQLite file per provider store (spec §9)."""
