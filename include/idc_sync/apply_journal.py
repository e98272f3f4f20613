"""A run killed mid-apply is continued by the next run with nothing sent twice.

The observed-state cache learns what apply did (``observed_cache.record_applied``). A run whose process is
killed never gets there, so the next run would plan its changes again from the stale cache. The journal
is written ahead: before an assignment request is sent its (account, permission set) pair is saved; the
cache is checkpointed every ``checkpoint_seconds`` with what finished, and the journal forgets what the
cache now knows. What a killed run leaves in the journal is exactly the pairs the cache may be wrong
about; the next run marks them (and their permission sets, whose provisioning a create changes) to be read
again before planning (:func:`pairs_to_reread`).

The writer does no I/O itself: it is given ``save_journal`` / ``load_cache`` / ``save_cache``. A journal or
checkpoint that cannot be saved is logged and costs calls, never the apply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from pydantic import BaseModel, Field

from idc_sync.model import AssignmentOp, ObservedState, Operation, OpKind, OpResult, Plan
from idc_sync.observed_cache import ObservedCache, record_applied, split_pair

JOURNAL_STATE = "state/apply_journal.json"


class ApplyJournal(BaseModel):
    run_id: str = ""
    started: dict[str, str] = Field(default_factory=dict)  # op key -> "account|arn", not yet in the cache
    # Creations this run started whose "your access is live" its own notify still owes; emptied by that
    # notify once it has told them (:func:`news_told`). A run killed before (its process, its worker, or
    # a task runner orphaned by a dead worker that finished the apply alone) leaves them to a retry of
    # its apply (:func:`made_by_earlier_try`) or else to the next run (:func:`owed_news`).
    announce: dict[str, AssignmentOp] = Field(default_factory=dict)


def pairs_to_reread(journal: ApplyJournal, run_id: str) -> tuple[set[str], set[str]]:
    """(pairs, permission set ARNs) a run other than ``run_id`` may have changed without the cache
    knowing: it was killed, or its last operations on them failed in an unknown state."""
    if journal.run_id == run_id or not journal.started:
        return set(), set()
    pairs = set(journal.started.values())
    return pairs, {split_pair(p)[1] for p in pairs}


def owed_news(journal: ApplyJournal, run_id: str, observed: ObservedState) -> list[AssignmentOp]:
    """The creations a killed earlier run started that this run's (fresh) reads find in place: their
    records were never told that the access is live, and this run would not tell them either (nothing is
    left to do for them)."""
    if journal.run_id == run_id or not journal.announce:
        return []
    arns = {name: ps.arn for name, ps in observed.permission_sets.items()}
    held = {
        (a.account_id, a.permission_set_arn, a.principal_type, a.principal_id) for a in observed.assignments
    }
    return [
        op
        for op in journal.announce.values()
        if (
            op.account_id,
            op.permission_set_arn or arns.get(op.permission_set_name),
            op.principal_type,
            op.principal_id,
        )
        in held
    ]


def made_by_earlier_try(
    earlier_news: dict[str, AssignmentOp], results: Iterable[OpResult]
) -> list[AssignmentOp]:
    """Creations an earlier, killed try of this run's apply started that this try found already in place:
    the earlier try made them, so this run's records are told that the access is live (the run's
    counts still say "already in place", which is what this try saw)."""
    return [earlier_news[r.key] for r in results if r.status == "already_in_place" and r.key in earlier_news]


def news_told(journal: ApplyJournal | None, run_id: str) -> ApplyJournal | None:
    """The journal once ``run_id``'s notify has told its access news (None: nothing to change)."""
    if journal is None or journal.run_id != run_id or not journal.announce:
        return None
    return journal.model_copy(update={"announce": {}})


def forget_rereads(cache: ObservedCache, journal: ApplyJournal, run_id: str) -> int:
    """Marks what :func:`pairs_to_reread` names as unread in ``cache``; returns how many pairs."""
    pairs, arns = pairs_to_reread(journal, run_id)
    cache.invalidate(arns=arns, pairs=pairs)
    return len(pairs)


class JournalWriter:
    """The apply hooks (``ApplyOptions.on_start`` / ``on_result``) that keep journal and cache in step."""

    def __init__(
        self,
        run_id: str,
        plan: Plan,
        *,
        save_journal: Callable[[ApplyJournal], None],
        load_cache: Callable[[], ObservedCache | None],
        save_cache: Callable[[ObservedCache], None],
        checkpoint_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
        earlier: ApplyJournal | None = None,
    ) -> None:
        self.journal = ApplyJournal(run_id=run_id)
        # A retry of this run's apply (its worker or process died) continues the earlier try's journal:
        # what that try started is still unknown, and the creations it made are still this run's news.
        self.earlier_news: dict[str, AssignmentOp] = {}
        if earlier is not None and earlier.run_id == run_id:
            self.journal.started = dict(earlier.started)
            self.journal.announce = dict(earlier.announce)
            self.earlier_news = dict(earlier.announce)
        self.plan = plan
        self._save_journal, self._load_cache, self._save_cache = save_journal, load_cache, save_cache
        self.checkpoint_seconds = checkpoint_seconds
        self.clock = clock
        self.log = log or logging.getLogger(__name__)
        self._pending: list[OpResult] = []
        self._cache: ObservedCache | None = None
        self._cache_loaded = False
        self._last = clock()
        self._lock = threading.Lock()

    def on_start(self, op: Operation, pair: str) -> None:
        """Saved before the request is sent: a kill after this line leaves the pair in the journal."""
        with self._lock:
            self.journal.started[op.key] = pair
            if isinstance(op, AssignmentOp) and op.kind is OpKind.CREATE_ASSIGNMENT:
                self.journal.announce[op.key] = op
            self._write_journal()

    def on_result(self, result: OpResult) -> None:
        with self._lock:
            self._pending.append(result)
            if self.clock() - self._last >= self.checkpoint_seconds:
                self._checkpoint()

    def close(self, results: Iterable[OpResult]) -> list[AssignmentOp]:
        """The apply ended: every result goes into the cache; the journal keeps only what did not end
        in a known state (a failed request may still have changed its pair). Returns the creations an
        earlier try of this run made that this try found in place (:func:`made_by_earlier_try`)."""
        with self._lock:
            self._pending = list(results)
            owed = made_by_earlier_try(self.earlier_news, self._pending)
            self._checkpoint()  # ``announce`` stays until this run's notify has told it
            return owed

    def _checkpoint(self) -> None:
        self._last = self.clock()
        batch, self._pending = self._pending, []
        if not self._cache_loaded:
            self._cache, self._cache_loaded = self._load_cache(), True
        if self._cache is not None and any(r.done for r in batch):
            record_applied(self._cache, self.plan, batch, now=time.time())
            try:
                self._save_cache(self._cache)
            except Exception as exc:  # the journal still names these pairs: the next run re-reads them
                self.log.warning("could not checkpoint the observed-state cache: %s", exc)
                return
        for r in batch:
            if r.done or r.status in ("skipped", "deferred"):
                self.journal.started.pop(r.key, None)
        self._write_journal()

    def _write_journal(self) -> None:
        try:
            self._save_journal(self.journal)
        except Exception as exc:
            self.log.warning("could not save the apply journal: %s", exc)
