# lib.sh - what the tests/deliver/test_*.sh scripts share, on top of
# tests/cli/lib.sh: a signing secret, the receiver (receiver.py, a real HTTP
# server on loopback that checks signatures itself) started and stopped, and
# the deliver command line. Sourced, not run.
source "$(dirname "$0")/../cli/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: these tests need python3"; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
printf 'whsec_%s\n' "$(head -c 32 /dev/urandom | base64 -w0)" > "$T/secret"
RECEIVER_PID=
trap 'receiver_stop; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT

# receiver_start [PLAN_JSON]: starts a receiver logging to $T/recv.log and
# sets $URL once it listens.
receiver_start() {
    rm -f "$T/port" "$T/recv.log"
    local plan=()
    if [ -n "${1:-}" ]; then
        printf '%s' "$1" > "$T/plan.json"
        plan=(--plan "$T/plan.json")
    fi
    python3 "$HERE/receiver.py" --secret-file "$T/secret" --log "$T/recv.log" --port-file "$T/port" \
        "${plan[@]}" 2> "$T/recv.err" &
    RECEIVER_PID=$!
    local k
    for k in $(seq 1 200); do
        [ -s "$T/port" ] && break
        kill -0 "$RECEIVER_PID" 2>/dev/null || fail "the receiver exited: $(cat "$T/recv.err")"
        sleep 0.05
    done
    [ -s "$T/port" ] || fail "the receiver did not start in 10 s"
    URL="http://127.0.0.1:$(cat "$T/port")/hook"
    touch "$T/recv.log"
}

receiver_stop() {
    if [ -n "$RECEIVER_PID" ]; then
        kill "$RECEIVER_PID" 2>/dev/null || true
        wait "$RECEIVER_PID" 2>/dev/null || true
        RECEIVER_PID=
    fi
}

# deliver ARGS...: stele deliver of the log $T/log at $URL (endpoint e1
# unless ARGS say --endpoint).
deliver() {
    "$STELE" deliver "$T/log" --endpoint e1 --url "$URL" --secret-file "$T/secret" "$@"
}

# append_events N [STREAMS]: N events, keys kSTREAMS.1..kSTREAMS.N, type t.a / t.b
# alternately, in STREAMS streams s0.. (0 = no stream).
append_events() {
    local n=$1 streams=${2:-0}
    python3 -c '
import json, sys
n, s = int(sys.argv[1]), int(sys.argv[2])
for i in range(1, n + 1):
    e = {"type": "t.a" if i % 2 else "t.b", "key": "k%d.%d" % (s, i), "data": {"i": i}}
    if s:
        e["stream"] = "s%d" % (i % s)
    print(json.dumps(e))
' "$n" "$streams" | "$STELE" append "$T/log" --jsonl > /dev/null
}

# check_signed: every request the receiver logged carried a valid signature
# and a fresh timestamp.
check_signed() {
    check_jq "$T/recv.log" 'length > 0 and all(.[]; .sig_ok and .ts_ok)' "every request is signed"
}

# check_stream_order: within each stream, requests (retries included) never
# go back in LSN order, and each 2xx is for a higher LSN than the one before.
check_stream_order() {
    check_jq "$T/recv.log" '[group_by(.stream)[] | select(.[0].stream != null) | map(.lsn) as $l
        | [range(1; $l | length) | $l[.] >= $l[. - 1]] | all] | all' "requests of a stream in LSN order"
}
