"""doctor's Supermemory finding quotes the base URL with its password masked."""

from __future__ import annotations

from pathlib import Path

from memory_proxy.config.model import parse_config
from memory_proxy.launcher.doctor import supermemory_findings
from memory_proxy.state import StateDir


def test_the_supermemory_finding_masks_the_base_urls_password(tmp_path):
    text = "memory_proxy:\n  supermemory:\n    base_url: http://user:URLPASSWORD@127.0.0.1:9\n"
    config = parse_config(text, Path("cfg.yaml"), {"SUPERMEMORY_API_KEY": "sm-test"})
    findings = supermemory_findings(config, StateDir(tmp_path).ensure())
    shown = " ".join(f"{f.message} {f.fix}" for f in findings)
    assert "127.0.0.1:9" in shown and "URLPASSWORD" not in shown
