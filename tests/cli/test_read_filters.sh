# test_read_filters.sh - proves the filters of `stele read`: --from/--to
# (inclusive LSN bounds), --type and --stream (exact match), --limit, and
# --since/--until (inclusive recorded-time bounds, RFC 3339 with any offset),
# each checked against the same filter applied by jq to the full read; and
# --follow: it prints records appended after it started and exits 0 on
# SIGTERM or SIGINT, or by itself once --limit or --to is reached.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

# Twelve records from separate appends, so recorded times differ.
for i in $(seq 12); do
    run 0 "$STELE" append "$L" --type "t$((i % 3))" --stream "s$((i % 2))" --data "{\"i\":$i}"
done
run 0 "$STELE" read "$L"
cp "$T/out" "$T/all"

# read_matches JQ_SELECT ARGS...: `stele read ARGS` prints the LSNs that
# jq's select(JQ_SELECT) picks from the full read, in order.
read_matches() {
    local sel=$1
    shift
    run 0 "$STELE" read "$L" "$@"
    check_eq "$(jq -c -s 'map(.lsn)' "$T/out")" "$(jq -c -s "map(select($sel) | .lsn)" "$T/all")" "read $*"
}
read_matches '.lsn >= 5' --from 5
read_matches '.lsn <= 4' --to 4
read_matches '.lsn >= 3 and .lsn <= 9' --from 3 --to 9
read_matches '.lsn == 7' --from 7 --to 7
read_matches 'false' --from 9 --to 3
read_matches 'false' --from 100
read_matches '.type == "t1"' --type t1
read_matches '.stream == "s0"' --stream s0
read_matches '.type == "t2" and .stream == "s1" and .lsn > 2' --type t2 --stream s1 --from 3
read_matches '.lsn <= 5' --limit 5
run 0 "$STELE" read "$L" --type t0 --from 4 --limit 2
check_eq "$(jq -c -s 'map(.lsn)' "$T/out")" "$(jq -c -s '[.[] | select(.type == "t0" and .lsn >= 4) | .lsn][:2]' "$T/all")" \
    "--limit counts printed records, after the filters"
read_matches 'false' --limit 0
read_matches 'false' --type nosuchtype

t4=$(jq -r 'select(.lsn == 4) | .recorded_at' "$T/all")
t9=$(jq -r 'select(.lsn == 9) | .recorded_at' "$T/all")
read_matches ".recorded_at >= \"$t4\"" --since "$t4"
read_matches ".recorded_at <= \"$t9\"" --until "$t9"
read_matches ".recorded_at >= \"$t4\" and .recorded_at <= \"$t9\" and .type == \"t0\"" --since "$t4" --until "$t9" --type t0
# The same instant written with a +01:00 offset, and with fewer fractional digits.
t4_plus1=$(TZ=Etc/GMT-1 date -d "$t4" +%Y-%m-%dT%H:%M:%S.%N%:z)
[[ $t4_plus1 == *+01:00 ]] || fail "could not write $t4 with an offset: $t4_plus1"
read_matches ".recorded_at >= \"$t4\"" --since "$t4_plus1"
read_matches ".recorded_at >= \"${t4:0:19}\"" --since "${t4:0:19}Z"
read_matches 'true' --since 1970-01-01T00:00:00Z --until 2500-01-01T00:00:00.5-05:30

# --follow: records appended later are printed; a signal ends it with 0.
for sig in TERM INT; do
    last=$(jq -s 'map(.lsn) | max' "$T/all")
    : >"$T/follow"
    "$STELE" read "$L" --from $((last + 1)) --follow >"$T/follow" 2>"$T/follow.err" &
    pid=$!
    run 0 "$STELE" append "$L" --data '"first"'
    run 0 "$STELE" append "$L" --data '"second"'
    for _ in $(seq 200); do
        [ "$(wc -l <"$T/follow")" -ge 2 ] && break
        sleep 0.05
    done
    kill -"$sig" "$pid"
    rc=0
    wait "$pid" || rc=$?
    check_eq "$rc" 0 "read --follow exit status after SIG$sig"
    check_jq "$T/follow" 'map(.data) == ["first","second"]' "read --follow saw both new records"
    run 0 "$STELE" read "$L"
    cp "$T/out" "$T/all"
done

# --follow with --limit or --to stops by itself.
last=$(jq -s 'map(.lsn) | max' "$T/all")
"$STELE" read "$L" --from $((last + 1)) --follow --limit 1 >"$T/follow" &
pid1=$!
"$STELE" read "$L" --follow --to $((last + 1)) >"$T/follow_to" &
pid2=$!
run 0 "$STELE" append "$L" --data '"third"'
for pid in $pid1 $pid2; do
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        fail "read --follow with a limit did not stop by itself"
    fi
    wait "$pid" || fail "read --follow with a limit failed"
done
check_jq "$T/follow" 'map(.data) == ["third"]' "--follow --limit 1"
check_jq "$T/follow_to" 'last.data == "third" and length == '$((last + 1)) "--follow --to"
echo "ok"
