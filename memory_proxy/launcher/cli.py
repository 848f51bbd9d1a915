"""The command line: every command, its options and help, each calling its command group.

The groups are imported only when their command runs, so ``--help`` and ``status`` load
nothing they do not need: lifecycle (up, down, status, logs), config_commands (check, route,
schema), memory, stats and doctor.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from enum import StrEnum
from pathlib import Path

import typer

from memory_proxy.launcher.context import DEFAULT_CONFIG, Context
from memory_proxy.names import BACKENDS, LOG_ALIASES, PROCESSES, STATE_DIR_ENV
from memory_proxy.state import StateDir, default_state_dir

AS_JSON = typer.Option(False, "--json", help="Machine-readable.")  # one --json for every command

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="One local endpoint for every AI client: LiteLLM's models plus per-client memory.")


def _group(name: str):
    """A command group's module, imported only when one of its commands runs (keeps --help instant)."""
    return importlib.import_module(f"memory_proxy.launcher.{name}")


# Choices, from memory_proxy.names: the backends; `logs`' processes and their older short spellings.
Backend = StrEnum("Backend", BACKENDS)
LogName = StrEnum("LogName", ("all", *PROCESSES, *LOG_ALIASES))


@app.callback()
def main(
    ctx: typer.Context,
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", envvar="MEMORY_PROXY_CONFIG",
                                show_default="config/config.yaml of this checkout",
                                help="The config file (LiteLLM's format plus our sections)."),
    state_dir: Path | None = typer.Option(None, "--state-dir", envvar=STATE_DIR_ENV,
                                             show_default="$XDG_STATE_HOME/litellm-memory-proxy",
                                             help="Where pids, logs, the generated LiteLLM config, the master "
                                                  "key and the cookie jar live; one per installation."),
) -> None:
    state = StateDir((state_dir or default_state_dir()).expanduser().resolve())
    ctx.obj = Context(config.expanduser().resolve(), state)


@app.command()
def up(
    ctx: typer.Context,
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once both are healthy; leave them running."),
    litellm_url: str | None = typer.Option(None, "--litellm-url", metavar="URL",
                                              help="Start only the memory proxy, in front of a LiteLLM that runs "
                                                   "elsewhere (needs LITELLM_MASTER_KEY: your key for it)."),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds LiteLLM may take to become ready."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result (with --detach)."),
    backend: Backend | None = typer.Option(None, "--backend", "--mode", show_default="the last one used, else binary",
                                              help="binary: the litellm binary behind the memory proxy; sdk: "
                                                   "LiteLLM's Router inside the memory proxy; both: binary on "
                                                   "memory_proxy.port plus an SDK-backed proxy on --sdk-port. "
                                                   "Remembered in the state folder. (--mode: the older spelling.)"),
    sdk_port: int | None = typer.Option(None, "--sdk-port", show_default="memory_proxy.port + 2 (8766)",
                                           help="Port of the SDK-backed proxy with --backend both."),
) -> None:
    """Start LiteLLM and the memory proxy (foreground: streams both logs, Ctrl+C stops both)."""
    raise typer.Exit(_group("lifecycle").up(ctx.obj, detach=detach, litellm_url=litellm_url, timeout=timeout,
                                            as_json=as_json, backend=backend.value if backend else None,
                                            sdk_port=sdk_port))


