"""The replayer's command-line commands: argument parsing and the run, nothing else."""
