"""``start_proxies.py stats`` on a usage store the test fills (the launcher in a subprocess)."""

import json
import subprocess
import sys

from memory_proxy.usage import report as ur
from memory_proxy.usage.record import derive
from memory_proxy.usage.store import SqliteStore
from tests.support import LAUNCHER
from tests.unit.usage.test_usage import ingress_row


def test_stats_command(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    state = tmp_path / "state"

    def stats(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(LAUNCHER), "--config", str(config),
                               "--state-dir", str(state), "stats", *args], capture_output=True, text=True,
                              env={"MEMORY_PROXY_VENV": sys.prefix, "MEMORY_PROXY_PYTHON": sys.executable,
                                   "PATH": "/usr/bin:/bin"}, timeout=60)

    empty = stats()
    assert empty.returncode == 0 and "no usage recorded yet" in empty.stderr
    store = SqliteStore(state / "usage.sqlite3")
    today = ur.today_start_ms() + 1000
    store.upsert([derive(ingress_row("a", ts_ms=today, input_tokens=3, priced=1, cost_usd=0.01), frozenset()),
                  derive(ingress_row("b", ts_ms=today, client_id="c2", model_group="claude", priced=0,
                                     cost_usd=0.0), frozenset())])
    store.close()
    human = stats()
    assert human.returncode == 0, human.stderr
    assert "today by client" in human.stdout and "last 7 days by client" in human.stdout
    assert "n/a*" in human.stdout and "their cost is unknown" in human.stdout  # never shown as free
    data = json.loads(stats("daily", "--json", "--by", "model").stdout)
    (report,) = data["reports"]
    assert {r["key"]: r["requests"] for r in report["rows"]} == {"gpt-4o-mini": 1, "claude": 1}
    assert report["total"]["input_tokens"] == 3
    lines = stats("weekly", "--csv", "--id", "c2").stdout.splitlines()
    assert lines[0].startswith("report,period,key,model,requests") and len(lines) == 2 and ",c2,," in lines[1]
    bad = stats("--since", "yesterday")
    assert bad.returncode == 2 and "not a date" in bad.stderr
