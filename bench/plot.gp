# plot.gp - throughput against concurrency, one line per engine (stele-bench --plot).
# stele-bench defines datafile, outfile and plottitle before this script. The
# data has one block per engine: a header line with its name, then
# "threads median min max" rows; blocks are separated by two blank lines.
stats datafile using 1 nooutput prefix 'X'
stats datafile using 2 nooutput prefix 'Y'
# A single thread count or a single value is an empty range: widen it rather than let gnuplot warn.
if (X_min == X_max) set xrange [X_min / 2.0:X_max * 2.0]
if (Y_min == Y_max) set yrange [Y_min / 2.0:Y_max * 2.0]
set terminal svg size 900,560 dynamic enhanced font 'sans,12' background rgb 'white'
set output outfile
set title plottitle noenhanced
set logscale x 2
set logscale y 10
set xlabel 'appender threads'
set ylabel 'records/s (median run, bars: min to max)'
set format y '%.0s%c'
set grid xtics ytics mytics
set key outside right top noenhanced
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
plot for [i=0:X_blocks-1] datafile index i using 1:2:3:4 with yerrorlines lw 2 pt 7 title columnheader(1)
