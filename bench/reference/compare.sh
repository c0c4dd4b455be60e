#!/usr/bin/env bash
# compare.sh — requests/s per core on a 1 KiB cache hit: Outpost against nginx, Varnish, Squid
# and Apache Traffic Server, in one run on this machine.
#
# Each proxy runs as a reverse proxy with its cache in front of one origin (nginx serving a
# 1 KiB object with Cache-Control: max-age=3600), pinned to CPU 0 with one worker; wrk runs on
# CPU 1. Every proxy is warmed (the object is cached) before it is measured, keep-alive and
# pipelined (16 requests per write, wrk's pipeline script). Results are a markdown table on
# stdout, with each server's ratio to Outpost and the number of requests that reached the
# origin while it was measured (0 or close: every measured request was a cache hit).
#
# Usage: bench/reference/compare.sh [-d SECONDS] [-c CONNECTIONS] [-o OUTPOST_BINARY] [SERVER...]
#   SERVER: outpost nginx varnish squid ats (default: all that are installed)
# Needs: wrk, taskset, curl, and the Debian packages nginx-light, varnish, squid, trafficserver.
set -euo pipefail

dur=5 conns=32 bin=""
while getopts "d:c:o:" opt; do
  case $opt in
    d) dur=$OPTARG ;; c) conns=$OPTARG ;; o) bin=$OPTARG ;;
    *) echo "usage: $0 [-d seconds] [-c connections] [-o outpost-binary] [server...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(outpost nginx varnish squid ats)
[[ "$dur" =~ ^[0-9]+$ && "$dur" -ge 1 && "$dur" -le 60 ]] || { echo "compare.sh: -d must be 1..60 seconds" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/outpost-compare.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/ats/runroot.yaml" ] && pkill -f "traffic_server.*$work" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

origin_port=18901
declare -A port=([outpost]=18910 [nginx]=18911 [varnish]=18912 [squid]=18913 [ats]=18914)

wait_port() { # wait_port PORT: until something accepts on 127.0.0.1:PORT (at most 20 s)
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "compare.sh: nothing listens on 127.0.0.1:$1" >&2; return 1
}

start_origin() {
  mkdir -p "$work/www"
  head -c 1024 /dev/zero | tr '\0' 'x' > "$work/www/obj.bin"
  cat > "$work/origin.conf" <<CONF
worker_processes 1; daemon off; pid $work/origin.pid; error_log $work/origin.err;
events { worker_connections 4096; }
http { access_log $work/origin-access.log;
  server { listen 127.0.0.1:$origin_port; root $work/www;
    location / { add_header Cache-Control "max-age=3600"; } } }
CONF
  taskset -c 1 nginx -c "$work/origin.conf" -p "$work" & pids+=($!)
  wait_port $origin_port
}

start_outpost() {
  if [ -z "$bin" ]; then bin="$work/outpost"; (cd "$root" && go build -o "$bin" ./cmd/outpost); fi
  sed -e "s#@PORT@#${port[outpost]}#; s#@ORIGIN@#$origin_port#; s#@DATA@#$work/outpost-data#" \
    "$here/outpost.toml" > "$work/outpost.toml"
  GOMAXPROCS=1 taskset -c 0 "$bin" proxy --config "$work/outpost.toml" 2>"$work/outpost.log" & pids+=($!)
  wait_port "${port[outpost]}"
}

start_nginx() {
  cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; proxy_cache_path $work/nginx-cache keys_zone=c:10m;
  upstream origin { server 127.0.0.1:$origin_port; keepalive 32; }
  server { listen 127.0.0.1:${port[nginx]};
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache c; } } }
CONF
  taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
  wait_port "${port[nginx]}"
}

start_varnish() {
  mkdir -p "$work/varnish"; chmod 777 "$work/varnish"
  taskset -c 0 varnishd -F -n "$work/varnish" -a "127.0.0.1:${port[varnish]}" -b "127.0.0.1:$origin_port" \
    -s malloc,64m -p thread_pools=1 >"$work/varnish.log" 2>&1 & pids+=($!)
  wait_port "${port[varnish]}"
}

start_squid() {
  mkdir -p "$work/squid"; chown proxy:proxy "$work/squid" 2>/dev/null || chmod 777 "$work/squid"
  cat > "$work/squid.conf" <<CONF
http_port 127.0.0.1:${port[squid]} accel defaultsite=127.0.0.1 no-vhost
cache_peer 127.0.0.1 parent $origin_port 0 no-query originserver name=origin
http_access allow all
cache_peer_access origin allow all
cache_mem 64 MB
maximum_object_size_in_memory 1 MB
access_log none
cache_store_log none
cache_log $work/squid/cache.log
pid_filename $work/squid/squid.pid
coredump_dir $work/squid
workers 1
shutdown_lifetime 0 seconds
CONF
  taskset -c 0 squid -N -f "$work/squid.conf" >"$work/squid.out" 2>&1 & pids+=($!)
  wait_port "${port[squid]}"
}

