"""Stopping process groups: SIGTERM, the grace, then SIGKILL for the group of what is left."""

import subprocess
import sys
import time

import psutil
import pytest

from memory_proxy.launcher.record import exited, stop_groups

# A leader that ignores SIGTERM and forks a helper into its own group (the helper ignores it too).
STUBBORN = ("import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); print(flush=True); time.sleep(60)")


def test_the_stubborn_group_is_killed_after_the_grace_and_the_polite_one_is_not():
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], start_new_session=True, stdout=subprocess.PIPE)
    stubborn.stdout.readline()  # its helper is started
    helper = psutil.Process(stubborn.pid).children()[0]
    started = time.monotonic()
    killed = stop_groups([polite, stubborn], exited, grace=1.0)
    assert killed == [stubborn]
    assert time.monotonic() - started >= 1.0
    assert polite.poll() == -15  # SIGTERM, within the grace
    assert stubborn.wait(5) == -9
    helper.wait(5)  # its helper went with its group
    assert not helper.is_running()
    stubborn.stdout.close()


def test_a_record_of_another_shape_is_unreadable_not_absent(tmp_path):
    from memory_proxy.launcher.record import RecordUnreadable, load_record, read_record
    from memory_proxy.state import StateDir

    state = StateDir(tmp_path)
    assert load_record(state) is None  # none yet
    for text in ('{"version": 1, "processes": []}', '{"version": 1, "processes": {"litellm": "x"}}',
                 '{"version": 1, "pro', "[]", '{"version": 2, "processes": {}}'):
        state.processes.write_text(text)
        with pytest.raises(RecordUnreadable, match="process record"):
            load_record(state)
        assert read_record(state) is None
    state.processes.write_text('{"version": 1, "processes": {"litellm": {"pid": 1}, "memory_proxy": null}}')
    assert load_record(state)["processes"]["litellm"] == {"pid": 1}


def test_live_processes_are_matched_by_pid_and_creation_time():
    from memory_proxy.launcher.record import live_processes

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        created = psutil.Process(proc.pid).create_time()
        record = {"processes": {"litellm": {"pid": proc.pid, "create_time": created},
                                "memory_proxy": {"pid": proc.pid, "create_time": created - 100},
                                "supervisor": None}}
        assert list(live_processes(record)) == ["litellm"]
        assert live_processes(None) == {}
    finally:
        proc.kill()
        proc.wait()
