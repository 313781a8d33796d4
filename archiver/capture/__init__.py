"""Capture from DynamoDB Streams: Streams API, stream reader, change writer, poller, many tables."""
