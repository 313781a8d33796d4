"""Capturing changes: the stream readers, the change-file writer and the runner."""
