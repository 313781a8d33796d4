"""Base snapshots, history kept from chained incremental exports, backfill from PITR."""
