"""Planning a recovery: which base, which log, which keys — or a clear refusal."""
