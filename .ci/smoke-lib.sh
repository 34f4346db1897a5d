# shellcheck shell=bash
# The end-to-end checks of a frozen provd, shared by .ci/package-smoke (the one file, on
# this machine) and .ci/portable-smoke (the portable executable, inside a Debian 11
# root and inside a root with no libc). Sourced, not run; the caller has `set -euo
# pipefail` and sets:
#
#   work      a new empty directory for the run (logs, data, TMPDIR), as this machine
#             sees it
#   provd     an array: the command that runs provd, e.g. ("$PWD/dist/provd"), or
#             (unshare --root=ROOT --wd=DIR /provd) to run it inside ROOT
#   root      "" on this machine, else the root directory provd runs in; `work` must
#             be inside it. Paths handed to provd are `inside` it; the checks read the
#             same files from here.
#   pids      an array, () to start with: every process started, for `cleanup`
#
# Then: `trap cleanup EXIT`, the caller's own steps, `smoke_begin` (TMPDIR and the
# environment provd runs in), and `smoke_run`: serve, the dashboard, daemon, the
# examples and three jobs through the CLI, the listings, SIGTERM to both (exit 0) and
# nothing left behind. `fail` ends the run with every log printed.

smoke_name=${smoke_name:-smoke}
started_at=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started_at))"; }
fail() {
    printf '%s: FAILED: %s\n' "$smoke_name" "$*" >&2
    for log in "$work"/*.log; do
        [ -f "$log" ] && printf -- '--- %s\n' "$log" >&2 && cat "$log" >&2
    done
    exit 1
}

# A path under `root` as provd sees it.
inside() { printf '%s\n' "${1#"$root"}"; }

# Every descendant of a process (the one file: the bootloader's Python child; the
# portable one: staticx's bootloader, then PyInstaller's, then Python).
descendants() {
    local child
    for child in $(cat "/proc/$1/task/$1/children" 2>/dev/null || true); do
        echo "$child"
        descendants "$child"
    done
}

cleanup_processes() {
    local pid
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        echo "$smoke_name: killing leftover process $pid" >&2
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do  # let them go before their files do
        wait "$pid" 2>/dev/null || true  # reaps this shell's children; others: no-op
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
}

cleanup() {
    cleanup_processes
    rm -rf "$work"
}

# Wait up to LIMIT seconds for PID (a child of this shell) to exit; its exit status goes
# to $status. Fails if it is still running.
wait_exit() {
    local pid=$1 limit=$2 tenths=0
    while kill -0 "$pid" 2>/dev/null && [ "$tenths" -lt $((limit * 10)) ]; do
        sleep 0.1
        tenths=$((tenths + 1))
    done
    kill -0 "$pid" 2>/dev/null && return 1
    status=0
    wait "$pid" || status=$?
}

mei_in_tmp() { find /tmp -maxdepth 1 -name '_MEI*' -printf '%f\n' 2>/dev/null | sort; }
# What a frozen provd unpacks into TMPDIR: PyInstaller's _MEIxxxxxx, staticx's
# staticx-xxxxxx.
unpacked() { find "$work/tmp" -maxdepth 1 \( -name '_MEI*' -o -name 'staticx-*' \); }

# `provd version`'s output in FILE names the platform, a commit and a build date.
check_version() {
    grep -Eq "^platform +linux-$(uname -m)\$" "$1" || fail "provd version shows no platform"
    grep -Eq '^commit +[0-9a-f]{40}' "$1" || fail "provd version shows no commit"
    grep -Eq '^built +[0-9]{4}-' "$1" || fail "provd version shows no build date"
}

# The environment every provd of the run gets: a private TMPDIR (so that the leftover
# check sees this run only), no PROVD_* from outside, and no CA store (over http://
# provd needs none; https:// would fall back to certifi's bundle inside it).
smoke_begin() {
    mei_before=$(mei_in_tmp)
    mkdir -p "$work/tmp" "$work/no-roots" "$work/try"
    TMPDIR=$(inside "$work/tmp")
    SSL_CERT_FILE=$(inside "$work/no-roots")/none.pem
    SSL_CERT_DIR=$(inside "$work/no-roots")
    export TMPDIR SSL_CERT_FILE SSL_CERT_DIR
    unset PROVD_ADMIN_TOKEN PROVD_DAEMON_PSK PROVD_URL PROVD_DB PROVD_LISTEN
}

# GET $url$1 into $work/ui.body and its headers into $work/ui.headers (lower-cased
# names); prints the status. curl when there is one, else Python's urllib.
fetch_ui() {
    if command -v curl >/dev/null; then
        curl -sS --max-time 10 -D "$work/ui.raw" -o "$work/ui.body" -w '%{http_code}' "$url$1"
    else
        python3 - "$url$1" "$work/ui.raw" "$work/ui.body" <<'PY'
import sys, urllib.error, urllib.request
try:
    response = urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError as error:
    response = error
open(sys.argv[2], "w").write("".join(f"{k}: {v}\n" for k, v in response.headers.items()))
open(sys.argv[3], "wb").write(response.read())
print(response.status, end="")
PY
    fi
    tr -d '\r' <"$work/ui.raw" | sed 's/^[^:]*:/\L&/' >"$work/ui.headers"
}
check_ui() {  # PATH CONTENT-TYPE TEXT-IN-THE-BODY
    local code
    code=$(fetch_ui "$1") || fail "GET $1 from the frozen server failed"
    [ "$code" = 200 ] || fail "GET $1: status $code, not 200"
    grep -qi "^content-type: $2" "$work/ui.headers" || fail "GET $1: not $2: $(cat "$work/ui.headers")"
    grep -q "^content-security-policy: default-src 'self'; script-src 'self';" "$work/ui.headers" \
        || fail "GET $1: no strict Content-Security-Policy: $(cat "$work/ui.headers")"
    grep -q "^x-content-type-options: nosniff" "$work/ui.headers" \
        || fail "GET $1: no X-Content-Type-Options: nosniff"
    grep -qF "$3" "$work/ui.body" || fail "GET $1: no '$3' in the body"
    echo "GET $1: $code, $2, $(wc -c <"$work/ui.body") bytes, strict CSP"
}

smoke_run() {
    local db try serve_pid daemon_pid url pid left new_in_tmp
    db=$work/data/provd.db
    # The executable alone: an empty working directory, no examples/ beside it.
    try=$work/try
    cd "$try"
    echo "working directory $(inside "$try") (empty); SSL_CERT_FILE=$SSL_CERT_FILE SSL_CERT_DIR=$SSL_CERT_DIR"

    step "frozen provd serve --listen 127.0.0.1:0 --db $(inside "$db")"
    # The log exists before the loop below reads it (the redirection happens in the
    # background child, which may not have run yet).
    : >"$work/serve.log"
    "${provd[@]}" serve --listen 127.0.0.1:0 --db "$(inside "$db")" >"$work/serve.log" 2>&1 &
    serve_pid=$!
    pids+=("$serve_pid")
    url=
    for _ in $(seq 300); do
        url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/serve.log")
        [ -n "$url" ] && break
        kill -0 "$serve_pid" 2>/dev/null || fail "provd serve exited before listening"
        sleep 0.1
    done
    [ -n "$url" ] || fail "provd serve printed no 'listening on' line in 30 s"
    # shellcheck disable=SC2207  # PIDs: one word each
    pids+=($(descendants "$serve_pid"))
    echo "server pid $serve_pid (below it: $(descendants "$serve_pid" | paste -sd' ')), listening on $url"
    [ -s "$work/data/daemon-psk" ] && [ -s "$work/data/admin-token" ] \
        || fail "provd serve wrote no daemon-psk/admin-token beside the database"

    step "the frozen server serves the dashboard: / and /ui/app.js"
    check_ui / "text/html" '<script type="module" src="/ui/app.js">'
    check_ui /ui/app.js "text/javascript" "The dashboard's entry point"

    step "frozen provd daemon --url $url --db $(inside "$db") (key from the daemon-psk file)"
    "${provd[@]}" daemon --url "$url" --db "$(inside "$db")" >"$work/daemon.log" 2>&1 &
    daemon_pid=$!
    pids+=("$daemon_pid")
    sleep 1
    kill -0 "$daemon_pid" 2>/dev/null || fail "provd daemon exited"
    # shellcheck disable=SC2207
    pids+=($(descendants "$daemon_pid"))
    echo "daemon pid $daemon_pid (below it: $(descendants "$daemon_pid" | paste -sd' '))"

    # The CLI reads the admin-token file beside PROVD_DB.
    PROVD_URL=$url PROVD_DB=$(inside "$db")
    export PROVD_URL PROVD_DB

    step "frozen provd examples list"
    "${provd[@]}" examples list | tee "$work/examples.out"
    for name in hello workspace slow needs-variables broken; do
        grep -q "^$name " "$work/examples.out" || fail "provd examples list does not show $name"
    done

    step "frozen provd jobs create --type import --archive example:hello --follow"
    timeout 60 "${provd[@]}" jobs create --type import --archive example:hello --follow \
        >"$work/job.log" 2>&1 || fail "the import job did not succeed (exit $?)"
    cat "$work/job.log"
    grep -q 'succeeded' "$work/job.log" || fail "no 'succeeded' in the job's output"

    step "frozen provd jobs create --type build --archive example:workspace --workspace dev --follow"
    timeout 60 "${provd[@]}" jobs create --type build --archive example:workspace --workspace dev \
        --follow >"$work/build.log" 2>&1 || fail "the build job did not succeed (exit $?)"
    tail -n 3 "$work/build.log"
    grep -q 'succeeded' "$work/build.log" || fail "no 'succeeded' in the build's output"

    step "frozen provd examples extract hello ./my-template, and a job from it"
    "${provd[@]}" examples extract hello ./my-template
    [ -s my-template/provd-echo.json ] && [ -s my-template/README.md ] \
        || fail "provd examples extract wrote no my-template/provd-echo.json and README.md"
    timeout 60 "${provd[@]}" jobs create --type dry-run --archive ./my-template --follow \
        >"$work/dry-run.log" 2>&1 || fail "the dry run from ./my-template did not succeed (exit $?)"
    grep -q 'succeeded' "$work/dry-run.log" || fail "no 'succeeded' in the dry run's output"

    step "frozen provd jobs list / daemons list"
    "${provd[@]}" jobs list --status succeeded | tee "$work/jobs.out"
    grep -q 'import' "$work/jobs.out" || fail "provd jobs list shows no succeeded import job"
    "${provd[@]}" daemons list | tee "$work/daemons.out"
    grep -q 'echo' "$work/daemons.out" || fail "provd daemons list shows no echo daemon"

    mei_during=$(find "$work/tmp" -maxdepth 1 -name '_MEI*' | wc -l)
    echo "unpacked _MEI directories while running: $mei_during"
    [ "$mei_during" -ge 2 ] || fail "expected the server's and the daemon's _MEI directories in $TMPDIR"

    step "SIGTERM to the daemon (pid $daemon_pid)"
    kill -TERM "$daemon_pid"
    wait_exit "$daemon_pid" 20 || fail "provd daemon still running 20 s after SIGTERM"
    echo "provd daemon exited with $status"
    [ "$status" = 0 ] || fail "provd daemon exited with $status after SIGTERM"

    step "SIGTERM to the server (pid $serve_pid)"
    kill -TERM "$serve_pid"
    wait_exit "$serve_pid" 20 || fail "provd serve still running 20 s after SIGTERM"
    echo "provd serve exited with $status"
    [ "$status" = 0 ] || fail "provd serve exited with $status after SIGTERM"
    grep -q 'SIGTERM, shutting down' "$work/serve.log" || fail "SIGTERM did not reach provd serve"

    step "nothing left behind"
    sleep 0.2
    for pid in "${pids[@]}"; do
        ! kill -0 "$pid" 2>/dev/null || fail "process $pid is still running"
    done
    left=$(unpacked)
    [ -z "$left" ] || fail "left behind: $left"
    new_in_tmp=$(comm -13 <(echo "$mei_before") <(mei_in_tmp))
    [ -z "$new_in_tmp" ] || fail "new in /tmp: $new_in_tmp"
    echo "nothing unpacked left in $TMPDIR (_MEI*, staticx-*) or /tmp; no process left"
    cd - >/dev/null
}
