"""``start_proxies.py memory ...`` against the emulator's Memory API, as a user runs it (the
launcher in a subprocess), over the same per-id store the emulator's router fills."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.emulator import create_app
from tests.support import LAUNCHER, ROOT
from tests.support.configs import config_text
from tests.support.ports import free_port
from tests.support.servers import ServerThread
from tests.support.stacks import ENV_KEYS, SM_KEY, cli_env

CLAUDE_UA = "claude-cli/2.0.14 (external, cli)"


@pytest.fixture()
def emu():
    with ServerThread(create_app()) as server:
        yield server


@pytest.fixture()
def setup(tmp_path, emu):
    """(run the launcher, say something through the router as an id, ask the router)."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text(emu.port, emu.port, free_port(), free_port()))
    state = tmp_path / "state"
    router = httpx.Client(base_url=emu.url, timeout=10)  # keeps the Cloudflare cookies, as the egress does

    def cli(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(LAUNCHER), "--config", str(config), "--state-dir", str(state),
                               *args], capture_output=True, text=True, timeout=60, env=env or cli_env(), cwd=ROOT,
                              input=stdin)

    def say(user: str, text: str) -> str:
        answer = router.post("/v3/https://api.openai.com/v1/chat/completions",
                             json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                             headers={"authorization": "Bearer sk-test", "x-supermemory-api-key": SM_KEY,
                                      "x-sm-user-id": user})
        assert answer.status_code == 200, answer.text
        return answer.json()["choices"][0]["message"]["content"]

    yield cli, say, state
    router.close()


def ok_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stdout + result.stderr
    no_secrets(result)
    return json.loads(result.stdout)


def no_secrets(result: subprocess.CompletedProcess) -> None:
    for key in ENV_KEYS.values():
        assert key not in result.stdout + result.stderr


def test_each_id_sees_only_its_own_memory(setup):
    cli, say, _ = setup
    say("alice", "My name is Alice")
    say("bob", "My name is Bob and I like tea")
    alice = ok_json(cli("memory", "list", "--id", "alice", "--json"))
    bob = ok_json(cli("memory", "list", "--id", "bob", "--json"))
    assert [m["memory"] for m in alice["memories"]] == ["My name is Alice"]
    assert [m["memory"] for m in bob["memories"]] == ["My name is Bob and I like tea"]
    found = ok_json(cli("memory", "search", "tea", "--id", "alice", "--json"))
    assert found["results"] == []
    found = ok_json(cli("memory", "search", "tea", "--id", "bob", "--json"))
    assert [r["memory"] for r in found["results"]] == ["My name is Bob and I like tea"]
    # One id cannot reach another's memory by its id, neither to read it nor to forget it.
    bobs = bob["memories"][0]["id"]
    shown = cli("memory", "show", bobs, "--id", "alice")
    assert shown.returncode == 1 and "no memory" in shown.stderr and "Traceback" not in shown.stderr
    forgot = cli("memory", "forget", bobs, "--id", "alice", "--json")
    assert forgot.returncode == 1 and json.loads(forgot.stdout)["not_found"] == [bobs]
    # ...nor with one of its own named beside it (nothing is forgotten), nor through the URL's path
    alices = alice["memories"][0]["id"]
    mixed = cli("memory", "forget", alices, bobs, "--id", "alice", "--json")
    assert mixed.returncode == 1 and json.loads(mixed.stdout)["not_found"] == [bobs]
    assert [m["id"] for m in ok_json(cli("memory", "list", "--id", "alice", "--json"))["memories"]] == [alices]
    for trick in (f"../../bob/memories/{bobs}", f"{bobs}?include=x", "a/b"):
        refused = cli("memory", "show", trick, "--id", "alice", "--json")
        assert refused.returncode == 2 and json.loads(refused.stdout)["kind"] == "usage", refused.stdout
        assert "Bob" not in refused.stdout + refused.stderr
    assert say("bob", "What is my name?") == "Your name is Bob."
    shown = ok_json(cli("memory", "show", bobs, "--id", "bob", "--json"))
    assert shown["memory"]["memory"] == "My name is Bob and I like tea"


def test_list_is_newest_first_with_dates_and_the_limit(setup):
    cli, say, _ = setup
    for text in ("first note", "second note", "third note"):
        say("claude-cli", text)
    listed = cli("memory", "list", "-A", CLAUDE_UA, "--limit", "2")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "claude-cli" in lines[0] and "header_patterns" in lines[0]  # the id route resolves, and why
    assert "third note" in lines[2] and "second note" in lines[3] and len(lines) == 4
    assert all(line.split()[1][:2] == "20" for line in lines[2:])  # a date column
    data = ok_json(cli("memory", "list", "-A", CLAUDE_UA, "--json"))
    assert data["user_id"] == "claude-cli"
    assert [m["memory"] for m in data["memories"]] == ["third note", "second note", "first note"]
    assert all(m["created_at"] for m in data["memories"])


