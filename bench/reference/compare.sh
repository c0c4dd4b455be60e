#!/usr/bin/env bash
# compare.sh — the keep-alive and pipelined 1 KiB hit comparison of Outpost against nginx,
# Varnish, Squid and Apache Traffic Server, as `outpost bench compare` runs it (see
# bench/README.md; that command also runs hit1m, miss, close, forward and misslat and appends
# to bench/RESULTS.md). This script keeps the old interface and appends nothing.
#
# Usage: bench/reference/compare.sh [-d SECONDS] [-c CONNECTIONS] [-o OUTPOST_BINARY] [SERVER...]
#   SERVER: outpost nginx varnish squid ats (default: all)
set -euo pipefail

dur=5 conns=32 bin=""
while getopts "d:c:o:" opt; do
  case $opt in
    d) dur=$OPTARG ;; c) conns=$OPTARG ;; o) bin=$OPTARG ;;
    *) echo "usage: $0 [-d seconds] [-c connections] [-o outpost-binary] [server...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
servers=$(IFS=,; echo "${*:-outpost,nginx,varnish,squid,ats}")

root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "$bin" ]; then
  tmp=$(mktemp -d /tmp/outpost-compare-build.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  bin="$tmp/outpost"
  (cd "$root" && go build -o "$bin" ./cmd/outpost)
fi
"$bin" bench compare --outpost "$bin" --servers "$servers" --scenarios hit1k,pipe16 \
  -d "${dur}s" -c "$conns" --no-append
