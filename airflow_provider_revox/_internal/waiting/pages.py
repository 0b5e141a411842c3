"""Reading a ``POST /call/search`` by page number and proving the read saw every order it owes.

The API pages by number (``page``, ``page_size``) and reports a ``total_count``; it offers no
cursor and no snapshot, so the results can move while they are read: an order that ends (sorted
by ``updated_at``) or is placed (sorted by ``created_at``) lands at the head and pushes every
order one place down; an order that stops matching pulls every later one up; a faulty API may
answer page 0 whatever page is asked. This module is the bookkeeping of such a read, pure (no
I/O, no clock): the caller sends the requests and hands each page to a :class:`PageWalk`.

The scheme:

* A *pass* reads pages 0, 1, 2... and keeps every order under its id: an order met twice is
  handed out once. A pass never stops because a page repeats what it already read (orders
  pushed down by a shift do that); it stops at the end of the results (a short page, or as many
  distinct orders as the API reports), at a caller's stop (an incremental read's watermark), or
  at a bound: ``ceil(total / page_size) +`` :data:`EXTRA_PAGES` pages, or :data:`STALE_PAGES`
  full pages in a row that bring nothing new (an API that ignores ``page``). A bound is never a
  proof.
* Why shifts towards later pages cannot hide an order: while no order leaves the results, an
  order only ever moves to a later position, and the pass's window only moves forward; an order
  not yet read stays at or after the window until the window reaches it, and the last page (short,
  or at the stop) covers everything after. So a pass that reaches its end has read every order
  that matched from its first page to its last.
* **A full read** (every order matching the filters) is proven when one pass reached the end,
  ``total_count`` never fell between two of its pages (a fall is an order that left, which can
  pull an unread one onto a page already read), and the orders read (over every pass) are at
  least the ``total_count`` of that pass's first page.
* **A read down to a stop** (the orders changed since a watermark, newest first) is proven when
  one pass reached its stop or the end, and either saw no movement (no order twice, the same
  ``total_count`` on every page), or found no *owed* order (one that ended before the read
  began) the earlier passes had not read: a pass after a movement reads again from the head,
  where an order that moved under the previous pass now is. Orders that end while the read runs
  are not owed (the next read takes them), so a busy API costs one pass more, not a failure.
* Otherwise the read starts a new pass (handing out only orders not handed out yet), up to
  :data:`MAX_PASSES`; then the caller raises
  :class:`~airflow_provider_revox.exceptions.RevoxIncompleteReadError`, naming the gap.

What page numbers cannot show: between the same two page reads, an order that leaves the results
ahead of the reader while another enters behind it keeps ``total_count`` and hides one order from
a full read. Exports by status name terminal statuses, which an order never leaves.

Memory is bounded by the pages read: each pass reads at most its bound, and only ids are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airflow_provider_revox._internal.core.call import Call

#: Passes over the results before a read that cannot be proven complete fails.
MAX_PASSES = 3
#: Pages a pass may read beyond what ``total_count`` needs: orders that shift in while it reads.
EXTRA_PAGES = 3
#: Full pages in a row that bring no order new to the pass: the API does not page; the pass ends.
STALE_PAGES = 3


@dataclass
class _Pass:
    first_total: int | None = None
    last_total: int | None = None
    pages: int = 0
    stale: int = 0
    fell: bool = False
    moved: bool = False
    new: int = 0
    ended: str | None = None  # "end", "stop" or "bound"


class PageWalk:
    """The bookkeeping of one paged read (see the module docstring); feed it each page.

    Args:
        page_size: orders per page asked for.
        full: True for a full read (proven by counts), False for a read down to a stop.
        capped: the caller asks for pages larger than the API may serve and reads
            :attr:`page_size` before each request: a first page shorter than asked while
            ``total_count`` says more match is the API's own limit, and the read goes on at that
            size; a later page shorter than the count allows is a movement, never an end proven.
    """

    def __init__(self, page_size: int, *, full: bool, capped: bool = False) -> None:
        """Start the first pass at page 0."""
        self.page_size = page_size
        self.full = full
        self.capped = capped
        self.passes = 0
        self.read: set[str] = set()
        self.last_total: int | None = None
        self._pass = _Pass()
        self._in_pass: set[str] = set()
        self._proven = False

    @property
    def page(self) -> int:
        """The page number to read next."""
        return self._pass.pages

    @property
    def pass_done(self) -> bool:
        """Whether the current pass has ended."""
        return self._pass.ended is not None

    @property
    def proven(self) -> bool:
        """Whether a pass that ended proved the read complete."""
        return self._proven

    @property
    def more_passes(self) -> bool:
        """Whether the read is unproven and another pass is allowed."""
        return not self._proven and self.passes < MAX_PASSES

    def take(
        self,
        calls: Sequence[Call],
        total_count: int,
        *,
        stop: bool = False,
        owed: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Record one page of the current pass; return its orders not handed out yet (once each).

        Args:
            calls: the page's orders, in the API's order.
            total_count: the page's ``total_count``.
            stop: the page holds the caller's stop (an order past the watermark): the pass ends.
            owed: which orders the read owes (a read down to a stop: those that ended before it
                began); a later pass that finds none it had not read proves the read. Default: all.
        """
        state = self._pass
        if state.first_total is None:
            state.first_total = total_count
        elif state.last_total is not None and total_count != state.last_total:
            state.moved = True
            state.fell = state.fell or total_count < state.last_total
        state.last_total = self.last_total = total_count
        state.pages += 1
        fresh: list[Call] = []
        new_in_pass = 0
        for call in calls:
            if call.id in self._in_pass:
                state.moved = True
                continue
            self._in_pass.add(call.id)
            new_in_pass += 1
            if call.id not in self.read:
                self.read.add(call.id)
                fresh.append(call)
        state.new += sum(1 for call in fresh if owed is None or owed(call))
        short = len(calls) < self.page_size
        if short and self.capped and len(calls) < total_count:
            if calls and state.pages == 1 and self.passes == 0:
                # Fewer than asked while more match: the API's page limit. Page on at its size.
                self.page_size, short = len(calls), False
            elif (state.pages - 1) * self.page_size + len(calls) < total_count:
                state.moved = True  # a page ends before the count says the results do
        state.stale = state.stale + 1 if not short and new_in_pass == 0 else 0
        if stop:
            self._end("stop")
        elif short or (self.full and len(self._in_pass) >= total_count):
            self._end("end")
        elif state.stale >= STALE_PAGES or state.pages >= self._bound(total_count):
            self._end("bound")
        return fresh

    def next_pass(self) -> None:
        """Start another pass from page 0 (orders already handed out are not handed out again)."""
        self._pass = _Pass()
        self._in_pass = set()

    def gap(self) -> str:
        """What the unproven read is missing, for an error message."""
        total = self.last_total
        told = (
            f"{len(self.read)} distinct call(s) of the {total} the API reports"
            if self.full
            else (f"{len(self.read)} distinct call(s)")
        )
        why = (
            "the pages read hold fewer calls than the API reports, or the results moved"
            if self.full
            else "the results kept moving, or the pages never reached the watermark"
        )
        return f"read {told} in {self.passes} pass(es) of POST /call/search: {why}"

    def _bound(self, total: int) -> int:
        return -(-max(total, self.last_total or 0) // self.page_size) + EXTRA_PAGES

    def _end(self, how: str) -> None:
        state = self._pass
        state.ended = how
        self.passes += 1
        reached = how in ("end", "stop")
        if self.full:
            first = state.first_total or 0
            self._proven = reached and not state.fell and len(self.read) >= first
        else:
            self._proven = reached and (not state.moved or (self.passes > 1 and state.new == 0))
