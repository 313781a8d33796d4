"""The archive format: everything a reader of the archive needs, and nothing else.

``codec`` (canonical DynamoDB JSON, the only place that knows the type tags), ``ion`` (ION
export values), ``layout`` (every path and file name, built and parsed), ``schema`` (Arrow
schemas), ``records`` (stream records → change rows), ``changefiles`` (change files, their
names and resume points), ``manifests`` (snapshots and their ``_manifest.json``), ``coverage``
(``coverage.json`` and ``gaps.jsonl``), ``tables`` (archived table descriptions), ``exports``
(native export folders → snapshots), ``storage`` (the archive root as a filesystem),
``footers`` and ``chain`` (each change file's footer and the integrity chain they form),
``statefiles`` (state files read against their schema), ``timefmt`` (times in names and state
files) and ``errors``.

This package imports nothing else of the project (``make lint`` checks it): the replayer, the
Lambda function and anyone querying the archive depend on it alone.
"""
