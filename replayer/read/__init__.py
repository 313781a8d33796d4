"""Reading the archive: SQL, time travel, item history, status, verify."""
