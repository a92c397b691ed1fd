# test_page.sh - proves the status page of stele serve (GET /,
# tools/serve_page.c) in a real browser: headless Chromium loads it from a
# serve running over a good log and a corrupt one, while the good log was
# appended to (stele append, stele replay) with serve running, and the DOM
# it dumps after its script ran (--virtual-time-budget lets the page's 2 s
# refresh run twice or more without waiting for it) shows the log's path,
# the durable LSN of `stele stats`, the oldest pending intent's key and
# stream (`stele pending`), the consumer with its lag and dead letters, the
# corrupt log as unreadable with the error serve gives, and an append rate
# (computed by the page from two answers); the page wrote its render marker
# and no script error marker, Chromium logged no console message (the page
# writes none: an uncaught error would be one), and the screenshot is a
# 1280x900 PNG of non-trivial size. Also: GET / is text/html, HEAD / has no
# body. Skipped (77) without chromium (Debian: apt-get install chromium).
source "$(dirname "$0")/lib.sh"
CHROMIUM=${STELE_TEST_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
    echo "SKIP: the status page test needs headless Chromium (Debian: apt-get install chromium)"
    exit 77
fi
A=$T/orders
B=$T/broken
run 0 "$STELE" init "$A"
run 0 "$STELE" init "$B"
chmod u+w "$B/stele.meta"
head -c 4096 /dev/zero >"$B/stele.meta"
serve_start "$A" "$B"

# While serve runs: 30 records, every 5th an intent in stream payments, the
# first two settled; a consumer whose handler fails for good on LSN 4 (one
# dead letter), then 3 more records for it to lag behind.
for n in $(seq 1 30); do
    if [ $((n % 5)) -eq 0 ]; then
        printf '{"kind":"intent","key":"pay-%d","type":"pay","stream":"payments"}\n' "$n"
    else
        printf '{"key":"order-%d","type":"placed","stream":"orders","data":{"n":%d}}\n' "$n" "$n"
    fi
done >"$T/events.jsonl"
printf '{"kind":"outcome","key":"pay-%d","type":"pay","outcome":"confirmed"}\n' 5 10 >>"$T/events.jsonl"
run 0 "$STELE" append "$A" --jsonl <"$T/events.jsonl"
cat >"$T/h.sh" <<'SH'
#!/bin/sh
cat >/dev/null
[ "$STELE_LSN" -eq 4 ] && { echo "refused" >&2; exit 1; }
exit 0
SH
chmod +x "$T/h.sh"
run 0 "$STELE" replay "$A" --consumer mailer --exec "$T/h.sh" --on-dead-letter skip
for i in 1 2 3; do run 0 "$STELE" append "$A" --type placed --data "$i"; done

run 0 "$STELE" stats "$A"
durable=$(jq .durable_lsn "$T/out")
check_eq "$durable" 35 "durable LSN of stele stats"
run 0 "$STELE" pending "$A" --limit 1
oldest=$(jq -r .key "$T/out")
check_eq "$oldest" pay-15 "oldest pending intent"

http 200 /
grep -qi '^Content-Type: text/html' "$T/head" || fail "GET / content type: $(cat "$T/head")"
grep -q '<script>' "$T/body" || fail "GET / is not the page: $(head -c 300 "$T/body")"
http 200 / HEAD
[ ! -s "$T/body" ] || fail "HEAD / has a body"

# The browser: its profile, cache and home in $T (removed on exit); no
# sandbox, which needs user namespaces or a setuid helper that containers
# and root lack (it loads one page of our own). Under timeout(1), so that a
# wedged browser fails the test instead of hanging it.
mkdir -p "$T/home"
rc=0
HOME=$T/home XDG_CONFIG_HOME=$T/home XDG_CACHE_HOME=$T/home timeout 60 "$CHROMIUM" --headless=new --no-sandbox \
    --disable-gpu --disable-dev-shm-usage --no-first-run --user-data-dir="$T/profile" \
    --window-size=1280,900 --run-all-compositor-stages-before-draw --virtual-time-budget=5000 \
    --enable-logging=stderr --v=0 --screenshot="$T/page.png" --dump-dom "http://127.0.0.1:$PORT/" \
    >"$T/dom.html" 2>"$T/chromium.err" || rc=$?
[ "$rc" -eq 0 ] || fail "chromium exited $rc: $(tail -20 "$T/chromium.err")"

D=$T/dom.html
has() { grep -qF -- "$1" "$D" || fail "the page has no $2 ($1): $(head -c 3000 "$D")"; }
renders=$(grep -o 'data-renders="[0-9]*"' "$D" | tr -dc 0-9)
[ "${renders:-0}" -ge 2 ] || fail "the page drew ${renders:-no} answers, expected 2 or more: $(head -c 3000 "$D")"
grep -q 'data-js-error="' "$D" && fail "the page reported a script error: $(grep -o 'data-js-error="[^"]*"' "$D")"
grep -F ':CONSOLE' "$T/chromium.err" && fail "the page wrote to the console (above)"
has "<span class=\"path\">$A</span>" "path of the good log"
has "data-log=\"$A\" data-state=\"healthy\"" "healthy state"
has "<span class=\"durable\">$durable</span>" "durable LSN"
has "<td class=\"mono key\">$oldest</td><td class=\"mono\">payments</td>" "oldest pending intent and its stream"
has '<td class="mono">mailer</td><td class="num">32</td><td class="num">3</td><td class="num dead">1</td>' \
    "consumer mailer at 32, lagging by 3, with 1 dead letter"
has "data-log=\"$B\" data-state=\"unreadable\"" "unreadable state of the broken log"
has "<p class=\"error\">opening log $B: " "error of the broken log"
grep -Eq '<div class="v">[0-9]+\.[0-9] /s</div>' "$D" || fail "no append rate: $(head -c 3000 "$D")"
has "$B: unreadable: opening log $B" "event of the broken log"

# The screenshot: a PNG (its signature, then IHDR's width and height).
check_eq "$(od -An -tx1 -N8 "$T/page.png" | tr -d ' \n')" 89504e470d0a1a0a "PNG signature"
check_eq "$(od -An -tu1 -j16 -N8 "$T/page.png" | tr -s ' ' | sed 's/^ //')" "0 0 5 0 0 0 3 132" "PNG 1280x900"
size=$(stat -c %s "$T/page.png")
[ "$size" -gt 20000 ] || fail "the screenshot is $size bytes: nothing drawn?"
serve_stop TERM
echo "ok: $renders answers drawn, screenshot $size bytes"
