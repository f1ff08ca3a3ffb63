"""User-level operations on Volume objects."""
