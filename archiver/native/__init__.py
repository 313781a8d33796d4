"""DynamoDB's native protection, managed: point-in-time recovery, on-demand backups, and
requesting native exports (snapshots, incremental chains, drills)."""
