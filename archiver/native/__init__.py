"""Native DynamoDB mechanisms the archive builds on: PITR, backups, export requests."""
