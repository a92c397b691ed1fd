# test_breaker.sh - the circuit breaker of stele deliver (SPEC.md §22.3): the
# receiver fails its first 12 requests (503, each held 30 ms). With
# --breaker 2 and --concurrency 4 the breaker opens after at most 5
# requests; every later failure is a probe: alone on the wire (no other
# request being handled when it arrives) and at least one backoff interval
# after the one before. Probes spend no attempts: an event can fail at most
# twice before the breaker opens (the second failure in a row opens it), so
# with --max-attempts 3 no event becomes a dead letter (were probes counted,
# the 7 or more failed probes would kill events), and each of the 20 events
# is answered 200 exactly once (12 + 20 requests in all).
source "$(dirname "$0")/lib.sh"
run 0 "$STELE" init "$T/log"
append_events 20 0
receiver_start "$(python3 -c 'import json; print(json.dumps({"first": [{"status": 503, "hold_ms": 30}] * 12}))')"
run 0 deliver --concurrency 4 --breaker 2 --max-attempts 3 --backoff-base 20 --backoff-max 80
check_jq "$T/out" '.[0] | .delivered == 20 and .dead_letters == 0 and .breaker_opens >= 1 and .probes >= 7
    and .cursor == 20' "the run's summary"
check_signed
check_jq "$T/recv.log" 'length == 32 and ([.[] | select(.status == 200) | .lsn] | sort) == [range(1; 21)]' \
    "12 failures, then each event once"
check_jq "$T/recv.log" 'sort_by(.n) | .[7:13] | all(.[]; .active == 1)' "probes go alone"
check_jq "$T/recv.log" 'sort_by(.n) | [.[6:13][].t] as $t | [range(1; $t | length) | $t[.] - $t[. - 1] >= 0.035] | all' \
    "a probe per backoff interval"
grep -q 'circuit breaker open after 2 consecutive failures' "$T/err" || fail "the breaker opening is reported: $(cat "$T/err")"
grep -q 'circuit breaker closed after' "$T/err" || fail "the breaker closing is reported: $(cat "$T/err")"
echo "ok"
