"""Rollback: undo, in the live table, every change after a time."""
