# test_data.sh - proves how payloads are stored and shown: `--data TEXT` is
# JSON content when TEXT parses as any JSON value (kept in compact form, reals
# printed as written), text content otherwise; --jsonl "data", "data_text"
# and "data_b64" map to JSON, text and binary content and come back under the
# same field, byte for byte.
source "$(dirname "$0")/lib.sh"
L=$T/log
run 0 "$STELE" init "$L"

n=0
# append_data TEXT FIELD EXPECTED_JSON: --data TEXT must come back as FIELD = EXPECTED.
append_data() {
    n=$((n + 1))
    run 0 "$STELE" append "$L" --data "$1"
    run 0 "$STELE" get "$L" --lsn "$n"
    check_jq "$T/out" ".[0] | has(\"$2\") and .$2 == $3" "--data '$1' is stored as $2"
}
append_data '{"a": 1, "b": [true, null]}' data '{"a":1,"b":[true,null]}'
append_data '42' data '42'
append_data '"quoted"' data '"quoted"'
append_data 'null' data 'null'
append_data 'hello world' data_text '"hello world"'
append_data '{"unterminated": ' data_text '"{\"unterminated\": "'
append_data '' data_text '""'
append_data 'ünïcødé ✓' data_text '"ünïcødé ✓"'

# JSON content is stored compact, and reals keep their shortest form.
run 0 "$STELE" append "$L" --data '{ "price" : 0.1, "big": 1e300, "whole": 2.0, "n": -7 }'
run 0 "$STELE" read "$L" --from 9 --to 9
grep -q '"data":{"price":0.1,"big":1e+300,"whole":2.0,"n":-7}}$' "$T/out" || fail "compact JSON payload: $(cat "$T/out")"

# --jsonl: the three payload fields, including bytes that are not text.
b64=$(printf '\000\001\002\377binary' | base64)
cat >"$T/in" <<IN
{"data":{"nested":{"deep":[1,2,3]},"s":"line\nbreak \"quoted\""}}
{"data_text":"tab\there \u00e9"}
{"data_b64":"$b64"}
{"data_b64":""}
IN
run 0 "$STELE" append "$L" --jsonl <"$T/in"
run 0 "$STELE" read "$L" --from 10
cp "$T/out" "$T/read"
check_jq "$T/read" '.[0].data == {"nested":{"deep":[1,2,3]},"s":"line\nbreak \"quoted\""}' "jsonl data round trip"
check_jq "$T/read" '.[1].data_text == "tab\there é"' "jsonl data_text round trip"
check_jq "$T/read" ".[2].data_b64 == \"$b64\"" "jsonl data_b64 round trip"
check_jq "$T/read" '.[3].data_b64 == "" and (.[3] | has("data") or has("data_text") | not)' "empty binary payload"
check_jq "$T/read" 'all(.[]; [has("data"), has("data_text"), has("data_b64")] | map(select(.)) | length == 1)' "exactly one payload field per record"
echo "ok"
