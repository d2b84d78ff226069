#!/bin/sh
# A second machine in this container: its own tailscaled, with its own state, socket and log,
# so one container holds two tailnet nodes. Userspace networking: it adds no interface or
# routes, and leaves this container's own tailscale0 alone. For recipe-5's key exercises.
#
#   guest up --login-server URL --auth-key KEY --hostname NAME   (any tailscale command: status, logout, ...)
#   guest stop    stop its tailscaled: the machine goes away (a laptop shut, a CI job ended)
#   guest new     stop it and forget its state: the next `guest up` is a new machine (a new machine key)
#   guest log     what its tailscaled said (the server's answers to each login among it)
set -eu
STATE=/var/lib/guest
RUN=/run/guest
SOCK=$RUN/tailscaled.sock
LOG=/var/log/guest-tailscaled.log

# A process that has exited is a zombie until reaped, and this container's PID 1 (tailscaled)
# reaps none: exited means gone or state Z.
alive() { [ -d /proc/$1 ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status 2>/dev/null; }
running() { [ -f $RUN/pid ] && alive "$(cat $RUN/pid)"; }

start() {
  running && return 0
  mkdir -p $STATE $RUN
  rm -f $SOCK
  setsid tailscaled --state=$STATE/tailscaled.state --socket=$SOCK --statedir=$STATE \
    --tun=userspace-networking --port=0 --no-logs-no-support >>$LOG 2>&1 </dev/null &
  echo $! >$RUN/pid
  i=0
  until tailscale --socket=$SOCK status --json 2>/dev/null | grep -q BackendState; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! running; then
      echo "guest: tailscaled did not start; see $LOG" >&2
      exit 1
    fi
    sleep 0.1
  done
}

stop() {
  running || return 0
  pid=$(cat $RUN/pid)
  kill "$pid"
  while alive "$pid"; do sleep 0.1; done
  rm -f $RUN/pid
}

case "${1:-}" in
  stop) stop ;;
  new) stop; rm -rf $STATE; echo "guest: state forgotten; the next 'guest up' is a new machine" ;;
  log) cat $LOG 2>/dev/null || true ;;
  "") sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 2 ;;
  *) start; exec tailscale --socket=$SOCK "$@" ;;
esac