def _json_command(name: str, group: str, function: str, doc: str) -> None:
    """A command whose one option is ``--json``: ``group.function(context, as_json)``."""
    def command(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
        raise typer.Exit(getattr(_group(group), function)(ctx.obj, as_json))

    command.__doc__ = doc
    app.command(name)(command)


_json_command("status", "lifecycle", "status",
              "Pid, port, health, uptime and memory of each process; exit 0 only when all is healthy.")
_json_command("down", "lifecycle", "down",
              "Stop what `up` started, by its recorded pids; leaves no process or port behind.")


@app.command()
def logs(
    ctx: typer.Context,
    which: LogName = typer.Argument(LogName.all, metavar="which",
                                    help="all, memory_proxy, litellm, supervisor or memory_proxy_sdk "
                                         "(memory and memory_sdk: the older spellings)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many past lines to show."),
) -> None:
    """Show (and follow) the logs of the running or last run."""
    raise typer.Exit(_group("lifecycle").logs(ctx.obj, which.value, follow, lines))


_json_command("check", "config_commands", "check",
              "Validate the config and print the generated LiteLLM config (secrets masked).")


@app.command()
def route(
    ctx: typer.Context,
    user_agent: str | None = typer.Option(None, "--user-agent", "-A", metavar="UA"),
    header: list[str] = typer.Option([], "--header", "-H", metavar="NAME:VALUE", help="Repeatable."),
    path: str = typer.Option("/v1/chat/completions", "--path", help="Request path, e.g. /scope/<id>/v1/..."),
    as_json: bool = AS_JSON,
) -> None:
    """Which memory id a client would get, and why (starts nothing)."""
    raise typer.Exit(_group("config_commands").route(ctx.obj, user_agent, header, path, as_json))


Report = StrEnum("Report", ("daily", "weekly", "monthly", "session"))
GroupBy = StrEnum("GroupBy", ("client", "project", "model", "provider"))


@app.command()
def stats(
    ctx: typer.Context,
    report: Report | None = typer.Argument(None, metavar="[daily|weekly|monthly|session]",
                                              help="Default: today and the last 7 days."),
    by: GroupBy = typer.Option(GroupBy.client, "--by", help="client, project, model or provider."),
    since: str | None = typer.Option(None, "--since", metavar="YYYY-MM-DD", help="First day (local)."),
    until: str | None = typer.Option(None, "--until", metavar="YYYY-MM-DD", help="Last day (local)."),
    key: str | None = typer.Option(None, "--id", metavar="ID", help="Only this client/project/model/provider "
                                   "(session: or this session id)."),
    breakdown: bool = typer.Option(False, "--breakdown", help="One line per model inside each row."),
    as_json: bool = AS_JSON,
    as_csv: bool = typer.Option(False, "--csv", help="CSV."),
) -> None:
    """Usage from the request log: requests, errors, latency, tokens, cost, memory (starts nothing)."""
    raise typer.Exit(_group("stats").stats(ctx.obj.config, ctx.obj.state, period=report.value if report else None,
                                     by=by.value, since=since, until=until, key=key, breakdown=breakdown,
                                     as_json=as_json, as_csv=as_csv))


_json_command("doctor", "doctor", "run",
              "Check config, keys, ports, processes, Supermemory, cookies, clock and front door; say what to fix.")


memory_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="See, search, forget, export and import one client's Supermemory memory.")
app.add_typer(memory_app, name="memory")
MEMORY_ID = typer.Option(None, "--id", metavar="ID", show_default="what `route` resolves for the headers given",
                         help="The memory id (as the front door gives it: letters, digits, . _ : -).")
MEMORY_UA = typer.Option(None, "--user-agent", "-A", metavar="UA", help="Pick the id a client with this UA gets.")
MEMORY_HEADER = typer.Option([], "--header", "-H", metavar="NAME:VALUE", help="Likewise, by header; repeatable.")


def _memory(ctx: typer.Context, memory_id: str | None, user_agent: str | None, header: list[str]):
    """The memory commands and whose memory they act on (imported only when one runs)."""
    memory = _group("memory")
    return memory, ctx.obj, memory.Who(memory_id, user_agent, tuple(header))


@memory_app.command("list")
def memory_list(ctx: typer.Context, memory_id: str | None = MEMORY_ID, user_agent: str | None = MEMORY_UA,
                header: list[str] = MEMORY_HEADER,
                limit: int = typer.Option(20, "--limit", "-n", help="How many, newest first."),
                as_json: bool = AS_JSON) -> None:
    """The id's memories, newest first, with dates and short summaries."""
    m, cx, who = _memory(ctx, memory_id, user_agent, header)
    raise typer.Exit(m.list_memories(cx, who, limit, as_json))


@memory_app.command("search")
def memory_search(ctx: typer.Context, query: str = typer.Argument(..., metavar="QUERY"),
                  memory_id: str | None = MEMORY_ID, user_agent: str | None = MEMORY_UA,
                  header: list[str] = MEMORY_HEADER, limit: int = typer.Option(10, "--limit", "-n"),
                  as_json: bool = AS_JSON) -> None:
    """What Supermemory would retrieve for QUERY from the id's memory."""
    m, cx, who = _memory(ctx, memory_id, user_agent, header)
    raise typer.Exit(m.search(cx, who, query, limit, as_json))


