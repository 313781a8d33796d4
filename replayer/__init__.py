"""ddb-stream-archive's replayer: everything that recovers or reads from the archive."""
