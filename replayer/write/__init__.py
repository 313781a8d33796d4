"""Writing a restored table: sinks, batch writers, target table, warm, restore state, settings."""
