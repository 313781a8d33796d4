"""Writing a recovered state: sinks, writers, target tables, restore progress, imports."""
