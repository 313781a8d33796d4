"""DynamoDB's native protection, managed: point-in-time recovery and on-demand backups."""
