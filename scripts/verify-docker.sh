#!/usr/bin/env bash
# Verify the harness against Docker Engine on this machine, then put the machine back.
#
#   flock /tmp/wg3-e2e.lock bash scripts/verify-docker.sh      (as root; takes the lock itself if run without)
#
# What it does, timing each step into $OUT/report.txt:
#   1. installs docker.io from the distro if dockerd is missing (services are not started);
#   2. saves the firewall (iptables-save, ip6tables-save, nft list ruleset), because dockerd
#      rewrites it (FORWARD policy DROP, its DOCKER* chains), which breaks podman's networking;
#   3. starts dockerd by hand on its own socket, data root and exec root (never
#      /var/run/docker.sock, which engine discovery would pick up), and points the harness at
#      it with DOCKER_HOST;
#   4. runs setup (the base image comes from the offline debootstrap tarball, imported into
#      Docker), doctor, recipe-1 start / check (must fail: negative control) / solve / check /
#      stop, the smoke, platform-faults and recipe-0..2 e2e tests, the isolation drill, then clean, and checks that
#      nothing labelled wg3ways is left in Docker;
#   5. on exit, whatever happened: stops dockerd (by its pid), removes its socket, pid file,
#      exec root and the bridges it made, restores the saved firewall, compares the nft
#      ruleset with the saved one, and runs the podman smoke test to prove podman labs work.
#
# Docker's data root (/var/lib/wg3-docker: images, build cache) is kept so a second run is
# warm; WG3_VERIFY_PURGE=1 removes it too. Exit status: 0 only if every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOCK=/tmp/wg3-e2e.lock
SOCK=/run/wg3-docker.sock
PIDFILE=/run/wg3-docker.pid
EXEC_ROOT=/run/wg3-docker
DATA=/var/lib/wg3-docker
OUT=${WG3_VERIFY_DIR:-/tmp/wg3-verify-docker}

[ "$(id -u)" = 0 ] || { echo "verify-docker.sh needs root (dockerd and the firewall)." >&2; exit 1; }

# Hold the shared engine lock for the whole session: dockerd changes the firewall every lab uses.
lock_held_by_ancestor() {
  local inode holders p
  inode=$(stat -c %i "$LOCK" 2>/dev/null) || return 1
  holders=$(awk -v i=":$inode" '$2=="FLOCK" && $0 ~ i {print $5}' /proc/locks)
  p=$$
  while [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != 1 ]; do
    for h in $holders; do [ "$h" = "$p" ] && return 0; done
    p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)
  done
  return 1
}
if [ -z "${WG3_VERIFY_LOCKED:-}" ] && ! lock_held_by_ancestor; then
  echo "taking $LOCK (waits while someone else's e2e run holds it)..."
  exec env WG3_VERIFY_LOCKED=1 flock "$LOCK" bash "$0" "$@"
fi

mkdir -p "$OUT"
REPORT=$OUT/report.txt
: >"$REPORT"
FAILED=0
say() { echo "$*" | tee -a "$REPORT"; }
# step NAME EXPECTED_EXIT CMD...: run, time, log to $OUT/NAME.log, record ok/FAIL.
step() {
  local name=$1 want=$2
  shift 2
  local t0 rc
  t0=$(date +%s.%N)
  "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  if [ "$rc" = "$want" ]; then
    say "ok    $name (${secs}s, exit $rc)"
  else
    say "FAIL  $name (${secs}s, exit $rc, wanted $want): see $OUT/$name.log"
    tail -n 25 "$OUT/$name.log" | sed 's/^/      /'
    FAILED=1
  fi
  return 0
}

if [ -S /var/run/docker.sock ] || [ -e "$SOCK" ]; then
  echo "A Docker socket already exists (/var/run/docker.sock or $SOCK); this script only verifies with a dockerd it starts itself." >&2
  exit 1
fi

if ! command -v dockerd >/dev/null; then
  say "installing docker.io (its services are not started)"
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >"$OUT/apt.log" 2>&1 || {
    echo "apt-get install docker.io failed: see $OUT/apt.log" >&2
    exit 1
  }
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# --- save the firewall and the bridges that exist now -------------------------------------
iptables-save >"$OUT/iptables.before"
ip6tables-save >"$OUT/ip6tables.before" 2>/dev/null || true
nft list ruleset >"$OUT/nft.before"
ip -o link show type bridge | awk -F': ' '{print $2}' | sort >"$OUT/bridges.before"
cp "$OUT/iptables.before" /tmp/iptables.before
cp "$OUT/nft.before" /tmp/nft.before

