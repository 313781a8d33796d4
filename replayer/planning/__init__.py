"""Planning a replay: which base, which log, which files, and what a restore may promise."""
