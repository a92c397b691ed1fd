# test_dict.sh - proves `stele init --compression-level` and `stele dict
# train`: the level is stored and reported; training on an empty log fails
# with exit 2 and makes no file; on a log of varied JSON events it writes
# 0000000001.dict (read-only, 64-byte header + dictionary) and prints what it
# made; events appended afterwards are compressed with it (stats: dict in
# use, batches with a dictionary, a better ratio) and read back unchanged; a
# second training makes dictionary 2 while dictionary 1's batches stay
# readable; a missing or damaged dictionary file makes get and verify fail
# with exit 5 naming the file, and restoring it makes the log whole again; a
# backup copies the dictionaries and the copy reads.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 2 "$STELE" init "$L" --compression zstd --compression-level 20
check_stderr_line "level out of bounds"
grep -q compression_level "$T/err" || fail "the error names the option: $(cat "$T/err")"
run 0 "$STELE" init "$L" --compression zstd --compression-level 7
check_jq "$T/out" '.[0].compression == "zstd" and .[0].compression_level == 7' "init reports the level"
run 0 "$STELE" stats "$L"
check_jq "$T/out" '.[0].compression_level == 7 and .[0].dict_count == 0 and .[0].dict_newest == 0' "stats: level, no dictionary"

run 2 "$STELE" dict train "$L"
check_stderr_line "training an empty log"
[ -z "$(ls "$L" | grep '\.dict$' || true)" ] || fail "a failed training left a file"
run 2 "$STELE" dict frobnicate "$L"
check_stderr_line "unknown dict subcommand"

# Varied events: payments, orders and webhooks with ids, amounts, currencies, nested objects.
gen() { # gen FROM TO
    local cur=(EUR USD GBP JPY) cty=(DE FR US NL)
    for i in $(seq "$1" "$2"); do
        case $((i % 3)) in
        0) printf '{"type":"payment.captured","data":{"id":"pay_%08x","amount":%d,"currency":"%s","customer":{"id":"cus_%06d","country":"%s"},"status":"succeeded"}}\n' \
            $((i * 2654435761 % 4294967296)) $((i * 7919 % 100000)) "${cur[i % 4]}" $((i * 31 % 1000000)) "${cty[i % 4]}" ;;
        1) printf '{"type":"order.placed","data":{"order_id":"ord_%d","items":[{"sku":"SKU-%05d","qty":%d}],"shipping":{"method":"standard","country":"%s"}}}\n' \
            "$i" $((i * 13 % 5000)) $((i % 4 + 1)) "${cty[i % 4]}" ;;
        2) printf '{"type":"webhook.delivered","data":{"webhook_id":"wh_%08x","endpoint":"https://api.example.com/hooks/%d","attempt":%d,"response":{"status":200,"latency_ms":%d}}}\n' \
            $((i * 40503 % 4294967296)) $((i % 97)) $((i % 3 + 1)) $((i * 17 % 900)) ;;
        esac
    done
}
gen 1 1500 >"$T/a"
gen 1501 3000 >"$T/b"
run 0 "$STELE" append "$L" --jsonl <"$T/a"
run 0 "$STELE" dict train "$L" --sample 1500
check_jq "$T/out" '.[0] | .dict_id == 1 and .file == "0000000001.dict" and .sample_records == 1500
    and .trained_through_lsn == 1500 and .dict_size > 256' "train output"
D1=$L/0000000001.dict
[ -f "$D1" ] || fail "no dictionary file"
[[ $(stat -c %A "$D1") == -r--r--r-- ]] || fail "dictionary file mode $(stat -c %A "$D1")"
size=$(stat -c %s "$D1")
check_eq "$size" $(($(jq .dict_size "$T/out") + 64)) "file = header + dictionary"

# One event per append: every batch small, where a dictionary matters most.
head -100 "$T/b" | while read -r line; do printf '%s\n' "$line" | "$STELE" append "$L" --jsonl >/dev/null; done
run 0 "$STELE" stats "$L"
check_jq "$T/out" '.[0] | .dict_newest == 1 and .dict_count == 1 and .batches_dict == 100
    and .stored_bytes < .raw_bytes and .compression_ratio > 1' "stats after training"
run 0 "$STELE" read "$L" --from 1501
head -100 "$T/b" >"$T/b100"
jq -s -e --slurpfile b "$T/b100" 'length == 100 and (map(.data) == ($b | map(.data)))' "$T/out" >/dev/null ||
    fail "events after the training do not read back unchanged"

# Dictionary 2; batches of dictionary 1 still read.
run 0 "$STELE" append "$L" --jsonl < <(tail -1400 "$T/b")
run 0 "$STELE" dict train "$L"
check_jq "$T/out" '.[0].dict_id == 2' "second dictionary"
run 0 "$STELE" append "$L" --data '{"id":"pay_x","amount":1,"currency":"EUR"}' --type payment.captured
run 0 "$STELE" dump "$L"
run 0 "$STELE" verify "$L"
check_jq "$T/out" '.[0].problems == 0 and .[0].records == 3001' "verify clean with two dictionaries"
run 0 "$STELE" get "$L" --lsn 1501
check_jq "$T/out" '.[0].type == "payment.captured" or .[0].type == "order.placed" or .[0].type == "webhook.delivered"' "dictionary 1 batch"

# Missing dictionary 1: exit 5 naming the file.
mv "$D1" "$T/d1"
run 5 "$STELE" verify "$L"
check_jq "$T/out" 'any(.[]; (.problem // "") | contains("0000000001.dict: dictionary file is missing"))' "verify names the missing file"
run 5 "$STELE" get "$L" --lsn 1501
check_stderr_line "get with a missing dictionary"
grep -q '0000000001.dict' "$T/err" || fail "get names the dictionary: $(cat "$T/err")"
mv "$T/d1" "$D1"
run 0 "$STELE" verify "$L"

# Damaged dictionary 1: the checksum catches it.
cp "$D1" "$T/d1"
chmod u+w "$D1"
flip_byte "$D1" $((size / 2))
run 5 "$STELE" verify "$L"
check_jq "$T/out" 'any(.[]; .path == "'"$D1"'" and ((.problem // "") | contains("checksum mismatch")))' "verify names the damaged file"
run 5 "$STELE" get "$L" --lsn 1501
grep -q 'checksum mismatch' "$T/err" || fail "get says why: $(cat "$T/err")"
cp "$T/d1" "$D1"
run 0 "$STELE" verify "$L"
check_jq "$T/out" '.[0].problems == 0' "restored"

# A backup carries the dictionaries: the copy verifies and reads.
run 0 "$STELE" backup "$L" "$T/copy"
[ -f "$T/copy/0000000001.dict" ] && [ -f "$T/copy/0000000002.dict" ] || fail "backup without the dictionaries"
cmp "$D1" "$T/copy/0000000001.dict" || fail "dictionary 1 copied differently"
run 0 "$STELE" get "$T/copy" --lsn 1501
