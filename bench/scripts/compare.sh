#!/bin/sh
# Compares `outpost bench` with the reference tools against the same server, alternating
# runs (the machine is shared, so single runs are noisy) and printing every run and the
# medians. Usage:
#   bench/scripts/compare.sh http URL [RUNS] [SECONDS]        # vs wrk -t2 -c50
#   bench/scripts/compare.sh dns HOST PORT QUERYFILE [RUNS] [SECONDS]   # vs dnsperf -c4 -q100
# OUTPOST is the outpost binary (default: outpost on PATH).
set -eu
OUTPOST=${OUTPOST:-outpost}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
case "$1" in
http)
	url=$2 runs=${3:-5} secs=${4:-3}
	: >/tmp/cmp.wrk; : >/tmp/cmp.ours
	for i in $(seq "$runs"); do
		w=$(wrk -t2 -c50 -d"${secs}s" "$url" | awk '/Requests\/sec/ {print $2}')
		o=$($OUTPOST bench http -c 50 -d "${secs}s" --json "$url" | awk -F'[:,]' '/"requests_per_sec"/ {print $2+0}')
		echo "run $i: wrk $w req/s, outpost bench http $o req/s"
		echo "$w" >>/tmp/cmp.wrk; echo "$o" >>/tmp/cmp.ours
	done
	w=$(median </tmp/cmp.wrk); o=$(median </tmp/cmp.ours)
	echo "median: wrk $w, outpost bench http $o, ratio $(echo "$o $w" | awk '{printf "%.2f", $1/$2}')"
	;;
dns)
	host=$2 port=$3 q=$4 runs=${5:-5} secs=${6:-3}
	: >/tmp/cmp.dnsperf; : >/tmp/cmp.ours
	for i in $(seq "$runs"); do
		d=$(dnsperf -s "$host" -p "$port" -d "$q" -l "$secs" -c 4 -q 100 | awk '/Queries per second/ {print $4}')
		o=$($OUTPOST bench dns --queries "$q" -d "${secs}s" --clients 4 --outstanding 25 --json "$host:$port" | awk -F'[:,]' '/"qps"/ {print $2+0}')
		echo "run $i: dnsperf $d q/s, outpost bench dns $o q/s"
		echo "$d" >>/tmp/cmp.dnsperf; echo "$o" >>/tmp/cmp.ours
	done
	d=$(median </tmp/cmp.dnsperf); o=$(median </tmp/cmp.ours)
	echo "median: dnsperf $d, outpost bench dns $o, ratio $(echo "$o $d" | awk '{printf "%.2f", $1/$2}')"
	;;
*)
	echo "usage: $0 http URL [RUNS] [SECONDS] | dns HOST PORT QUERYFILE [RUNS] [SECONDS]" >&2
	exit 2
	;;
esac
