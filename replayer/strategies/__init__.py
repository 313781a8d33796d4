"""Restore strategies: the choice, replay, native restores, ImportTable, and their costs."""
