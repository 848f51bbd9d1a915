"""Start-up hook of the processes that run LiteLLM's code: ``litellm`` and the SDK-backed proxy.

The launcher puts this folder first on their ``PYTHONPATH``, so Python's ``site`` module imports
this file before anything else runs, then the ``sitecustomize`` it shadows, if there is one.

Why: before CPython 3.12 a garbage collection runs inside whichever allocation crosses the
threshold, and that can be one inside ``ContextVar.set()`` while the context's variables are
being rebuilt. A finaliser run by that collection which sets or resets a variable of the same
context frees what the set is still reading (CPython gh-148891) and the process dies of SIGSEGV.
LiteLLM's coroutines reset context variables when a collection closes them; LiteLLM died so,
inside ``ContextVar.set()``, under the test suite. CPython 3.12 collects between bytecodes only.

What: on CPython 3.11, automatic collection is turned off and a daemon thread, the collector
thread, keeps CPython's own schedule every 10 ms. A collection it starts begins between two
bytecodes, never inside a C function, and the finalisers run in that thread's own context, so
they change no variable another thread is setting. ``MEMORY_PROXY_COLLECTOR_THREAD=0`` leaves
Python's own collection as it is.

Standard library only, and what ``site`` has not imported is imported where it is used.
"""

from __future__ import annotations

import gc
import os
import sys

COLLECTOR_THREAD_ENV = "MEMORY_PROXY_COLLECTOR_THREAD"
INTERVAL = 0.01  # seconds between two looks at the allocation counts


class Schedule:
    """CPython 3.11's ``collect_generations`` (Modules/gcmodule.c), with the two counts it keeps
    to itself kept here: a generation is collected once its count passes its threshold, the
    oldest such first, and a full collection waits until the objects promoted since the last one
    are a quarter of those it kept (else full collections would make it quadratic)."""

    def __init__(self, collector=gc) -> None:
        self.gc = collector
        self.long_lived_total = 0  # objects the last full collection kept
        self.long_lived_pending = 0  # objects promoted to the oldest generation since

    def due(self) -> int | None:
        """The generation CPython would collect at its next allocation, or None."""
        (count0, count1, count2), (threshold0, threshold1, threshold2) = self.gc.get_count(), self.gc.get_threshold()
        if not threshold0 or count0 <= threshold0:  # a threshold of 0 turns collection off
            return None
        if count2 > threshold2 and self.long_lived_pending >= self.long_lived_total // 4:
            return 2
        return 1 if count1 > threshold1 else 0

    def step(self) -> int | None:
        """Collect what is due; return the generation collected, or None."""
        generation = self.due()
        if generation == 2:
            self.gc.collect(2)
            self.long_lived_total, self.long_lived_pending = len(self.gc.get_objects(2)), 0
        elif generation == 1:
            young = len(self.gc.get_objects(0)) + len(self.gc.get_objects(1))
            self.long_lived_pending += max(0, young - self.gc.collect(1))  # the survivors move up
        elif generation == 0:
            self.gc.collect(0)
        return generation


def _collect_forever(schedule: Schedule) -> None:
    import time

    while True:
        time.sleep(INTERVAL)
        schedule.step()


def start_collector_thread() -> None:
    """Turn automatic collection off and collect from a daemon thread instead."""
    import threading

    gc.disable()
    threading.Thread(target=_collect_forever, args=(Schedule(),), name="collector", daemon=True).start()


def _run_shadowed() -> None:
    """Run the ``sitecustomize`` this file hides (Debian's python3 has one), as ``site`` would."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if __name__ == "sitecustomize":
    if sys.version_info < (3, 12) and os.environ.get(COLLECTOR_THREAD_ENV, "1") != "0":
        start_collector_thread()
        os.register_at_fork(after_in_child=start_collector_thread)  # a fork keeps no thread but its caller
        print(f"memory_proxy: garbage is collected by the collector thread, not inside allocations "
              f"(CPython gh-148891; {COLLECTOR_THREAD_ENV}=0 turns this off)", file=sys.stderr, flush=True)
    _run_shadowed()
