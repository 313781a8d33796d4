"""The replayer's CLI commands: each parses its arguments and calls the library."""