start_ats() {
  traffic_layout init --path "$work/ats" >/dev/null 2>&1
  local etc="$work/ats/etc/trafficserver" a="$work/ats"
  mkdir -p "$etc" "$a/var/cache" "$a/run" "$a/log"
  cp -r /etc/trafficserver/. "$etc/"
  sed -i -e "s#^sysconfdir:.*#sysconfdir: $etc#" -e "s#^datadir:.*#datadir: $a/var/cache#" \
    -e "s#^localstatedir:.*#localstatedir: $a/var#" -e "s#^runtimedir:.*#runtimedir: $a/run#" \
    -e "s#^logdir:.*#logdir: $a/log#" -e "s#^cachedir:.*#cachedir: $a/var/cache#" "$a/runroot.yaml"
  chmod -R 777 "$a"
  cat >> "$etc/records.config" <<CONF
CONFIG proxy.config.http.server_ports STRING ${port[ats]}
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT 1
CONFIG proxy.config.accept_threads INT 0
CONFIG proxy.config.http.cache.http INT 1
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.cache.ram_cache.size INT 67108864
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.admin.user_id STRING #-1
CONF
  echo "map / http://127.0.0.1:$origin_port/" > "$etc/remap.config"
  echo "$a/var/cache 256M" > "$etc/storage.config"
  taskset -c 0 traffic_server --run-root="$work/ats/runroot.yaml" >"$work/ats.log" 2>&1 & pids+=($!)
  wait_port "${port[ats]}"
}

warm() { # warm PORT: fetch twice, so the second is a cache hit
  curl -s -o /dev/null "http://127.0.0.1:$1/obj.bin"
  curl -s -o /dev/null "http://127.0.0.1:$1/obj.bin"
}

cat > "$work/pipeline.lua" <<'LUA'
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/obj.bin") end
  req = table.concat(r)
end
request = function() return req end
LUA

measure() { # measure PORT [pipelined] -> requests/s
  local extra=()
  [ "${2:-}" = pipelined ] && extra=(-s "$work/pipeline.lua")
  taskset -c 1 wrk -t1 -c"$conns" -d"${dur}s" "${extra[@]}" "http://127.0.0.1:$1/obj.bin" \
    | awk '/Requests\/sec/ {print int($2)}'
}

start_origin
declare -A ka pl fetched
origin_lines() { wc -l < "$work/origin-access.log" 2>/dev/null || echo 0; }
for s in "${servers[@]}"; do
  case $s in
    outpost) ;; nginx) command -v nginx >/dev/null || continue ;;
    varnish) command -v varnishd >/dev/null || continue ;; squid) command -v squid >/dev/null || continue ;;
    ats) command -v traffic_server >/dev/null || continue ;;
    *) echo "compare.sh: unknown server $s" >&2; exit 2 ;;
  esac
  if ! "start_$s"; then echo "compare.sh: $s did not start" >&2; continue; fi
  warm "${port[$s]}"
  before=$(origin_lines)
  ka[$s]=$(measure "${port[$s]}")
  pl[$s]=$(measure "${port[$s]}" pipelined)
  fetched[$s]=$(( $(origin_lines) - before ))
  echo "compare.sh: $s keep-alive ${ka[$s]}/s pipelined ${pl[$s]}/s" >&2
done

echo "| server (1 core) | keep-alive req/s | pipelined ×16 req/s | keep-alive vs outpost | pipelined vs outpost | origin requests while measured |"
echo "|---|---:|---:|---:|---:|---:|"
for s in "${servers[@]}"; do
  [ -n "${ka[$s]:-}" ] || continue
  rk="" rp=""
  if [ -n "${ka[outpost]:-}" ] && [ "${ka[outpost]}" -gt 0 ]; then
    rk=$(awk -v a="${ka[$s]}" -v b="${ka[outpost]}" 'BEGIN{printf "%.2f", a/b}')
    rp=$(awk -v a="${pl[$s]}" -v b="${pl[outpost]}" 'BEGIN{printf "%.2f", a/b}')
  fi
  echo "| $s | ${ka[$s]} | ${pl[$s]} | $rk | $rp | ${fetched[$s]} |"
done