@memory_app.command("show")
def memory_show(ctx: typer.Context, memory: str = typer.Argument(..., metavar="MEMORY_ID"),
                memory_id: str | None = MEMORY_ID, user_agent: str | None = MEMORY_UA,
                header: list[str] = MEMORY_HEADER, as_json: bool = AS_JSON) -> None:
    """One memory in full."""
    m, cx, who = _memory(ctx, memory_id, user_agent, header)
    raise typer.Exit(m.show(cx, who, memory, as_json))


@memory_app.command("forget")
def memory_forget(ctx: typer.Context, memories: list[str] = typer.Argument(None, metavar="MEMORY_ID..."),
                  everything: bool = typer.Option(False, "--all", help="Forget every memory of the id."),
                  yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --all."),
                  memory_id: str | None = MEMORY_ID, user_agent: str | None = MEMORY_UA,
                  header: list[str] = MEMORY_HEADER, as_json: bool = AS_JSON) -> None:
    """Remove memories from recall (Supermemory keeps their audit history)."""
    m, cx, who = _memory(ctx, memory_id, user_agent, header)
    raise typer.Exit(m.forget(cx, who, list(memories or []), everything, yes, as_json))


@memory_app.command("profile")
def memory_profile(ctx: typer.Context, memory_id: str | None = MEMORY_ID, user_agent: str | None = MEMORY_UA,
                   header: list[str] = MEMORY_HEADER, as_json: bool = AS_JSON) -> None:
    """Supermemory's profile of the id: stable facts and recent context."""
    m, cx, who = _memory(ctx, memory_id, user_agent, header)
    raise typer.Exit(m.profile(cx, who, as_json))


@memory_app.command("export")
def memory_export(ctx: typer.Context, memory_id: str | None = MEMORY_ID, user_agent: str | None = MEMORY_UA,
                  header: list[str] = MEMORY_HEADER) -> None:
    """Write the id's memories as JSON to stdout (`memory export > file.json`)."""
    m, cx, who = _memory(ctx, memory_id, user_agent, header)
    raise typer.Exit(m.export(cx, who))


@memory_app.command("import")
def memory_import(ctx: typer.Context, file: Path = typer.Argument(..., metavar="FILE", help="From `memory export`."),
                  memory_id: str | None = MEMORY_ID, user_agent: str | None = MEMORY_UA,
                  header: list[str] = MEMORY_HEADER, as_json: bool = AS_JSON) -> None:
    """Add the memories of an export file to the id (e.g. to move a project's memory)."""
    m, cx, who = _memory(ctx, memory_id, user_agent, header)
    raise typer.Exit(m.import_(cx, who, file, as_json))


@app.command()
def schema() -> None:
    """Print a JSON Schema of the config file, for editors."""
    raise typer.Exit(_group("config_commands").schema())


@app.command("_supervise", hidden=True)
def supervise(
    ctx: typer.Context,
    litellm_url: str | None = typer.Option(None, "--litellm-url"),
    timeout: float = typer.Option(180.0, "--timeout"),
    backend: Backend = typer.Option(Backend.binary, "--backend"),
    sdk_port: int | None = typer.Option(None, "--sdk-port"),
) -> None:
    """The background supervisor that `up --detach` starts."""
    raise typer.Exit(_group("lifecycle").supervise(ctx.obj, litellm_url, timeout, backend.value, sdk_port))


def run() -> None:
    """Run the CLI, then end the process at once when nothing else runs in it.

    Python's own teardown (freeing every module imported) took 40-60 ms on the benchmark's
    machine, a sixth of `status`. With only the main thread left, the exit handlers run and
    the output flushed, nothing is left for it to do. Otherwise (a thread still running, an
    exit message, output that cannot be flushed) the interpreter ends the usual way.
    """
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    if not isinstance(code, int) or threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()  # what the interpreter would run first (logging's flush and close)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. a closed pipe: let Python report it as it does
        sys.exit(code)
    os._exit(code)

