"""The engines that fold the archive: DuckDB over Arrow datasets, and Athena over Glue tables."""
