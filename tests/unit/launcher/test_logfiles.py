"""Following log files as they grow, appear and are truncated (``logs -f``)."""

import threading
import time

from memory_proxy.launcher.logfiles import follow, rotate, tail


def test_follow_sees_appended_created_and_truncated_files(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("old line\n")
    stop = threading.Event()
    seen: list[tuple[str, str]] = []

    def reader():
        for item in follow({"a": a, "b": b}, stop, poll=0.02):
            seen.append(item)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.1)
    with open(a, "a") as f:
        f.write("new line\npart")
    b.write_text("b appeared\n")
    time.sleep(0.2)
    a.write_text("after truncation\n")
    deadline = time.monotonic() + 5
    while ("a", "after truncation") not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=2)
    assert ("a", "old line") not in seen
    assert ("a", "new line") in seen and ("b", "b appeared") in seen and ("a", "after truncation") in seen


def test_tail_of_zero_or_fewer_lines_is_empty(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("one\ntwo\nthree\n")
    assert tail(log, 2) == "two\nthree"
    assert tail(log, 0) == "" and tail(log, -2) == ""  # not the whole file, nor all but the first lines


def test_rotate_copies_and_truncates_a_log_its_writer_keeps_open(tmp_path):
    log = tmp_path / "memory.log"
    with open(log, "ab", buffering=0) as writer:  # as a child's stdout: opened once, for appending
        writer.write(b"old line\n" * 100)
        assert not rotate(log, 10_000)
        assert rotate(log, 100)
        writer.write(b"new line\n")
    assert (tmp_path / "memory.log.1").read_bytes() == b"old line\n" * 100
    assert log.read_bytes() == b"new line\n"  # at the start: no hole where the old lines were
    assert not rotate(tmp_path / "none.log", 100)
