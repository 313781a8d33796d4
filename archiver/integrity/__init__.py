"""The archive kept whole: checks, repair from the stream, and compaction."""
