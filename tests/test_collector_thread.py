"""The start-up hook of the processes that run LiteLLM's code (memory_proxy/child_site/).

The crash it prevents, for real: a collection started inside ``ContextVar.set()`` runs a
finaliser that sets variables of the same context, which frees what the set is still reading
(CPython gh-148891). ``CRASH`` makes that happen on purpose: it puts a finalisable cycle in
the heap, then lowers the threshold so that the collection starts at the first, second, third
or fourth allocation of the next ``set()``. ``PYTHONMALLOC=debug`` fills freed memory, so
reading it crashes at once. Without the hook CPython 3.11 dies of SIGSEGV; with it, nothing
collects inside the set, and the collector thread finalises the cycles later.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from importlib.util import module_from_spec, spec_from_file_location

import pytest

from memory_proxy.launcher.supervisor import CHILD_SITE

ROUNDS = 2000
CRASH = f"""
import contextvars, gc, threading, time

pads = [contextvars.ContextVar(f"pad{{i}}") for i in range(64)]  # a context deep enough to have inner nodes
victims = [contextvars.ContextVar(f"victim{{i}}") for i in range(8)]
finalised_on = []

class Cycle:
    def __init__(self):
        self.me = self

    def __del__(self):
        finalised_on.append(threading.current_thread().name)
        for var in pads:
            var.set(object())

def main():
    for var in pads:
        var.set(object())
    thresholds = gc.get_threshold()
    for i in range({ROUNDS}):
        Cycle()
        gc.set_threshold(gc.get_count()[0] + 1 + i % 4)
        victims[i % 8].set(i)
        gc.set_threshold(*thresholds)

contextvars.copy_context().run(main)
deadline = time.monotonic() + 10
while not gc.isenabled() and len(finalised_on) < {ROUNDS} and time.monotonic() < deadline:  # the thread's turn
    time.sleep(0.01)
print(gc.isenabled(), len(finalised_on), sorted(set(finalised_on)))
"""


def run_python(script: str, path: tuple = (CHILD_SITE,), **env: str) -> subprocess.CompletedProcess:
    """``script`` in a new interpreter with ``path`` as its whole PYTHONPATH (the hook first, by
    default), this environment without the hook's switch, and ``env``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMORY_PROXY_COLLECTOR_THREAD")}
    environ.update(env, PYTHONPATH=os.pathsep.join(map(str, path)))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environ)


def run_crash(*, hook: bool, **env: str) -> subprocess.CompletedProcess:
    return run_python(CRASH, (CHILD_SITE,) if hook else (), **{"PYTHONMALLOC": "debug", **env})


needs_311 = pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython 3.12 collects between bytecodes only")


@needs_311
def test_without_the_hook_a_collection_inside_contextvar_set_crashes():
    """The control: the crash is real on this interpreter (it usually comes in the first run)."""
    results = []
    while len(results) < 10 and not any(r.returncode == -signal.SIGSEGV for r in results):
        results.append(run_crash(hook=False))
    assert results[-1].returncode == -signal.SIGSEGV, [(r.returncode, r.stdout) for r in results]


@needs_311
def test_with_the_hook_nothing_collects_inside_an_allocation_and_every_cycle_is_finalised():
    for _ in range(5):
        result = run_crash(hook=True)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().split(maxsplit=2) == ["False", str(ROUNDS), "['collector']"], result.stdout
        assert "garbage is collected by the collector thread" in result.stderr, result.stderr


@needs_311
def test_collector_thread_0_leaves_python_s_own_collection():
    result = run_crash(hook=True, MEMORY_PROXY_COLLECTOR_THREAD="0", PYTHONMALLOC="pymalloc")
    assert "collector thread" not in result.stderr
    if result.returncode == 0:  # without debug malloc the freed memory is often still readable
        assert result.stdout.startswith("True "), result.stdout


def test_the_hook_runs_the_sitecustomize_it_hides(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.SHADOWED_RAN = True\n")
    result = run_python("import sitecustomize; print(sitecustomize.__file__, SHADOWED_RAN)", (CHILD_SITE, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(CHILD_SITE / "sitecustomize.py"), "True"], result.stdout


# --- the schedule (CPython 3.11's collect_generations) against a recorded collector -------------


def load_schedule():
    spec = spec_from_file_location("child_site_sitecustomize", CHILD_SITE / "sitecustomize.py")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)  # not run as "sitecustomize": starts nothing
    return module.Schedule


class Recorder:
    """Counts, thresholds and generation sizes as given; each collect() is recorded."""

    def __init__(self, count, threshold=(700, 10, 10), sizes=(0, 0, 0), found=0):
        self.count, self.threshold, self.sizes, self.found = count, threshold, list(sizes), found
        self.collected: list[int] = []

    def get_count(self):
        return self.count

    def get_threshold(self):
        return self.threshold

    def get_objects(self, generation):
        return [None] * self.sizes[generation]

    def collect(self, generation):
        self.collected.append(generation)
        return self.found


@pytest.mark.parametrize("count, threshold, expected", [
    ((700, 0, 0), (700, 10, 10), None),  # at the threshold, not past it
    ((701, 0, 0), (700, 10, 10), 0),
    ((701, 11, 0), (700, 10, 10), 1),
    ((701, 11, 11), (700, 10, 10), 2),  # nothing kept yet: a full collection is due
    ((99999, 99, 99), (0, 10, 10), None),  # threshold 0: collection turned off (gc.set_threshold(0))
])
def test_the_generation_due_is_the_oldest_past_its_threshold(count, threshold, expected):
    recorder = Recorder(count, threshold)
    schedule = load_schedule()(recorder)
    assert schedule.step() == expected
    assert recorder.collected == ([] if expected is None else [expected])


def test_a_full_collection_waits_for_a_quarter_of_what_the_last_one_kept():
    schedule = load_schedule()(Recorder((701, 0, 11), sizes=(0, 0, 1000)))
    assert schedule.step() == 2 and schedule.long_lived_total == 1000 and schedule.long_lived_pending == 0
    # 300 young objects, 60 of them garbage: 240 survivors move up, not yet a quarter of 1000.
    schedule.gc = Recorder((701, 11, 11), sizes=(200, 100, 1000), found=60)
    assert schedule.step() == 1 and schedule.long_lived_pending == 240
    schedule.gc = Recorder((701, 11, 11), sizes=(10, 0, 1240), found=0)
    assert schedule.step() == 1 and schedule.long_lived_pending == 250
    schedule.gc = Recorder((701, 0, 12), sizes=(0, 0, 1250))
    assert schedule.step() == 2 and schedule.long_lived_total == 1250


def test_the_interpreter_running_the_tests_is_left_alone():
    assert gc.isenabled()


@needs_311
def test_a_forked_child_gets_a_collector_thread_of_its_own():
    script = ("import gc, os, threading\n"
              "pid = os.fork()\n"
              "if pid == 0:\n"
              "    print('child', gc.isenabled(), [t.name for t in threading.enumerate()], flush=True)\n"
              "    os._exit(0)\n"
              "os.waitpid(pid, 0)\n")
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child False ['MainThread', 'collector']", result.stdout
