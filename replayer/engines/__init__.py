"""The fold engines: DuckDB over the archive's files, Athena over its Glue tables."""
