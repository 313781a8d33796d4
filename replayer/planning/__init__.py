"""Planning a replay: plan and model, export windows, segments, log files, Lambda gaps."""
