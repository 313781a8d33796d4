"""The replayer's CLI commands: argument parsing and the run, nothing else."""
