"""One module per ddb-archiver command: its arguments and its run, nothing else."""
