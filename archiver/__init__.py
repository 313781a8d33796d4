"""ddb-stream-archive's archiver: everything that protects a DynamoDB table's history.

It owns the archive format (``codec``, ``layout``, ``schema``, ``storage``); the replayer
reads that format and never the other way round.
"""

__version__ = "0.1.0"
