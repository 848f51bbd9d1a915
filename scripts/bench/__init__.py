"""The benchmark, run by ``python3 scripts/benchmark.py`` (docs/benchmark.md), by concern:

- ``cli.py``       the options and which parts they select
- ``run.py``       the run: each part in turn, then the targets judged, printed and written as JSON
- ``targets.py``   the targets as data (one table: key, part, what is compared, bound, unit, issue)
- ``render.py``    what a run prints, one section per part
- ``stacks.py``    what the parts start: the emulator, ``up --detach`` instances, the OTLP sink,
                   other commits checked out into a temporary git worktree
- ``load.py``      load generators: wrk, Python processes, one httpx client
- ``streams.py``   streamed answers timed event by event, chunk delays, waking from idle
- ``common.py``    ports, medians, the machine, logging
- the parts: ``proxies.py`` (the seven paths), ``startup.py`` (first requests and restarts),
  ``launcher.py`` (``--help``/``status`` against a reference commit), ``alone.py`` (the memory
  proxy alone: usage record on/off, tracing off/on), ``stats.py`` (``stats`` over a large store)
- ``otlp_sink.py`` an OTLP/HTTP sink that discards every export (run as a script)
"""
