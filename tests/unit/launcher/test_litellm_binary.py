"""Finding the ``litellm`` executable."""

import sys

from memory_proxy.launcher.litellm_binary import find_litellm


def test_find_litellm_prefers_the_one_beside_the_interpreter(tmp_path, monkeypatch):
    beside, on_path = tmp_path / "venv" / "bin", tmp_path / "elsewhere"
    for folder in (beside, on_path):
        folder.mkdir(parents=True)
        (folder / "litellm").write_text("#!/bin/sh\n")
        (folder / "litellm").chmod(0o755)
    monkeypatch.delenv("MEMORY_PROXY_LITELLM", raising=False)
    monkeypatch.setattr(sys, "executable", str(beside / "python"))
    monkeypatch.setenv("PATH", str(on_path))
    assert find_litellm() == beside / "litellm"
    (beside / "litellm").unlink()
    assert find_litellm() == on_path / "litellm"
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert find_litellm() is None
