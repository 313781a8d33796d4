"""The archive format: everything a reader of the archive needs, and nothing else.

``codec`` (canonical DynamoDB JSON, the only place that knows the type tags), ``layout`` (every
path and file name, built and parsed), ``schema`` (Arrow schemas), ``records`` (stream records
→ change rows), ``changefiles`` (change files, their names and resume points), ``manifests``
(snapshots and their ``_manifest.json``), ``coverage`` (``coverage.json``), ``gap_log``
(``gaps.jsonl`` and its recorder), ``erasure_log`` (``erasures.jsonl`` and its keyed hashes),
``tables`` (archived table descriptions), ``exports/`` (native export folders, full and
incremental, JSON and ION → the archive's rows), ``storage`` (the archive root as a
filesystem), ``footers`` and ``chain`` (each change file's footer and the integrity chain they
form), ``statefiles`` (state files read against their schema), ``timefmt`` (times in names and
state files) and ``errors``.

This package imports nothing else of the project (``make lint`` checks it): the replayer, the
Lambda function and anyone querying the archive depend on it alone.
"""
