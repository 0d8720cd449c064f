"""The in-process side of hot-path timing: `hot_path`, and the memory-mapped file it fills.

A hot path is marked with a decorator or a context manager (sync or async)::

    @hot_path("order_execution", budget_ms=100)
    def execute(order): ...

    async with hot_path("order_execution", budget_ms=100):
        ...

Each call reads `time.perf_counter_ns` twice and bumps three 64-bit words of a
memory-mapped file: no I/O, no thread, no socket, no lock on the way (docs/architecture.md: the
hot path costs the trading process almost nothing). The agent finds the file from the PID
(`hotpath.profiler.hotpath.reader`) and reads it beside its py-spy window.

The file, its layout and its name are described in `layout.py`.

Threads. Every thread that records takes a thread slot once, so each word has one writer and
a plain read-add-write loses nothing without a lock. A slot returns to a free list when its
thread ends and is reused (the counts carry on: the reader only sums). When all private
slots are taken (31 threads recording at once), further threads share the last slot under a
lock: correct, slower, and only for them.

Torn reads. Words are only ever increased, each by one aligned 8-byte store; entries and slots
are published by bumping `paths_used` / `slots_used` after they are ready, and the magic is
written last. A reader therefore sees a slightly stale snapshot, never garbage.

Fork. The child drops the parent's mapping (the parent's file is untouched) and, on its first
record or registration, creates its own file named by its own pid, starting empty, with the
same hot paths. Only the process that created a file removes it: at exit (atexit, and
multiprocessing's exit hook for its children, which skip atexit). A process killed outright
leaves its file behind; no reader takes it for another process's (see the reader), and the
next process that creates a file removes such leftovers: a writer holds a shared `flock` on
its file for its lifetime (taken before the magic is written), so a file with the magic whose
lock can be taken exclusively has no writer left. Locks, unlike pids, mean the same in every
PID namespace that shares /dev/shm.

Limits. `hot_path` raises `HotPathLimitError` for a 65th name: names are fixed in code, so
the error shows at import in the first test run instead of a silent gap in production.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any, ParamSpec, TypeVar

from hotpath.profiler.hotpath.histogram import (
    bucket_index,
)
from hotpath.profiler.hotpath.layout import (
    BUCKETS_WORD,
    MAX_PATHS,
    NAME_BYTES,
    SHARED_SLOT,
    encode_function,
)
from hotpath.profiler.hotpath.shared_file import (
    STRIDE_WORDS,
    SharedFile,
)

P = ParamSpec("P")
R = TypeVar("R")


class HotPathLimitError(RuntimeError):
    """More distinct hot-path names than the shared file has room for (`MAX_PATHS`)."""


class _SlotLease:
    """Held in a thread's locals; gives the slot back when the thread ends."""

    __slots__ = ("free", "slot")

    def __init__(self, free: list[int], slot: int) -> None:
        self.free, self.slot = free, slot

    def __del__(self) -> None:
        self.free.append(self.slot)  # atomic under the GIL: no lock in a finalizer


class _State:
    """Everything of one process (replaced in a forked child)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # registration and slot hand-out: never per call
        self.shared_lock = threading.Lock()  # the shared slot, for threads beyond the rest
        self.mapping: SharedFile | None = None
        self.free: list[int] = []
        self.next_slot = 0

    def ensure_mapping(self) -> SharedFile:
        # Caller holds self.lock.
        if self.mapping is None:
            mapping = SharedFile()
            for hp in _paths:
                mapping.add_path(hp.index, hp._encoded_name, hp.budget_ns)
                if hp.function is not None:
                    mapping.set_function(hp.index, encode_function(*hp.function))
            self.mapping = mapping
        return self.mapping


_state = _State()
_paths: list[HotPath] = []  # in index order; inherited by a forked child
_by_name: dict[str, HotPath] = {}
_thread = threading.local()  # .slot = (words, base word, lock or None); .lease
_failed = False


def _claim_slot() -> tuple[memoryview, int, threading.Lock | None]:
    """Once per thread (and per process): the thread's slot in the shared file."""
    state = _state
    with state.lock:
        mapping = state.ensure_mapping()
        if state.free:
            slot = state.free.pop()
        elif state.next_slot < SHARED_SLOT:
            slot = state.next_slot
            state.next_slot += 1
            mapping.publish_slots(state.next_slot)
        else:
            slot = SHARED_SLOT
    lock = state.shared_lock if slot == SHARED_SLOT else None
    entry = (mapping.words, mapping.slot_base(slot), lock)
    _thread.slot = entry
    if lock is None:
        _thread.lease = _SlotLease(state.free, slot)
    return entry


def _record_failed(exc: BaseException) -> None:
    global _failed
    if not _failed:
        _failed = True
        warnings.warn(f"hotpath: a timing was lost ({exc!r})", RuntimeWarning, stacklevel=3)


