# test_rules.sh - proves the Grafana dashboard (tools/grafana/stele.json)
# and the Prometheus alerting rules (tools/prometheus/stele-rules.yml)
# cannot drift from what stele serve exposes: every metric name their
# queries use (and the series of the rules' unit tests) is in a live scrape
# of /metrics over a log with pending intents, a consumer with a dead letter
# and a corrupt log beside it (so every family appears); every panel query
# filters on the dashboard's $log variable, which lists stele_log_up's log
# label. Then promtool (Debian: prometheus) checks the rules, parses every
# dashboard query (as recording rules, $log and $__rate_interval filled in)
# and runs the rules' unit tests (stele-rules.test.yml: each alert fires
# when it should, and not before). Without promtool the name checks still
# run and the test is skipped (77), saying so.
source "$(dirname "$0")/lib.sh"
ROOT=$HERE/../..
DASH=$ROOT/tools/grafana/stele.json
RULES=$ROOT/tools/prometheus/stele-rules.yml
RULES_TEST=$HERE/stele-rules.test.yml

A=$T/orders
B=$T/broken
run 0 "$STELE" init "$A"
run 0 "$STELE" init "$B"
chmod u+w "$B/stele.meta"
head -c 4096 /dev/zero >"$B/stele.meta"
printf '%s\n' '{"key":"o1","type":"placed","stream":"s"}' '{"kind":"intent","key":"pay-1","type":"pay"}' \
    '{"key":"o2","type":"placed"}' >"$T/events.jsonl"
run 0 "$STELE" append "$A" --jsonl <"$T/events.jsonl"
printf '#!/bin/sh\ncat >/dev/null\n[ "$STELE_LSN" -eq 2 ] && exit 1\nexit 0\n' >"$T/h.sh"
chmod +x "$T/h.sh"
run 0 "$STELE" replay "$A" --consumer mailer --exec "$T/h.sh" --on-dead-letter skip
serve_start "$A" "$B"
http 200 /metrics
prom_validate "$T/body"
awk '!/^#/ && NF { sub(/\{.*/, "", $1); print $1 }' "$T/body" | sort -u >"$T/scraped"
for fam in stele_log_up stele_log_fenced stele_consumer_lag_records stele_consumer_dead_letters; do
    grep -qx "$fam" "$T/scraped" || fail "the scrape has no $fam: $(cat "$T/body")"
done
serve_stop TERM

# The names each file uses, from its queries only (descriptions may name API functions).
jq -e . "$DASH" >/dev/null || fail "$DASH is not JSON"
jq -r '[.. | objects | (.expr?, .definition?, (.query? | objects | .query))] | .[] | strings' "$DASH" >"$T/dash.exprs"
jq -r '.panels[].targets[]?.expr' "$DASH" >"$T/dash.promql"
grep -E '^\s*expr:' "$RULES" | sed 's/^\s*expr:\s*//' >"$T/rules.exprs"
grep -E "^\s*- series:" "$RULES_TEST" >"$T/test.series"
check_names() { # FILE WHAT: every stele_ name in FILE is scraped; at least MIN of them
    grep -o 'stele_[a-z0-9_]*' "$1" | sort -u >"$T/names"
    [ "$(wc -l <"$T/names")" -ge "$3" ] || fail "$2 uses only $(wc -l <"$T/names") metric names, expected $3 or more"
    comm -23 "$T/names" "$T/scraped" >"$T/missing"
    [ ! -s "$T/missing" ] || fail "$2 uses metrics stele serve does not expose: $(tr '\n' ' ' <"$T/missing")"
}
check_names "$T/dash.exprs" "the dashboard" 14
check_names "$T/rules.exprs" "the rules" 5
check_names "$T/test.series" "the rules' unit tests" 5

# The dashboard: unique panel ids, each query filtered on $log, the variables.
check_eq "$(jq '[.panels[].id] | length == (unique | length)' "$DASH")" true "unique panel ids"
jq -r '.panels[] | select(.type != "row") | .targets[] | select(.expr | contains("log=~\"$log\"") | not) | .expr' \
    "$DASH" >"$T/unfiltered"
[ ! -s "$T/unfiltered" ] || fail "dashboard queries without log=~\"\$log\": $(cat "$T/unfiltered")"
check_eq "$(jq -r '.templating.list[] | select(.name == "log") | .definition' "$DASH")" \
    "label_values(stele_log_up, log)" "the log variable"
check_eq "$(jq -r '.templating.list[] | select(.name == "datasource") | .query' "$DASH")" prometheus \
    "the datasource variable"

PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ]; then
    echo "SKIP: the metric names check passed; checking the rules needs promtool (Debian: apt-get install prometheus)"
    exit 77
fi
run 0 "$PROMTOOL" check rules "$RULES"
grep -q "SUCCESS: 6 rules found" "$T/out" || fail "promtool: $(cat "$T/out")"
{
    echo "groups:"
    echo "  - name: dashboard"
    echo "    rules:"
    i=0
    while IFS= read -r e; do
        i=$((i + 1))
        e=${e//\$__rate_interval/5m}
        e=${e//\$log/.*}
        printf '      - record: dashboard_query_%d\n        expr: %s\n' "$i" "$(jq -Rn --arg e "$e" '$e')"
    done <"$T/dash.promql"
} >"$T/dash-rules.yml"
run 0 "$PROMTOOL" check rules "$T/dash-rules.yml"
# The unit tests name the rules file relative to themselves.
run 0 "$PROMTOOL" test rules "$RULES_TEST"
grep -q SUCCESS "$T/out" || fail "promtool test rules: $(cat "$T/out")"
echo "ok: $(wc -l <"$T/dash.promql") dashboard queries, $(wc -l <"$T/rules.exprs") rules"
