"""Stopping process groups: SIGTERM, the grace, then SIGKILL for the group of what is left."""

import subprocess
import sys
import time

import psutil

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