class HotPath:
    """A named hot path; use it as a decorator or as a (sync or async) context manager.

    One object per name, reusable anywhere: the start of a `with` block is kept in a context
    variable (not on the object, not per thread), so the same object may be entered from
    several threads, from asyncio tasks that interleave across an `await` inside the block,
    and recursively. A context variable costs ~0.2 µs more per block than a per-thread stack;
    correct durations under asyncio are worth it. (A generator that yields inside the block
    while the same hot path is entered elsewhere in its caller's context is the one case that
    mixes up starts: generators do not get a context of their own.)
    """

    __slots__ = (
        "_encoded_name",
        "_offset",
        "_starts",
        "budget_ms",
        "budget_ns",
        "function",
        "index",
        "name",
    )

    def __init__(self, name: str, budget_ms: float | None, index: int) -> None:
        self.name = name
        self.budget_ms = budget_ms
        self.budget_ns = 0 if budget_ms is None else round(budget_ms * 1_000_000)
        self.index = index
        self._encoded_name = name.encode()
        # (qualname, filename) of the timed code, once known: the first decorated function,
        # or the first function seen entering the `with` block.
        self.function: tuple[str, str] | None = None
        self._offset = index * STRIDE_WORDS
        # A linked stack of starts, (start_ns, outer), per thread and asyncio task.
        self._starts: contextvars.ContextVar[tuple[int, Any] | None] = contextvars.ContextVar(
            f"hotpath.{name}", default=None
        )

    def record(self, ns: int) -> None:
        """Count one duration in nanoseconds. Never raises: timing must not break the call."""
        try:
            try:
                words, base, lock = _thread.slot
            except AttributeError:
                words, base, lock = _claim_slot()
            base += self._offset
            bucket = base + BUCKETS_WORD + bucket_index(ns)
            if lock is None:
                words[bucket] += 1
                words[base] += ns
                if ns > words[base + 1]:
                    words[base + 1] = ns
            else:
                with lock:
                    words[bucket] += 1
                    words[base] += ns
                    if ns > words[base + 1]:
                        words[base + 1] = ns
        except Exception as exc:
            _record_failed(exc)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"hot_path({self.name!r}) cannot time a generator; "
                "use `with hot_path(...)` around the loop that consumes it"
            )
        if not callable(fn):
            raise TypeError(f"hot_path({self.name!r}) decorates a function, not {fn!r}")
        code = getattr(inspect.unwrap(fn), "__code__", None)
        if code is not None:
            self._note_function(code)
        record = self.record
        clock = perf_counter_ns

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = clock()
                try:
                    return await fn(*args, **kwargs)  # type: ignore[misc]
                finally:
                    record(clock() - start)

            return timed_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                record(clock() - start)

        return timed

    def _note_function(self, code: Any) -> None:
        if self.function is not None:
            return
        self.function = (code.co_qualname, code.co_filename)
        with _state.lock:
            if _state.mapping is not None:
                _state.mapping.set_function(self.index, encode_function(*self.function))

    def __enter__(self) -> HotPath:
        if self.function is None:
            self._note_function(sys._getframe(1).f_code)
        starts = self._starts
        starts.set((perf_counter_ns(), starts.get()))
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        end = perf_counter_ns()
        starts = self._starts
        top = starts.get()
        if top is None:
            raise RuntimeError(f"hot_path({self.name!r}) exited without being entered")
        starts.set(top[1])
        self.record(end - top[0])

    async def __aenter__(self) -> HotPath:
        if self.function is None:
            # The awaiting coroutine's frame: this coroutine's frame links back to it.
            self._note_function(sys._getframe(1).f_code)
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        budget = "" if self.budget_ms is None else f", budget_ms={self.budget_ms}"
        return f"hot_path({self.name!r}{budget})"


def hot_path(name: str, budget_ms: float | None = None) -> HotPath:
    """The hot path of this name, registered on first use; a decorator and context manager.

    Calling it again with the same name returns the same object, so `with hot_path(...)` at a
    call site costs a dict lookup. A name first given without a budget takes the first budget
    given later; two different budgets for one name are a ValueError.
    """
    known = _by_name.get(name)
    if known is not None and (budget_ms is None or budget_ms == known.budget_ms):
        return known
    return _register(name, budget_ms)


def _register(name: str, budget_ms: float | None) -> HotPath:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"a hot path needs a non-empty name without NUL, got {name!r}")
    if len(name.encode()) > NAME_BYTES:
        raise ValueError(f"hot path name longer than {NAME_BYTES} bytes of UTF-8: {name!r}")
    if budget_ms is not None and not budget_ms >= 0:
        raise ValueError(f"budget_ms must be a number >= 0, got {budget_ms!r}")
    state = _state
    with state.lock:
        known = _by_name.get(name)
        if known is not None:
            if budget_ms is None or budget_ms == known.budget_ms:
                return known
            if known.budget_ms is not None:
                raise ValueError(
                    f"hot path {name!r} already has budget_ms={known.budget_ms}, not {budget_ms}"
                )
            # Named first without a budget (e.g. a `with` ran before the decorated module was
            # imported): the budget given now is the budget.
            known.budget_ms, known.budget_ns = budget_ms, round(budget_ms * 1_000_000)
            if state.mapping is not None:
                state.mapping.set_budget(known.index, known.budget_ns)
            return known
        if len(_paths) >= MAX_PATHS:
            raise HotPathLimitError(
                f"cannot register hot path {name!r}: the limit is {MAX_PATHS} names per "
                "process (hot-path names must not be built from data, e.g. per symbol)"
            )
        hp = HotPath(name, budget_ms, len(_paths))
        mapping = state.mapping
        if mapping is not None:
            mapping.add_path(hp.index, hp._encoded_name, hp.budget_ns)
        _paths.append(hp)
        _by_name[name] = hp
        if mapping is None:
            state.ensure_mapping()  # the first hot path creates the file
        return hp


def current_file() -> Path | None:
    """This process's histogram file, if it has made one."""
    mapping = _state.mapping
    return mapping.path if mapping is not None and mapping.pid == os.getpid() else None


def _after_fork_in_child() -> None:
    global _state
    parent = _state
    _state = _State()
    # The surviving thread's slot points into the parent's file.
    _thread.__dict__.clear()
    if parent.mapping is not None:
        parent.mapping.drop()


def _remove_file_at_exit() -> None:
    mapping = _state.mapping
    if mapping is not None:
        mapping.remove()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_remove_file_at_exit)
