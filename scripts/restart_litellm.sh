#!/usr/bin/env bash
# Restart LiteLLM under the running supervisor (when it misbehaves, or to pick up a new
# LiteLLM version in the venv) without touching the memory proxy.
#
#   scripts/restart_litellm.sh [--config PATH] [--state-dir DIR] [--timeout SECONDS] [--kill]
#
# Sends SIGTERM (--kill: SIGKILL, for a LiteLLM that hangs) to the LiteLLM pid recorded in
# the state folder (checked by `start_proxies.py status` to still be that process), lets the
# supervisor restart it with the same generated config, and waits until `status` is healthy
# again; meanwhile the memory proxy holds new requests until LiteLLM is back (503 with Retry-After
# past memory_proxy.startup_wait or startup_queue). Works from any directory;
# never signals anything but the recorded pid. Exit 0 once LiteLLM is back and healthy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${MEMORY_PROXY_PYTHON:-python3}"
launcher=("$PYTHON" "$ROOT/start_proxies.py")
timeout=180
sig=TERM

while [[ $# -gt 0 ]]; do
  case "$1" in
    --config|--state-dir)
      [[ $# -ge 2 ]] || { echo "$1 needs a value" >&2; exit 2; }
      launcher+=("$1" "$2"); shift 2 ;;
    --timeout)
      [[ $# -ge 2 ]] || { echo "--timeout needs a value" >&2; exit 2; }
      timeout="$2"; shift 2 ;;
    --kill)
      sig=KILL; shift ;;
    -h|--help)
      sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *)
      echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Prints "<litellm pid> <litellm healthy> <memory proxy healthy> <external>" from `status --json`.
read_status() {
  "${launcher[@]}" status --json 2>/dev/null | "$PYTHON" -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    print("- false false false"); sys.exit()
p = s.get("processes", {})
lite, mem = p.get("litellm", {}), p.get("memory_proxy", {})
print(lite.get("pid") or "-", str(bool(lite.get("healthy"))).lower(), str(bool(mem.get("healthy"))).lower(),
      str(bool(lite.get("external_url"))).lower())
' || echo "- false false false"
}

read -r old_pid _ _ external < <(read_status)
if [[ "$external" == "true" ]]; then
  echo "LiteLLM runs elsewhere (up --litellm-url); there is nothing to restart here" >&2
  exit 1
fi
if [[ "$old_pid" == "-" ]]; then
  echo "no running LiteLLM is recorded (is it up? see: python3 start_proxies.py status)" >&2
  exit 1
fi

echo "stopping LiteLLM (recorded pid $old_pid, SIG$sig); the supervisor restarts it"
kill -s "$sig" "$old_pid"

start=$SECONDS
while (( SECONDS - start < timeout )); do
  sleep 1
  read -r pid lite_ok mem_ok _ < <(read_status)
  if [[ "$pid" != "-" && "$pid" != "$old_pid" && "$lite_ok" == "true" && "$mem_ok" == "true" ]]; then
    echo "LiteLLM is back: pid $pid, healthy after $(( SECONDS - start )) s"
    exit 0
  fi
done
echo "LiteLLM is not healthy after ${timeout} s; see: python3 $ROOT/start_proxies.py logs litellm" >&2
exit 1