def test_forget_then_import_changes_what_the_router_answers(setup, tmp_path):
    cli, say, _ = setup
    say("alice", "Hi, my name is Alice")
    assert say("alice", "What is my name?") == "Your name is Alice."
    exported = cli("memory", "export", "--id", "alice")
    assert exported.returncode == 0, exported.stderr
    dump = tmp_path / "alice.json"
    dump.write_text(exported.stdout)
    assert json.loads(exported.stdout)["user_id"] == "alice"

    name = [m for m in ok_json(cli("memory", "list", "--id", "alice", "--json"))["memories"]
            if "Alice" in m["memory"]]
    forgot = ok_json(cli("memory", "forget", name[0]["id"], "--id", "alice", "--json"))
    assert forgot["forgotten"] == [name[0]["id"]]
    assert say("alice", "What is my name?") == "I don't know your name."

    imported = ok_json(cli("memory", "import", str(dump), "--id", "alice", "--json"))
    assert imported["imported"] >= 1
    assert say("alice", "What is my name?") == "Your name is Alice."
    # Import moves memory to another id, which then knows; the one never told still does not.
    ok_json(cli("memory", "import", str(dump), "--id", "carol", "--json"))
    assert say("carol", "What is my name?") == "Your name is Alice."
    assert say("dave", "What is my name?") == "I don't know your name."


