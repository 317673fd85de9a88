"""The source's next page, read while the engine writes this one."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

from .base import Page

#: How long the reader waits to hand over a page before it checks whether to stop.
HAND_OVER_STEP = 0.1


class ReadAhead:
    """Iterates ``pages`` one page ahead, reading them in a thread of its own.

    At most one page waits here while the engine writes another, so memory stays flat. A
    source error reaches the engine when it asks for the page that failed. :meth:`close`
    (also when iteration ends) stops the reader and closes the source in the reader's
    thread, where its connection lives.
    """

    _END = object()

    def __init__(self, pages: Iterator[Page], *, name: str = "idms-read-ahead") -> None:
        self._pages = pages
        self._handed: queue.Queue[Any] = queue.Queue(maxsize=1)
        #: Leave to read one more page: one at the start, one more each time the engine
        #: takes a page, so the reader is never more than one page ahead.
        self._leave = threading.Semaphore(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Page]:
        return self

    def __next__(self) -> Page:
        if self._stop.is_set():
            raise StopIteration
        item = self._handed.get()
        self._leave.release()
        if item is self._END:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        page: Page = item
        return page

    def close(self) -> None:
        """Stop reading and give the source's connection back (waits for a read under way)."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # a reader waiting to hand a page over
                self._handed.get_nowait()
            self._thread.join(HAND_OVER_STEP)

    def _read(self) -> None:
        try:
            while self._may_read():
                page = next(self._pages, self._END)
                if not self._hand_over(page) or page is self._END:
                    return
        except BaseException as error:  # the engine raises it in its own thread
            self._hand_over(error)
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()

    def _may_read(self) -> bool:
        while not self._stop.is_set():
            if self._leave.acquire(timeout=HAND_OVER_STEP):
                return True
        return False

    def _hand_over(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._handed.put(item, timeout=HAND_OVER_STEP)
                return True
            except queue.Full:
                continue
        return False
