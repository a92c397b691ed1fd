# smoke.cmake - the bench_smoke test: stele-bench runs 0.2 s of stele and of
# each peer built in (PEERS, comma-separated) with --json; every line must be a
# JSON object naming its engine with records_per_s > 0, one line per engine,
# and each peer's line must carry stele's ratio. Then the unsynced variants
# (--durability none) at 1 and 2 threads, two interleaved rounds, with --plot:
# the ratio block is printed and the SVG is written.
# It proves the bench and its peers work end to end, not how fast anything is.
#   cmake -DBENCH=path/stele-bench -DPEERS=fdatasync,sqlite -DWORK_DIR=dir -P smoke.cmake
string(REPLACE "," ";" peers "${PEERS}")
set(args --duration 0.2 --json --keys --dir ${WORK_DIR})
foreach(p ${peers})
  list(APPEND args --peer ${p})
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
execute_process(COMMAND ${BENCH} ${args} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "stele-bench ${args} exited with ${rc}:\n${err}${out}")
endif()

string(STRIP "${out}" out)
string(REPLACE "\n" ";" lines "${out}")
set(engines)
foreach(line ${lines})
  string(JSON engine ERROR_VARIABLE jerr GET "${line}" engine)
  if(jerr)
    message(FATAL_ERROR "not a JSON object with an engine: ${line}\n${jerr}")
  endif()
  foreach(field records_per_s mb_per_s p50_us p99_us p999_us threads inflight record_size)
    string(JSON value ERROR_VARIABLE jerr GET "${line}" ${field})
    if(jerr)
      message(FATAL_ERROR "${engine}: no ${field} in ${line}")
    endif()
  endforeach()
  string(JSON rps GET "${line}" records_per_s)
  if(NOT rps GREATER 0)
    message(FATAL_ERROR "${engine}: records_per_s is ${rps}")
  endif()
  string(JSON ratio GET "${line}" stele_ratio)
  if(NOT engine STREQUAL "stele" AND NOT ratio GREATER 0)
    message(FATAL_ERROR "${engine}: stele_ratio is ${ratio} in ${line}")
  endif()
  list(APPEND engines ${engine})
endforeach()

set(expected stele ${peers})
if(NOT engines STREQUAL expected)
  message(FATAL_ERROR "engines reported: '${engines}', expected '${expected}'")
endif()

# The unsynced peers that are built, beside stele without syncs; the table, the ratio block, the SVG.
set(none_peers)
foreach(p group write leveldb)
  list(FIND peers ${p} at)
  if(at GREATER -1)
    list(APPEND none_peers --peer ${p})
  endif()
endforeach()
execute_process(COMMAND ${BENCH} --durability none --threads 1,2 --runs 2 --duration 0.1 ${none_peers}
                        --plot ${WORK_DIR}/plot.svg --dir ${WORK_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "stele/group +[0-9.e+-]+x" OR NOT out MATCHES "stele/write")
  message(FATAL_ERROR "--durability none ${none_peers}: expected ratios, got ${rc}: ${out} ${err}")
endif()
file(READ ${WORK_DIR}/plot.svg svg)
if(NOT svg MATCHES "^<\\?xml.*<svg .*>group</text>.*</svg>")
  message(FATAL_ERROR "--plot wrote no SVG with a line for group: ${svg}")
endif()

# stele keeps appends in flight through its async API; a peer cannot (exit 2).
execute_process(COMMAND ${BENCH} --inflight 64 --duration 0.2 --json --dir ${WORK_DIR} RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\"inflight\":64")
  message(FATAL_ERROR "--inflight 64: expected a stele result, got ${rc}: ${out} ${err}")
endif()
if(peers)
  list(GET peers 0 first_peer)
  execute_process(COMMAND ${BENCH} --inflight 8 --peer ${first_peer} --duration 0.1 --dir ${WORK_DIR} RESULT_VARIABLE rc
                  OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 2 OR NOT err MATCHES "no asynchronous append")
    message(FATAL_ERROR "--inflight 8 --peer ${first_peer}: expected exit 2, got ${rc}: ${err}")
  endif()
endif()
file(REMOVE_RECURSE ${WORK_DIR})
message(STATUS "stele-bench smoke: ${engines} ok")
