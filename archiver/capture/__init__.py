"""Capture: reading DynamoDB Streams into the change log."""
