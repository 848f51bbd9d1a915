#!/usr/bin/env bash
# Switch a running `sdk` or `both` installation back to binary mode (the litellm binary
# behind the memory proxy), and prove it works.
#
#   scripts/rollback_to_binary.sh [--config PATH] [--state-dir DIR] [--timeout SECONDS]
#
# Reads what runs from `start_proxies.py status --json`; records `binary` as the mode in the
# state folder; stops what runs by its recorded pids (`down`, never pkill); starts binary
# mode detached (`up --detach --backend binary`); then checks /health and, for a few client
# kinds (PyCharm, Claude Code, an explicit x-memory-user-id), that /memory-routing/info
# answers the id `route --json` predicts. Prints each step. Exit 0 when every check passes
# (or when binary mode already runs: nothing to do), 1 when a check fails, 2 on bad usage.
# Set MEMORY_PROXY_API_KEY when memory_proxy.api_keys is configured. Works from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${MEMORY_PROXY_PYTHON:-python3}"
launcher=("$PYTHON" "$ROOT/start_proxies.py")
timeout=180
state_dir=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --config)
      [[ $# -ge 2 ]] || { echo "$1 needs a value" >&2; exit 2; }
      launcher+=("$1" "$2"); shift 2 ;;
    --state-dir)
      [[ $# -ge 2 ]] || { echo "$1 needs a value" >&2; exit 2; }
      launcher+=("$1" "$2"); state_dir="$2"; shift 2 ;;
    --timeout)
      [[ $# -ge 2 ]] || { echo "--timeout needs a value" >&2; exit 2; }
      timeout="$2"; shift 2 ;;
    -h|--help)
      sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *)
      echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Prints "<running> <backend> <state dir>" from `status --json`.
read -r running backend recorded_state < <(
  "${launcher[@]}" status --json 2>/dev/null | "$PYTHON" -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    print("false - -"); sys.exit()
print(str(bool(s.get("running"))).lower(), s.get("backend") or "binary", s.get("state_dir") or "-")
' || echo "false - -")

if [[ "$running" != "true" ]]; then
  echo "nothing runs from ${state_dir:-the default state folder} (see: python3 start_proxies.py status);" \
       "start it with: python3 start_proxies.py up --detach --backend binary" >&2
  exit 1
fi
if [[ "$backend" == "binary" ]]; then
  echo "already running in binary mode (state $recorded_state); nothing to do"
  exit 0
fi

echo "1/4 running in $backend mode (state $recorded_state); recording binary as the mode"
printf 'binary\n' > "$recorded_state/mode.tmp.$$" && mv -f "$recorded_state/mode.tmp.$$" "$recorded_state/mode"

echo "2/4 stopping what runs, by its recorded pids: start_proxies.py down"
if ! "${launcher[@]}" down; then
  echo "down failed: something is left running (see above)" >&2
  exit 1
fi

echo "3/4 starting binary mode: start_proxies.py up --detach --backend binary"
if ! "${launcher[@]}" up --detach --backend binary --timeout "$timeout"; then
  echo "binary mode did not start (see above, and: python3 $ROOT/start_proxies.py logs)" >&2
  exit 1
fi

echo "4/4 checking health and routing"
rc=0
"$PYTHON" - "${launcher[@]}" <<'PY' || rc=$?
import json, os, subprocess, sys, urllib.request

launcher = sys.argv[1:]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
status = json.loads(subprocess.run(launcher + ["status", "--json"], capture_output=True, text=True).stdout)
base = status.get("memory_proxy_url")
failed = 0


def report(ok, what):
    global failed
    failed += not ok
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")


report(status.get("healthy") and status.get("backend") == "binary" and "litellm" in status.get("processes", {}),
       f"status: healthy, mode {status.get('backend')}, litellm pid "
       f"{status.get('processes', {}).get('litellm', {}).get('pid')}")


def get(path, headers):
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with opener.open(request, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
    except OSError as exc:
        return None, str(exc).encode(), {}


code, body, _ = get("/health", {})
try:
    ready = json.loads(body)["litellm"]["ready"]
except (ValueError, KeyError, TypeError):
    ready = None
report(code == 200 and ready is True, f"GET {base}/health: {code}, litellm ready {ready}")

key = os.environ.get("MEMORY_PROXY_API_KEY")
checks = [("PyCharm", {"User-Agent": "OpenAIClientImpl/Java unknown"}),
          ("Claude Code", {"User-Agent": "claude-cli/2.0.14 (external, cli)"}),
          ("explicit header", {"User-Agent": "rollback-check", "x-memory-user-id": "rollback-check"})]
for label, headers in checks:
    route_args = ["route", "--json"]
    for name, value in headers.items():
        route_args += ["--user-agent", value] if name == "User-Agent" else ["--header", f"{name}: {value}"]
    predicted = json.loads(subprocess.run(launcher + route_args, capture_output=True, text=True).stdout).get("user_id")
    if key:
        headers = dict(headers, Authorization=f"Bearer {key}")
    code, body, answer_headers = get("/memory-routing/info", headers)
    try:
        got = json.loads(body).get("user_id")
    except (ValueError, AttributeError):
        got = None
    report(code == 200 and got == predicted and predicted,
           f"{label}: /memory-routing/info -> {got!r} (route --json predicts {predicted!r}, HTTP {code})")
sys.exit(1 if failed else 0)
PY
if [[ $rc -ne 0 ]]; then
  echo "rolled back to binary mode, but a check failed (see above)" >&2
  exit 1
fi
echo "rolled back to binary mode: healthy, and routing as predicted"
