# lib.sh - what the tests/serve/test_*.sh scripts share, on top of
# tests/cli/lib.sh: stele serve started on an ephemeral loopback port and
# stopped, HTTP requests through client.py (raw sockets), and the
# Prometheus validator of tests/cli. Sourced, not run.
source "$(dirname "$0")/../cli/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: these tests need python3"; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
SERVE_PID=
trap 'serve_kill; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT

# Every serve runs under timeout(1) (which passes SIGTERM and SIGINT on and
# exits with serve's status): should the test be killed before its trap
# runs (ctest's timeout), no serve outlives it by more than SERVE_LIFE_S.
# --foreground: the signal goes to serve alone, not to its process group
# (under ASan, a SIGTERM reaching LeakSanitizer's helper while it checks at
# exit was seen to leave serve spinning).
SERVE_LIFE_S=100

# serve_start DIR...: starts stele serve on 127.0.0.1:0 and sets $PORT once
# it printed the address it listens on (it listens before printing).
serve_start() {
    rm -f "$T/serve.out"
    timeout --foreground "$SERVE_LIFE_S" "$STELE" serve "$@" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
    SERVE_PID=$!
    local k
    for k in $(seq 1 400); do
        [ -s "$T/serve.out" ] && break
        kill -0 "$SERVE_PID" 2>/dev/null || fail "stele serve exited: $(cat "$T/serve.err")"
        sleep 0.05
    done
    [ -s "$T/serve.out" ] || fail "stele serve did not listen in 20 s"
    PORT=$(jq -r '.listen | sub(".*:"; "")' "$T/serve.out")
}

# serve_stop SIGNAL: stops serve with SIGNAL and checks it exits 0, alive until then.
serve_stop() {
    kill -0 "$SERVE_PID" 2>/dev/null || fail "stele serve is not running (crashed?): $(cat "$T/serve.err")"
    kill "-$1" "$SERVE_PID"
    local rc=0
    wait "$SERVE_PID" || rc=$?
    SERVE_PID=
    check_eq "$rc" 0 "stele serve's exit status after SIG$1"
}

serve_kill() {
    if [ -n "$SERVE_PID" ]; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
        SERVE_PID=
    fi
}

# http WANT_STATUS PATH [METHOD [BODY]]: the body in $T/body, headers in $T/head.
http() {
    local want=$1
    shift
    python3 "$HERE/client.py" get "$PORT" "$@" >"$T/answer" 2>"$T/head" || fail "client.py get $*: $(cat "$T/head")"
    local got
    got=$(head -n 1 "$T/answer")
    tail -n +2 "$T/answer" >"$T/body"
    [ "$got" == "$want" ] || fail "$* answered $got, expected $want: $(head -c 2000 "$T/body")"
}

# prom_validate FILE: the Prometheus text format checks of tests/cli.
prom_validate() {
    awk -f "$HERE/../cli/prometheus.awk" "$1" || fail "$1 is not valid Prometheus text"
}

# metric FILE NAME: the value of the sample NAME (labels included) in FILE.
metric() {
    awk -v m="$2" '$1 == m { print $2 }' "$1"
}
