"""One module per ddb-replayer command: its arguments and its run, nothing else."""
