"""The endpoint's two halves, as every operation sees them: which table at which instant
(:class:`~replayer.serve.catalog.Catalog`) and its materialised state
(:class:`~replayer.serve.state.StateStore`).

A fold can still refuse after planning — a log that claims to start at table creation but
does not — and that refusal, like the planner's, is a ``ResourceNotFoundException`` saying
why; a damaged archive file is an ``InternalServerError`` naming it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from archiver.format.errors import ArchiverError
from replayer.exceptions import Refused, ReplayError
from replayer.serve.catalog import Catalog, TableAt, describe_refusal
from replayer.serve.dynamodb_errors import InternalServerError, ResourceNotFoundException
from replayer.serve.state import State, StateStore

log = logging.getLogger(__name__)


class Endpoint:
    def __init__(self, catalog: Catalog, store: StateStore) -> None:
        self.catalog = catalog
        self.store = store

    def resolve(self, name: str) -> TableAt:
        return self.catalog.resolve(name)

    @contextlib.contextmanager
    def state(self, table_at: TableAt) -> Iterator[State]:
        """The materialised state, held while the block reads it."""
        try:
            held = self.store.use(table_at)
            state = held.__enter__()
        except Refused as exc:
            raise ResourceNotFoundException(describe_refusal(table_at.requested, exc)) from exc
        except (ReplayError, ArchiverError) as exc:
            log.error("folding %s failed: %s", table_at.requested, exc)
            raise InternalServerError(f"folding {table_at.requested} failed: {exc}") from exc
        try:
            yield state
        finally:
            held.__exit__(None, None, None)