DOCKERD_PID=
restore() {
  local rc=$?
  trap - EXIT INT TERM
  say "--- restoring the machine"
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    local children
    children=$(pgrep -P "$DOCKERD_PID" || true)
    kill -TERM "$DOCKERD_PID"
    local deadline=$(($(date +%s) + 60))
    while kill -0 "$DOCKERD_PID" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && { say "dockerd did not stop within 60 s: killing it"; kill -KILL "$DOCKERD_PID"; }
    for c in $children; do kill -0 "$c" 2>/dev/null && kill -TERM "$c"; done
    say "dockerd $DOCKERD_PID stopped"
  fi
  [ -n "${TMUX_TMPDIR:-}" ] && tmux kill-server 2>/dev/null # our own tmux server only
  rm -f "$SOCK" "$PIDFILE"
  rm -rf "$EXEC_ROOT"
  # Bridges dockerd made (docker0, br-*) outlive it.
  ip -o link show type bridge | awk -F': ' '{print $2}' | sort >"$OUT/bridges.after"
  for b in $(comm -13 "$OUT/bridges.before" "$OUT/bridges.after"); do
    case $b in docker0 | br-*) ip link delete "$b" && say "removed bridge $b" ;; esac
  done
  iptables-restore <"$OUT/iptables.before" && say "iptables restored"
  [ -s "$OUT/ip6tables.before" ] && ip6tables-restore <"$OUT/ip6tables.before" && say "ip6tables restored"
  nft list ruleset >"$OUT/nft.after"
  # Rule counters move with traffic; compare the rules, not the counts.
  for f in before after; do sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/' "$OUT/nft.$f" >"$OUT/nft.$f.rules"; done
  if diff -q "$OUT/nft.before.rules" "$OUT/nft.after.rules" >/dev/null; then
    say "nft ruleset identical to the saved one"
  else
    say "nft ruleset differs from the saved one (see $OUT/nft.diff)"
    diff "$OUT/nft.before.rules" "$OUT/nft.after.rules" >"$OUT/nft.diff"
    FAILED=1
  fi
  [ "${WG3_VERIFY_PURGE:-}" = 1 ] && rm -rf "$DATA" && say "removed $DATA"
  if [ -e /var/run/docker.sock ] || [ -e "$SOCK" ] || pgrep -x dockerd >/dev/null; then
    say "FAIL  a dockerd or Docker socket is still there"
    FAILED=1
  fi
  say "--- podman after the Docker session"
  step podman-smoke 0 env -u DOCKER_HOST npx vitest run --project e2e tests/e2e/smoke.test.ts
  [ "$rc" = 0 ] && [ "$FAILED" = 0 ] && say "RESULT: all checks passed" || say "RESULT: some checks failed"
  [ "$rc" = 0 ] && [ "$FAILED" = 0 ]
  exit $?
}
trap restore EXIT
trap 'exit 130' INT TERM

# --- start dockerd ---------------------------------------------------------------------------
say "--- Docker Engine session, $(date -u +%FT%TZ), logs in $OUT"
mkdir -p "$EXEC_ROOT"
t0=$(date +%s.%N)
setsid dockerd --data-root "$DATA" --exec-root "$EXEC_ROOT" -H "unix://$SOCK" --pidfile "$PIDFILE" \
  >"$OUT/dockerd.log" 2>&1 </dev/null &
DOCKERD_PID=$!
export DOCKER_HOST=unix://$SOCK
# A tmux server of our own: `start` opens a workspace and `clean` closes every wg3 workspace,
# which must not touch the sessions of podman labs people have open on this machine.
export TMUX_TMPDIR=$OUT/tmux
mkdir -p "$TMUX_TMPDIR"
deadline=$(($(date +%s) + 60))
until docker version >/dev/null 2>&1; do
  if ! kill -0 "$DOCKERD_PID" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
    say "FAIL  dockerd did not answer on $SOCK within 60 s"
    tail -n 20 "$OUT/dockerd.log"
    exit 1
  fi
  sleep 0.2
done
DOCKERD_PID=$(cat "$PIDFILE" 2>/dev/null || echo "$DOCKERD_PID")
say "dockerd answered in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s: server $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}}), runtime {{range .Server.Components}}{{if eq .Name "runc"}}runc {{.Version}}{{end}}{{end}}'), client $(docker version --format '{{.Client.Version}}')"
say "iptables FORWARD policy under dockerd: $(iptables -S FORWARD | head -1)"

# --- the harness against Docker ---------------------------------------------------------------
step setup 0 ./start.ts setup --yes
grep -E "engine:|debootstrap|import|build image|images:" "$OUT/setup.log" | sed 's/^/      /' | tee -a "$REPORT"
step doctor 0 ./start.ts doctor
step recipe-1-start 0 ./start.ts recipe-1 --no-attach
step recipe-1-check-before-solve 1 ./start.ts check recipe-1
step recipe-1-solve 0 ./start.ts solve recipe-1
step recipe-1-check-after-solve 0 ./start.ts check recipe-1
step recipe-1-stop 0 ./start.ts stop recipe-1
step e2e 0 npx vitest run --project e2e tests/e2e/smoke.test.ts tests/e2e/platform-faults.test.ts \
  tests/e2e/recipe-0.test.ts tests/e2e/recipe-1.test.ts tests/e2e/recipe-2.test.ts
grep -E "✓|✗|×|Test Files|Tests |e2e prerequisites" "$OUT/e2e.log" | sed 's/^/      /' | tee -a "$REPORT"
# Isolation on Docker's own terms: a running lab stays unreachable while others start and stop.
step isolation 0 npx vitest run --project drills tests/drills/isolation.test.ts
grep -E "✓|×|drill:" "$OUT/isolation.log" | sed 's/^/      /' | tee -a "$REPORT"
step clean 0 ./start.ts clean
left=$(docker ps -aq --filter label=wg3ways.project=wg-3-ways | wc -l)
leftnets=$(docker network ls -q --filter label=wg3ways.project=wg-3-ways | wc -l)
if [ "$left" = 0 ] && [ "$leftnets" = 0 ]; then say "ok    nothing labelled wg3ways left in Docker"; else
  say "FAIL  left in Docker: $left containers, $leftnets networks"
  FAILED=1
fi
say "images in Docker: $(docker images --filter label=wg3ways.project=wg-3-ways --format '{{.Repository}}:{{.Tag}}' | tr '\n' ' ')"
exit "$FAILED"
