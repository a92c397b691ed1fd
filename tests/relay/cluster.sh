# cluster.sh - a real 3-node NATS JetStream cluster on loopback for the relay
# tests (tests/relay/test_*.sh): random free ports, a store directory per
# node under $T, cluster routes between the three. Sourced after
# tests/cli/lib.sh (which gives $T, its removal on exit, and fail); the
# servers are stopped by the EXIT trap set here, on success and on failure.
#
#   cluster_start           starts n1 n2 n3 and waits until each takes clients
#   node_kill N / node_start N / node_pause N / node_resume N
#   $NATS_URLS              nats://127.0.0.1:P1,nats://127.0.0.1:P2,nats://127.0.0.1:P3

NATS_SERVER=$(command -v nats-server || true)
[ -n "$NATS_SERVER" ] || { echo "SKIP: nats-server is not installed (Debian: apt-get install nats-server)"; exit 77; }

declare -a NODE_PID NODE_PORT NODE_CPORT

# A port nothing listens on now (a race with other programs is possible and
# shows up as a node that never starts, reported as such).
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    fail "no free port found"
}

cluster_stop() {
    local i
    for i in 1 2 3; do
        local pid=${NODE_PID[$i]:-}
        if [ -n "$pid" ]; then
            kill -CONT "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap 'cluster_stop; chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT

node_start() {
    local i=$1 routes="nats://127.0.0.1:${NODE_CPORT[1]},nats://127.0.0.1:${NODE_CPORT[2]},nats://127.0.0.1:${NODE_CPORT[3]}"
    mkdir -p "$T/nats$i"
    "$NATS_SERVER" -a 127.0.0.1 -p "${NODE_PORT[$i]}" -js -sd "$T/nats$i" --server_name "n$i" \
        --cluster "nats://127.0.0.1:${NODE_CPORT[$i]}" --cluster_name stele-test --routes "$routes" \
        -l "$T/nats$i.log" &
    NODE_PID[$i]=$!
    local k
    for k in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/${NODE_PORT[$i]}") 2>/dev/null; then
            return
        fi
        kill -0 "${NODE_PID[$i]}" 2>/dev/null || { tail -5 "$T/nats$i.log" >&2; fail "nats-server n$i exited"; }
        sleep 0.1
    done
    fail "nats-server n$i does not listen on ${NODE_PORT[$i]} after 10 s"
}

node_kill() {
    kill -KILL "${NODE_PID[$1]}" 2>/dev/null || true
    wait "${NODE_PID[$1]}" 2>/dev/null || true
    NODE_PID[$1]=""
}
node_pause() { kill -STOP "${NODE_PID[$1]}"; }
node_resume() { kill -CONT "${NODE_PID[$1]}"; }

cluster_start() {
    local i
    for i in 1 2 3; do
        NODE_PORT[$i]=$(free_port)
        NODE_CPORT[$i]=$(free_port)
    done
    for i in 1 2 3; do node_start "$i"; done
    NATS_URLS="nats://127.0.0.1:${NODE_PORT[1]},nats://127.0.0.1:${NODE_PORT[2]},nats://127.0.0.1:${NODE_PORT[3]}"
}

# The node number (1-3) of a server name n1..n3.
node_of() { echo "${1#n}"; }

# cursor_of DIR CONSUMER: the consumer's committed position (stele stats
# --prometheus), 0 before its first commit. (Asked only once the cursor file
# exists: stele stats on a consumers/ directory holding lock files only
# passes qsort a NULL array, which UBSan stops; an engine/cursor.c bug.)
cursor_of() {
    [ -e "$1/consumers/$2.cursor" ] || { echo 0; return; }
    "$STELE" stats "$1" --prometheus | awk -v c="stele_consumer_position{consumer=\"$2\"}" '$1 == c {print $2; f=1} END {if (!f) print 0}'
}

# wait_cursor DIR CONSUMER LSN SECONDS: waits until the cursor reaches LSN.
wait_cursor() {
    local k
    for k in $(seq 1 $(($4 * 10))); do
        [ "$(cursor_of "$1" "$2")" -ge "$3" ] && return
        sleep 0.1
    done
    fail "cursor $2 of $1 at $(cursor_of "$1" "$2") after $4 s, expected $3"
}

# check_exactly_once DUMP WANT: the dump's LSN column (js_tool dump) is
# exactly the LSNs in file WANT, each once, in that order.
check_exactly_once() {
    awk '{print $3}' "$1" > "$1.lsns"
    local dups
    dups=$(sort -n "$1.lsns" | uniq -d | head -5 | tr '\n' ' ')
    [ -z "$dups" ] || fail "LSNs stored twice in the stream: $dups"
    if ! cmp -s "$1.lsns" "$2"; then
        diff "$2" "$1.lsns" | head -10 >&2
        fail "the stream does not hold exactly the selected LSNs in order ($(wc -l < "$1.lsns") messages, $(wc -l < "$2") wanted)"
    fi
}
