#!/bin/bash
# The VPS's service manager for Headscale, standing for systemd (Restart=always): runs
# `headscale serve` and starts it again a second after it exits. After editing
# /etc/headscale/config.yaml, `headscale-service restart` (systemctl restart headscale on a
# real VPS) stops it and waits until the new one answers `headscale health`.
PIDFILE=/run/headscale.pid

restart() {
  local old
  old=$(cat "$PIDFILE" 2>/dev/null) || { echo "headscale-service: Headscale is not running (no $PIDFILE)" >&2; return 1; }
  kill "$old" || return 1
  # The new process writes its own pid; wait for it, then for its health answer.
  for _ in $(seq 1 300); do
    if [ "$(cat "$PIDFILE" 2>/dev/null)" != "$old" ] && headscale health >/dev/null 2>&1; then
      echo "headscale-service: Headscale restarted (pid $(cat "$PIDFILE"))"
      return 0
    fi
    sleep 0.1
  done
  echo "headscale-service: Headscale did not come back within 30 s; read why in the VPS's log" >&2
  return 1
}

serve() {
  trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
  while :; do
    headscale serve --config /etc/headscale/config.yaml &
    pid=$!
    echo "$pid" >"$PIDFILE"
    wait "$pid"
    echo "headscale-service: headscale exited ($?); starting it again in 1 s" >&2
    sleep 1 &
    wait $!
  done
}

case "${1:-serve}" in
  serve) serve ;;
  restart) restart ;;
  *) echo "usage: headscale-service [serve|restart]" >&2; exit 2 ;;
esac