def test_forget_all_asks_unless_yes(setup):
    cli, say, _ = setup
    say("alice", "My name is Alice")
    say("bob", "My name is Bob")
    refused = cli("memory", "forget", "--all", "--id", "alice", stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert ok_json(cli("memory", "list", "--id", "alice", "--json"))["memories"]
    done = ok_json(cli("memory", "forget", "--all", "--yes", "--id", "alice", "--json"))
    assert len(done["forgotten"]) == 1
    assert ok_json(cli("memory", "list", "--id", "alice", "--json"))["memories"] == []
    assert say("alice", "What is my name?") == "I don't know your name."
    assert say("bob", "What is my name?") == "Your name is Bob."  # the other id untouched
    both = cli("memory", "forget", "x", "--all", "--id", "alice")
    assert both.returncode == 2


def test_profile(setup):
    cli, say, _ = setup
    say("alice", "My name is Alice")
    say("alice", "I am working on the billing service")
    data = ok_json(cli("memory", "profile", "--id", "alice", "--json"))
    assert [f["memory"] for f in data["profile"]["static"]] == ["My name is Alice"]
    assert [f["memory"] for f in data["profile"]["dynamic"]] == ["I am working on the billing service"]
    shown = cli("memory", "profile", "--id", "alice")
    assert shown.returncode == 0 and "Stable facts" in shown.stdout and "billing" in shown.stdout


def test_bad_input_is_refused_with_exit_2(setup, tmp_path):
    cli, _, _ = setup
    for args in (["memory", "list", "--id", "bad id!"], ["memory", "list", "-H", "nonsense"],
                 ["memory", "list", "--id", "x", "--limit", "0"], ["memory", "search", " ", "--id", "x"],
                 ["memory", "search", "q", "--id", "x", "--limit", "0"],
                 ["memory", "list", "--id", "x", "-A", CLAUDE_UA], ["memory", "forget", "../x", "--id", "x"]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip()
    bad = tmp_path / "bad.json"
    bad.write_text('{"memories": "no"}')
    result = cli("memory", "import", str(bad), "--id", "x")
    assert result.returncode == 2 and "not a `memory export` file" in result.stderr
    bad.write_text("{torn")
    result = cli("memory", "import", str(bad), "--id", "x")
    assert result.returncode == 2 and "is not JSON" in result.stderr
    bad.write_text("[" * 100_000)
    result = cli("memory", "import", str(bad), "--id", "x")
    assert result.returncode == 2 and "nested too deeply" in result.stderr and "Traceback" not in result.stderr
    # one bad item anywhere: refused before the first memory is added
    bad.write_text(json.dumps({"format": "litellm-memory-proxy/memory-export", "memories": [
        {"memory": "fine"}, {"memory": "also fine", "metadata": "oops"}]}))
    result = cli("memory", "import", str(bad), "--id", "x")
    assert result.returncode == 2 and "memories[1].metadata is not a mapping" in result.stderr
    assert "Traceback" not in result.stderr
    assert ok_json(cli("memory", "list", "--id", "x", "--json"))["memories"] == []
    env = cli_env()
    env.pop("SUPERMEMORY_API_KEY")
    result = cli("memory", "list", "--id", "x", env=env)
    assert result.returncode == 2 and "SUPERMEMORY_API_KEY is not set" in result.stderr


def test_failing_calls_get_a_clear_message(setup, emu, tmp_path):
    cli, _say, _ = setup
    httpx.post(emu.url + "/_emulator/supermemory_keys", json={"accept": ["some-other-key"]})
    refused = cli("memory", "list", "--id", "alice")
    assert refused.returncode == 1 and "refused the key" in refused.stderr
    assert "SUPERMEMORY_API_KEY" in refused.stderr and "Traceback" not in refused.stderr
    no_secrets(refused)
    as_json = cli("memory", "list", "--id", "alice", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["kind"] == "unauthorised"
    httpx.post(emu.url + "/_emulator/supermemory_keys", json={"accept": None})

    httpx.post(emu.url + "/_emulator/faults", json={"mode": "error_429", "count": 1})
    limited = cli("memory", "list", "--id", "alice")
    assert limited.returncode == 1 and "rate-limiting" in limited.stderr

    config = tmp_path / "gone.yaml"
    config.write_text(config_text(emu.port, free_port(), free_port(), free_port()))
    gone = subprocess.run([sys.executable, str(LAUNCHER), "--config", str(config), "--state-dir", str(tmp_path / "s2"),
                           "memory", "list", "--id", "alice"], capture_output=True, text=True, timeout=60,
                          env=cli_env(), cwd=ROOT)
    assert gone.returncode == 1 and "cannot reach Supermemory" in gone.stderr and "Traceback" not in gone.stderr


def test_the_cookie_jar_is_shared_and_never_torn(setup, emu):
    cli, say, state = setup
    say("alice", "hello")  # Cloudflare has seen a first caller: one without cookies is refused now
    jar = state / "supermemory_cookies.json"
    assert not jar.exists()
    before = len(httpx.get(emu.url + "/_emulator/requests").json())
    assert ok_json(cli("memory", "list", "--id", "alice", "--json"))["memories"]
    calls = [r for r in httpx.get(emu.url + "/_emulator/requests", params={"since": before}).json()
             if r["path"].startswith("/ns/")]
    assert len(calls) == 2 and not calls[0]["cookies"]  # refused (1200), retried with the fresh cookies
    assert calls[1]["cookies"].get("cf_clearance")
    saved = json.loads(jar.read_text())
    assert {c["name"] for c in saved["cookies"]} >= {"cf_clearance", "__cf_bm"}
    assert jar.stat().st_mode & 0o777 == 0o600
    # The next run sends the saved clearance at once.
    before = len(httpx.get(emu.url + "/_emulator/requests").json())
    ok_json(cli("memory", "list", "--id", "alice", "--json"))
    (call,) = httpx.get(emu.url + "/_emulator/requests", params={"since": before}).json()
    assert call["cookies"].get("cf_clearance") in {c["value"] for c in saved["cookies"]}
    # A torn jar (a crash of something else) is read as empty and replaced by a whole one.
    jar.write_text('{"version": 1, "cookies": [{"name": "cf_cl')
    ok_json(cli("memory", "list", "--id", "alice", "--json"))
    assert {c["name"] for c in json.loads(jar.read_text())["cookies"]} >= {"cf_clearance"}


def test_list_pages_through_more_than_one_page_without_repeats(setup, emu):
    """130 memories: a limit past the first page (100) gives distinct memories, newest first."""
    cli, _, _ = setup
    with httpx.Client(base_url=emu.url, headers={"authorization": f"Bearer {SM_KEY}"}) as api:
        for i in range(130):  # the Memory API's add, as `memory import` calls it
            answer = api.post("/ns/many/document", json={"content": f"note number {i}"})
            assert answer.status_code < 300, answer.text
    for limit in (130, 150, 101):
        found = ok_json(cli("memory", "list", "--id", "many", "--limit", str(limit), "--json"))["memories"]
        texts = [m["memory"] for m in found]
        assert len(texts) == min(limit, 130) == len(set(texts)), limit
        assert texts[:2] == ["note number 129", "note number 128"]


def test_a_partial_import_says_how_many_went_in(setup, emu, tmp_path):
    cli, _, _ = setup
    dump = tmp_path / "three.json"
    dump.write_text(json.dumps({"format": "litellm-memory-proxy/memory-export", "user_id": "src",
                                "memories": [{"memory": f"fact {i}", "metadata": {"n": i, "bad": 1e400}}
                                             for i in range(3)]}))
    httpx.post(emu.url + "/_emulator/faults", json={"mode": "error_500", "count": 1, "after": 2})
    result = cli("memory", "import", str(dump), "--id", "dest", "--json")
    answer = json.loads(result.stdout)
    assert result.returncode == 1 and answer["ok"] is False and answer["imported"] == 2, result.stdout
    assert "imported 2 of 3" in result.stderr
    done = ok_json(cli("memory", "import", str(dump), "--id", "dest", "--json"))  # again: completes it
    assert done["imported"] == 3
    assert sorted(m["memory"] for m in ok_json(cli("memory", "list", "--id", "dest", "--json"))["memories"]) == [
        "fact 0", "fact 1", "fact 2"]
