"""DynamoDB's native export folders (full and incremental, JSON and ION) → the archive's rows."""
