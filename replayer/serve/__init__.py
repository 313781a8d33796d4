"""The time-travel endpoint: DynamoDB's own read API, answered from the archive at any instant."""
