"""Drills: the archive's state at a time, compared item by item with AWS's own copy of it."""
