# test_exit_codes.sh - proves the documented exit codes and the one-line
# "stele: ..." error on stderr: 2 for usage errors and invalid input, 3 for a
# key or stream-version conflict, 4 for a missing log or LSN, 1 for other
# failures. (5, corruption, is proved in test_verify.sh.) Failed commands
# change nothing.
source "$(dirname "$0")/lib.sh"
L=$T/log

# 2: usage errors, before any log is touched.
run 2 "$STELE"
run 2 "$STELE" frobnicate "$L"
check_stderr_line "unknown command"
run 2 "$STELE" --bogus read "$L"
run 2 "$STELE" read
check_stderr_line "missing DIR"
run 2 "$STELE" read "$L" "$L"
check_stderr_line "two DIRs"
run 2 "$STELE" read "$L" --bogus
check_stderr_line "unknown option"
run 2 "$STELE" read "$L" --limit
check_stderr_line "option without its value"
run 2 "$STELE" read "$L" --limit ten
check_stderr_line "not a number"
run 2 "$STELE" read "$L" --from -1
run 2 "$STELE" read "$L" --since yesterday
run 2 "$STELE" read "$L" --since 2026-02-30T00:00:00Z
check_stderr_line "no such date"
run 2 "$STELE" read "$L" --since 2026-01-01T00:00:00
check_stderr_line "time without offset"
run 2 "$STELE" get "$L"
check_stderr_line "get without --lsn"
run 2 "$STELE" init "$L" --segment-size 64Q
run 2 "$STELE" init "$L" --idem-window 10
check_stderr_line "duration without unit"
run 2 "$STELE" init "$L" --compression lz4
run 2 "$STELE" init "$L" --durability maybe
run 2 "$STELE" append "$L" --type "$(printf 'x%.0s' $(seq 256))"
check_stderr_line "type longer than 255 bytes"
run 2 "$STELE" append "$L" --key $'\xff'
check_stderr_line "key not UTF-8"
run 2 "$STELE" append "$L" --event-time 1970-01-01T00:00:00Z
check_stderr_line "event time 0 is the engine's 'now'"
run 2 "$STELE" append "$L" --jsonl --key k
check_stderr_line "--jsonl with event options"
[ ! -e "$L" ] || fail "usage errors created $L"

# 2: an option value the engine refuses (segment size below 64 KiB).
run 2 "$STELE" init "$L" --segment-size 4K
check_stderr_line "segment size out of bounds"

# 4: no log there.
run 4 "$STELE" read "$L"
check_stderr_line "read without a log"
run 4 "$STELE" append "$L" --data x
run 4 "$STELE" stats "$L"
run 4 "$STELE" get "$L" --lsn 1
run 4 "$STELE" verify "$L"

run 0 "$STELE" init "$L" --segment-size 64K --idem-window 1h30m --durability sync
check_jq "$T/out" '.[0].segment_size == 65536 and .[0].idem_window == "90m"' "init options"
# 1: a log is already there.
run 1 "$STELE" init "$L"
check_stderr_line "init over a log"

run 0 "$STELE" append "$L" --key order-1 --stream cart-7 --expect-version 0 --data '{"total":10}'
# 4: no such LSN.
run 4 "$STELE" get "$L" --lsn 2
check_stderr_line "get beyond the end"
run 4 "$STELE" get "$L" --lsn 0

# 3: same key, different request; the receipt names the original.
run 3 "$STELE" append "$L" --key order-1 --stream cart-7 --data '{"total":11}'
check_eq "$(jq -c . "$T/out")" '{"lsn":1,"decision":"conflict","stream_version":1,"reason":"different_request"}' "key conflict receipt"
check_stderr_line "key conflict"
# 3: the stream is not at the expected version; nothing appended.
run 3 "$STELE" append "$L" --key order-2 --stream cart-7 --expect-version 0 --data '{"total":12}'
check_eq "$(jq -c . "$T/out")" '{"lsn":null,"decision":"conflict","stream_version":1,"reason":"stream_version"}' "stream version receipt"
run 0 "$STELE" append "$L" --key order-2 --stream cart-7 --expect-version 1 --data '{"total":12}'
check_eq "$(cat "$T/out")" '{"lsn":2,"decision":"new","stream_version":2}' "expected version met"
# 0: a duplicate is success.
run 0 "$STELE" append "$L" --key order-2 --stream cart-7 --expect-version 1 --data '{"total":12}'
check_eq "$(cat "$T/out")" '{"lsn":2,"decision":"duplicate","stream_version":2}' "duplicate"

run 0 "$STELE" stats "$L"
check_jq "$T/out" '.[0].last_lsn == 2' "failed appends appended nothing"
echo "ok"
