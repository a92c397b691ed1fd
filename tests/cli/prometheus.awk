# prometheus.awk - a validator of the Prometheus text exposition format
# 0.0.4 for the tests (tests/cli/test_prometheus.sh, tests/serve): HELP and
# TYPE once per family and before its samples, valid names and labels,
# numeric values, counters end in _total, histograms have cumulative
# buckets ending in +Inf equal to _count, plus _sum, every family has a
# sample. Prints what is wrong and exits 1. The buckets of a histogram are
# checked per label set (le taken out), so that several logs' samples of one
# family (stele serve's log="DIR") are each cumulative.
function bad(why) { printf "line %d: %s: %s\n", NR, why, $0; err = 1 }
/^# HELP / { if (help[$3]++) bad("second HELP"); next }
/^# TYPE / {
    if ($3 in type) bad("second TYPE")
    if ($4 !~ /^(counter|gauge|histogram|summary|untyped)$/) bad("unknown type")
    if (!help[$3]) bad("TYPE before HELP")
    type[$3] = $4; next }
/^#/ { bad("unknown comment"); next }
/^$/ { bad("empty line"); next }
{
    if (!match($0, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? /)) { bad("bad sample"); next }
    name = $1; sub(/\{.*/, "", name)
    value = substr($0, RLENGTH + 1)
    if (value !~ /^(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[-+]Inf)$/) bad("bad value")
    fam = name
    if (!(fam in type)) sub(/_(bucket|sum|count)$/, "", fam)
    if (!(fam in type)) { bad("sample before its TYPE"); next }
    if (type[fam] == "counter" && fam !~ /_total$/) bad("counter without _total")
    if (fam !~ /^stele_/) bad("name without the stele_ prefix")
    if (type[fam] == "histogram") {
        labels = $1; sub(/^[^{]*/, "", labels); gsub(/le="[^"]*",?/, "", labels); sub(/,\}$/, "}", labels)
        if (labels == "{}") labels = ""
        series = fam labels
        if (name ~ /_bucket$/) {
            if (!match($0, /le="[^"]*"/)) bad("bucket without le")
            if (value + 0 < last_bucket[series]) bad("buckets not cumulative")
            last_bucket[series] = value + 0
            if ($0 ~ /le="\+Inf"/) inf[series] = value
        } else if (name ~ /_count$/) {
            if (!(series in inf)) bad("histogram without a +Inf bucket")
            else if (inf[series] != value) bad("+Inf bucket differs from _count")
            counted[fam] = 1
        } else if (name ~ /_sum$/) {
            summed[fam] = 1
        } else bad("histogram sample that is not _bucket, _sum or _count")
    }
    samples[fam]++
}
END {
    for (f in type) {
        if (!samples[f]) { printf "family %s has no sample\n", f; err = 1 }
        if (type[f] == "histogram" && !(counted[f] && summed[f])) { printf "histogram %s lacks _sum or _count\n", f; err = 1 }
    }
    exit err
}
