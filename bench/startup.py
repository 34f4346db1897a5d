"""Startup of provd: the server (frozen and installed: size, cold start, idle RSS) and
the command line (`provd --help`, `provd jobs list`).

    .venv/bin/python bench/startup.py [--runs 10] [--binary dist/provd]
                                      [--onedir dist/provd-onedir/provd]
                                      [--portable dist/provd-portable]
                                      [--package .venv/bin/provd]
                                      [--cli-runs 10] [--cli-only] [--compare-src DIR]
                                      [--compare-binary OLD/provd]
                                      [--compare-onedir OLD/provd-onedir/provd]
                                      [--no-frozen-cli]

The one-file and one-dir builds, the portable executable (`just portable`:
the one file wrapped by staticx, no libc needed), and the --compare-* builds (e.g. a
copy of dist/ from before a change) are measured like the package, interleaved run by
run: the server's start, and `provd --help` and `provd jobs list` against the one
server. Each is measured when its file exists; none is built here.
Goals (issue 14): `--help` and `jobs list` <= 0.5 s from the one file; serve to the
first RPC <= 0.8 s (one file) and <= 0.6 s (one dir); <= 30 MB; <= 60 MB idle.

The server: for each variant found (the one-file and one-dir builds exist after
`just package`; without them only the package is measured), `provd serve --listen
127.0.0.1:0` starts `--runs` times, each time with a new empty database in a new
temporary directory:

    cold start   from just before the process is spawned to the first answered RPC:
                 the URL is read from the "listening on" line, then
                 `provd.v1.JobService/ListJobs` (Connect, JSON over HTTP/1.1, the admin
                 token) is polled every 5 ms until it answers 200
    listening    the same clock, to the "listening on" line
    CPU          user + system CPU time of the process(es) up to that first answer:
                 what the start costs, less sensitive than wall time to a busy machine
    idle RSS     VmRSS from /proc/<pid>/status one second after that first answer.
                 The one-file binary is two processes: the bootloader (the PID we
                 spawned) unpacks itself and runs Python in a child. "python" is that
                 child, "total" adds the bootloader. The portable one is three:
                 staticx's bootloader (unpacks its libraries and the one file, runs
                 it), then the one file's two; "total" adds all three. The one-dir
                 bundle and the package are one process each.

Every run then gets SIGTERM and must exit 0. Figures are medians over the runs; the
page cache is warm (the file was just built or read), which is what a second start on
a laptop sees. Sizes: the one file as it is, the one-dir bundle as the sum of its files,
the package as nothing (it needs a Python and a venv). MB here is 10^6 bytes.

Goals (issue 6): one file <= 30 MB, cold start <= 0.6 s, idle RSS <= 60 MB.

The command line: one `provd serve` (the package, 127.0.0.1:0, a temporary --db, three
pending jobs created with `provd jobs create`) answers while the package's `provd
--help` and `provd jobs list` (PROVD_URL, PROVD_ADMIN_TOKEN) run `--cli-runs` times
each, after one unmeasured run of each. Wall time from just before the process is
spawned to its exit (median, min, max), and its user + system CPU (median, from
RUSAGE_CHILDREN): CPU is what the start costs, less sensitive to a busy machine.
`--compare-src DIR` also runs a second source tree of provd the same way (the same
`provd` script with PYTHONPATH=DIR, e.g. `git archive HEAD | tar -x -C DIR` before a
change), interleaved run by run with this one, for before/after figures taken under
the same conditions. The server is stopped by its PID (SIGTERM) at the end.
Bytecode: by default the runs share a private cache (`PYTHONPYCACHEPREFIX` in the
temporary directory, `PYTHONDONTWRITEBYTECODE` unset), which the unmeasured run fills:
every module is read from a .pyc, as in a venv that pip compiled or that has run
before. `--cold-bytecode` sets `PYTHONDONTWRITEBYTECODE=1` instead, so a module without
a .pyc beside it (an editable install's own modules, unless something wrote them) is
compiled on every run (what a shell with that variable set, as the one these
benchmarks ran in, measures).
The table names the install: "editable" (`pip install -e`, the dev venv: every
start pays for its import finder, about 20 ms here) or "regular" (`pip install .`),
found from the venv beside the `provd` script. To measure a regular install:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install .
    .venv/bin/python bench/startup.py --cli-only --package /tmp/v/bin/provd

Goal ("One owner per idea"): each median <= 0.3 s.

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ADMIN_TOKEN = "bench-admin-token"
DAEMON_PSK = "bench-daemon-psk"
LISTENING = re.compile(rb"listening on (https?://\S+)")
GOALS = {"size_mb": 30.0, "cold_start_s": 0.6, "idle_rss_mb": 60.0}
# Start to first answered RPC, per variant (issue 14): the one file unpacks first.
COLD_START_GOALS_S = {"one file": 0.8, "one dir": 0.6, "package (venv)": 0.6, "portable": 0.8}
# `provd --help` and `provd jobs list`, medians: the package (issue "One owner per
# idea") and the frozen builds (issue 14).
CLI_GOAL_S = 0.3
CLI_FROZEN_GOAL_S = 0.5
# What the CLI benchmark runs, by name.
CLI_COMMANDS = {"help": ["--help"], "jobs_list": ["jobs", "list"]}
CLI_TIMEOUT = 60.0
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello"
# Hang guards, not measurements.
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 15.0


@dataclass
class Run:
    listening_s: float
    cold_start_s: float
    cpu_s: float
    rss_python_mb: float
    rss_total_mb: float
    exit_code: int


@dataclass
class Variant:
    name: str
    command: list[str]
    size_mb: float | None
    runs: list[Run] = field(default_factory=list)

    def values(self, attribute: str) -> list[float]:
        return [float(getattr(run, attribute)) for run in self.runs]

    def median(self, attribute: str) -> float:
        return statistics.median(self.values(attribute))

    def spread(self, attribute: str) -> str:
        values = self.values(attribute)
        return f"{min(values):.3f}..{max(values):.3f}"


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e6 if match else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    return [int(child) for child in found]


def list_jobs(url: str) -> bool:
    """One ListJobs call; True when the server answered it."""
    request = urllib.request.Request(
        f"{url}/provd.v1.JobService/ListJobs",
        data=b"{}",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            response.read()
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def read_until_listening(process: subprocess.Popen[bytes], deadline: float) -> tuple[str, bytes]:
    assert process.stdout is not None
    output = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (match := LISTENING.search(output)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 'listening on' line in time:\n{output.decode()}")
            if selector.select(timeout=0.05):
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"provd exited before listening:\n{output.decode()}")
                output += chunk
    return match.group(1).decode(), output


def one_run(command: list[str]) -> Run:
    with tempfile.TemporaryDirectory(prefix="provd-startup-") as tmp:
        env = dict(os.environ, PROVD_ADMIN_TOKEN=ADMIN_TOKEN, PROVD_DAEMON_PSK=DAEMON_PSK)
        argv = [*command, "serve", "--listen", "127.0.0.1:0", "--db", f"{tmp}/provd.db"]
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp
        )
        try:
            url, _ = read_until_listening(process, time.monotonic() + START_TIMEOUT)
            listening = time.perf_counter() - started
            deadline = time.monotonic() + START_TIMEOUT
            while not list_jobs(url):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} never answered ListJobs")
                time.sleep(0.005)
            answered = time.perf_counter() - started
            # The spawned process and its first child, grandchild, ...: Python is last.
            chain = [process.pid]
            while child := next(iter(children(chain[-1])), None):
                chain.append(child)
            cpu = sum(cpu_seconds(pid) for pid in chain)
            time.sleep(1.0)
            rss_python = rss_mb(chain[-1])
            rss_total = sum(rss_mb(pid) for pid in chain)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=EXIT_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            assert process.stdout is not None
            process.stdout.close()
    return Run(listening, answered, cpu, rss_python, rss_total, code)


def tree_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


# -- the command line ------------------------------------------------------------------


@dataclass(frozen=True)
class CliProgram:
    """A `provd` to time: the package's script (from this tree or, with `path`, from
    another source tree on PYTHONPATH) or a frozen build (`frozen`), with its goal."""

    label: str
    argv0: str
    # PYTHONPATH for the runs; None: the package as installed (or a frozen build).
    path: Path | None = None
    frozen: bool = False

    @property
    def goal_s(self) -> float:
        return CLI_FROZEN_GOAL_S if self.frozen else CLI_GOAL_S


@dataclass
class CliTimes:
    """Runs of one command (a key of CLI_COMMANDS) of one program."""

    program: CliProgram
    command: str
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.program.label

    def summary(self) -> dict[str, float]:
        return {
            "median_s": round(statistics.median(self.wall_s), 4),
            "min_s": round(min(self.wall_s), 4),
            "max_s": round(max(self.wall_s), 4),
            "cpu_median_s": round(statistics.median(self.cpu_s), 4),
        }


def timed_run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `argv`, which must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=CLI_TIMEOUT
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{argv} exited {result.returncode}: {result.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def drain(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    while os.read(process.stdout.fileno(), 65536):
        pass


def cli_env(url: str, source: Path | None, pycache: Path | None) -> dict[str, str]:
    """The environment of a timed command: the server, the token, the source tree, and
    the bytecode cache (`pycache`; None: none written, PYTHONDONTWRITEBYTECODE=1)."""
    env = dict(os.environ, PROVD_URL=url, PROVD_ADMIN_TOKEN=ADMIN_TOKEN)
    env.pop("PYTHONPATH", None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def bench_cli(
    package: Path,
    runs: int,
    compare: Path | None,
    *,
    frozen: Sequence[CliProgram] = (),
    cold_bytecode: bool = False,
) -> list[CliTimes]:
    """`provd --help` and `provd jobs list` against one server, `runs` times each, for
    the package (and the same commands from `compare`, when given) and each `frozen`
    build, interleaved run by run so that all see the same machine."""
    provd = str(package.absolute())
    programs = [CliProgram("this tree", provd)]
    if compare is not None:
        programs.insert(0, CliProgram(f"{compare}", provd, path=compare.resolve()))
    programs.extend(frozen)
    with tempfile.TemporaryDirectory(prefix="provd-cli-") as tmp:
        env = dict(os.environ, PROVD_ADMIN_TOKEN=ADMIN_TOKEN, PROVD_DAEMON_PSK=DAEMON_PSK)
        server = subprocess.Popen(
            [provd, "serve", "--listen", "127.0.0.1:0", "--db", f"{tmp}/provd.db"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
        try:
            url, _ = read_until_listening(server, time.monotonic() + START_TIMEOUT)
            # Keep reading what the server prints, so that it never blocks on the pipe.
            threading.Thread(target=drain, args=(server,), daemon=True).start()
            # A cache per source tree, each filled by the tree's unmeasured first run.
            # (A frozen build reads its modules from its own archive: no cache.)
            caches = {
                program: None if cold_bytecode else Path(tmp) / f"pycache-{index}"
                for index, program in enumerate(programs)
            }
            create = [provd, "jobs", "create", "--type", "import", "--archive", str(EXAMPLE)]
            for _ in range(3):  # a few rows, so that `jobs list` prints a table
                timed_run(create, cli_env(url, None, caches[programs[-1]]))
            times = [CliTimes(program, name) for program in programs for name in CLI_COMMANDS]
            for index in range(runs + 1):  # the first round warms the page cache
                for timing in times:
                    program = timing.program
                    argv = [program.argv0, *CLI_COMMANDS[timing.command]]
                    wall, cpu = timed_run(argv, cli_env(url, program.path, caches[program]))
                    if index:
                        timing.wall_s.append(wall)
                        timing.cpu_s.append(cpu)
                if index:
                    print(
                        f"cli run {index}/{runs} "
                        + "  ".join(f"{t.source}:{t.command}={t.wall_s[-1]:.3f}" for t in times),
                        file=sys.stderr,
                    )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            assert server.stdout is not None
            server.stdout.close()
    return times


def install_kind(package: Path) -> str:
    """ "editable" if the venv of the `package` script holds an editable install of
    provd (its import finder), else "regular"."""
    venv = package.absolute().parent.parent
    editable = list(venv.glob("lib/python*/site-packages/__editable__*provd*"))
    return "editable" if editable else "regular"


def print_cli_table(times: list[CliTimes], runs: int, install: str, bytecode: str) -> None:
    header = ["command", "provd", "median (s)", "min (s)", "max (s)", "CPU median (s)", "goal"]
    table = [
        [
            f"provd {' '.join(CLI_COMMANDS[t.command])}",
            t.source,
            f"{t.summary()['median_s']:.3f}",
            f"{t.summary()['min_s']:.3f}",
            f"{t.summary()['max_s']:.3f}",
            f"{t.summary()['cpu_median_s']:.3f}",
            f"<= {t.program.goal_s}",
        ]
        for t in sorted(times, key=lambda t: list(CLI_COMMANDS).index(t.command))
    ]
    print(
        f"CLI start-up, wall time of {runs} runs each"
        f" (the package's provd: {install} install, {bytecode} bytecode;"
        " frozen builds as built)"
    )
    print_table(header, table)


def print_table(header: list[str], table: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- the server ------------------------------------------------------------------------


def bench_server(args: argparse.Namespace) -> dict[str, object]:
    variants = []
    if args.binary.is_file():
        variants.append(
            Variant("one file", [str(args.binary.resolve())], args.binary.stat().st_size / 1e6)
        )
    else:
        print(f"{args.binary} not found (just package builds it): not measured", file=sys.stderr)
    if args.onedir.is_file():
        variants.append(
            Variant("one dir", [str(args.onedir.resolve())], tree_size_mb(args.onedir.parent))
        )
    if args.portable.is_file():
        variants.append(
            Variant("portable", [str(args.portable.resolve())], args.portable.stat().st_size / 1e6)
        )
    if args.package.is_file():
        variants.append(Variant("package (venv)", [str(args.package.absolute())], None))
    for name, path in (
        ("one file (compare)", args.compare_binary),
        ("one dir (compare)", args.compare_onedir),
    ):
        if path is not None and path.is_file():
            size = (
                path.stat().st_size
                if name.startswith("one file")
                else tree_size_mb(path.parent) * 1e6
            )
            variants.append(Variant(name, [str(path.resolve())], size / 1e6))
    if not variants:
        sys.exit("nothing to measure: no binary, no one-dir bundle, no package")

    # Interleaved, so that a noisy neighbour slows every variant alike.
    for index in range(args.runs):
        for variant in variants:
            run = one_run(variant.command)
            variant.runs.append(run)
            print(
                f"run {index + 1}/{args.runs} {variant.name:15} cold start {run.cold_start_s:.3f} s"
                f"  rss {run.rss_python_mb:.1f}/{run.rss_total_mb:.1f} MB  exit {run.exit_code}",
                file=sys.stderr,
            )

    rows: list[tuple[str, Callable[[Variant], str], str]] = [
        ("size (MB)", lambda v: "-" if v.size_mb is None else f"{v.size_mb:.1f}", "30"),
        ("listening (s, median)", lambda v: f"{v.median('listening_s'):.3f}", ""),
        (
            "cold start to RPC (s, median)",
            lambda v: f"{v.median('cold_start_s'):.3f}",
            "file 0.8, dir 0.6",
        ),
        ("cold start min..max (s)", lambda v: v.spread("cold_start_s"), ""),
        ("CPU to first RPC (s, median)", lambda v: f"{v.median('cpu_s'):.2f}", ""),
        ("idle RSS python (MB)", lambda v: f"{v.median('rss_python_mb'):.1f}", "60"),
        ("idle RSS total (MB)", lambda v: f"{v.median('rss_total_mb'):.1f}", "60"),
        ("SIGTERM exit codes", lambda v: ",".join(sorted({str(r.exit_code) for r in v.runs})), "0"),
    ]
    header = ["", *(v.name for v in variants), "goal"]
    print_table(header, [[label, *(cell(v) for v in variants), goal] for label, cell, goal in rows])

    # Size and RSS goals are the one file's; without it, the first variant measured
    # stands in. Each variant's cold start has its own goal (COLD_START_GOALS_S).
    first = variants[0]
    result: dict[str, object] = {
        "runs": args.runs,
        "goals": {**GOALS, "cold_start_s": COLD_START_GOALS_S},
        "goals_measured_on": first.name,
        "met": {
            "size_mb": first.size_mb is not None and first.size_mb <= GOALS["size_mb"],
            "idle_rss_mb": first.median("rss_total_mb") <= GOALS["idle_rss_mb"],
            **{
                f"cold_start_s {v.name}": v.median("cold_start_s")
                <= COLD_START_GOALS_S[v.name.removesuffix(" (compare)")]
                for v in variants
            },
        },
    }
    for variant in variants:
        key = variant.name.replace(" (venv)", "").replace(" (compare)", "_compare")
        key = key.replace(" ", "_")
        result[key] = {
            "size_mb": None if variant.size_mb is None else round(variant.size_mb, 2),
            "listening_s": round(variant.median("listening_s"), 4),
            "cold_start_s": round(variant.median("cold_start_s"), 4),
            "cold_start_s_all": [round(r.cold_start_s, 4) for r in variant.runs],
            "cpu_to_first_rpc_s": round(variant.median("cpu_s"), 3),
            "idle_rss_python_mb": round(variant.median("rss_python_mb"), 1),
            "idle_rss_total_mb": round(variant.median("rss_total_mb"), 1),
            "exit_codes": sorted({r.exit_code for r in variant.runs}),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--binary", type=Path, default=Path("dist/provd"))
    parser.add_argument("--onedir", type=Path, default=Path("dist/provd-onedir/provd"))
    parser.add_argument(
        "--portable",
        type=Path,
        default=Path("dist/provd-portable"),
        help="The portable executable (just portable); measured when it exists.",
    )
    parser.add_argument("--package", type=Path, default=Path(".venv/bin/provd"))
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--cli-only", action="store_true", help="Skip the server start-up.")
    parser.add_argument(
        "--compare-src", type=Path, default=None, help="Also time the CLI from this tree."
    )
    parser.add_argument(
        "--compare-binary",
        type=Path,
        default=None,
        help="Also time this one-file build (e.g. a copy of the previous dist/provd).",
    )
    parser.add_argument(
        "--compare-onedir", type=Path, default=None, help="Also time this one-dir build."
    )
    parser.add_argument(
        "--no-frozen-cli",
        action="store_true",
        help="Time only the package's commands, not the frozen builds' too.",
    )
    parser.add_argument(
        "--cold-bytecode",
        action="store_true",
        help="Write no .pyc (PYTHONDONTWRITEBYTECODE=1) instead of a warm private cache.",
    )
    args = parser.parse_args()

    result: dict[str, object] = {} if args.cli_only else bench_server(args)
    if not args.package.is_file():
        sys.exit(f"{args.package} not found: the CLI is measured from the package")
    frozen = [
        CliProgram(label, str(path.resolve()), frozen=True)
        for label, path in (
            ("one file", args.binary),
            ("one dir", args.onedir),
            ("portable", args.portable),
            ("one file (compare)", args.compare_binary),
            ("one dir (compare)", args.compare_onedir),
        )
        if path is not None and path.is_file() and not args.no_frozen_cli
    ]
    times = bench_cli(
        args.package,
        args.cli_runs,
        args.compare_src,
        frozen=frozen,
        cold_bytecode=args.cold_bytecode,
    )
    bytecode = "cold" if args.cold_bytecode else "warm"
    if not args.cli_only:
        print()
    install = install_kind(args.package)
    print_cli_table(times, args.cli_runs, install, bytecode)
    mine = [t for t in times if t.source == "this tree"]
    result["cli"] = {
        "runs": args.cli_runs,
        "package": str(args.package),
        "install": install,
        "bytecode": bytecode,
        "goal_median_s": CLI_GOAL_S,
        "met": {t.command: t.summary()["median_s"] <= CLI_GOAL_S for t in mine},
        **{t.command: t.summary() for t in mine},
        **(
            {
                "compare": {
                    "source": str(args.compare_src),
                    **{t.command: t.summary() for t in times if t.source != "this tree"},
                }
            }
            if args.compare_src
            else {}
        ),
    }
    # The frozen builds' commands, against the same server (goal: CLI_FROZEN_GOAL_S).
    for program in frozen:
        own = [t for t in times if t.program == program]
        result[f"cli_{program.label.replace(' ', '_').replace('(', '').replace(')', '')}"] = {
            "path": program.argv0,
            "goal_median_s": program.goal_s,
            "met": {t.command: t.summary()["median_s"] <= program.goal_s for t in own},
            **{t.command: t.summary() for t in own},
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
