"""Reading the past and the present: queries, time travel, history, status, verify, diff."""
