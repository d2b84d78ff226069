#!/usr/bin/env bash
# Baseline for bench/lab-start.ts: recipe 3 brought up the way the workshop's start.sh did it,
# one podman CLI call after another (networks, containers, Headscale user, pre-auth keys,
# `tailscale up` on home, route approval, `tailscale up` on roaming), with this project's
# images and the workshop's names and addresses; then the same checks as
# `./start.ts solve recipe-3 && ./start.ts check recipe-3`, polled until green.
#
# Prints one line per phase, `PHASE <name> <milliseconds>`, and exits 0 when every check
# passed. Everything it creates carries our labels (wg3ways.project=wg-3-ways,
# wg3ways.lab=bench-baseline), so `./start.ts clean` finds it too; it removes it all on exit,
# also on failure or Ctrl-C. Hold the engine lock while running it:
#   flock /tmp/wg3-e2e.lock scripts/bench/recipe-3-baseline.sh
#
# Images: IMG_HEADSCALE, IMG_TAILSCALE, IMG_WGPEER, IMG_WEBSERVER (bench/lab-start.ts passes
# the current content-hashed tags).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${IMG_HEADSCALE:?set IMG_HEADSCALE (e.g. localhost/wg3ways-headscale:TAG)}"
: "${IMG_TAILSCALE:?set IMG_TAILSCALE}"
: "${IMG_WGPEER:?set IMG_WGPEER}"
: "${IMG_WEBSERVER:?set IMG_WEBSERVER}"
# The podman settings ./start.ts setup wrote (runc, cgroupfs), as its API service uses them.
export CONTAINERS_CONF=${CONTAINERS_CONF:-/run/wg-3-ways/containers.conf}

LAB=bench-baseline
RUN=${RUN_ID:-$$}
LABELS=(--label wg3ways.project=wg-3-ways --label "wg3ways.lab=$LAB" --label wg3ways.recipe=recipe-3 --label "wg3ways.run=$RUN")
HOME_NET=192.168.99.0/24
ROAM_NET=10.1.99.0/24
HS_IP=10.1.99.11
WEB_IP=192.168.99.10
WORK=$(mktemp -d)

cleanup() {
  local ids
  ids=$(podman ps -aq --filter label=wg3ways.project=wg-3-ways --filter "label=wg3ways.lab=$LAB" 2>/dev/null || true)
  [ -n "$ids" ] && podman rm -f -t 0 $ids >/dev/null 2>&1 || true
  ids=$(podman network ls -q --filter label=wg3ways.project=wg-3-ways --filter "label=wg3ways.lab=$LAB" 2>/dev/null || true)
  [ -n "$ids" ] && podman network rm -f $ids >/dev/null 2>&1 || true
  ids=$(podman volume ls -q --filter label=wg3ways.project=wg-3-ways --filter "label=wg3ways.lab=$LAB" 2>/dev/null || true)
  [ -n "$ids" ] && podman volume rm -f $ids >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s%3N; }
phase() { local t; t=$(now); echo "PHASE $1 $((t - T))"; T=$t; }

# poll SECONDS CMD...: run CMD until it succeeds; on timeout show its last output and fail.
poll() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >"$WORK/poll.out" 2>&1; do
    if (($(date +%s) > deadline)); then
      echo "timed out waiting for: $*" >&2
      tail -5 "$WORK/poll.out" >&2
      return 1
    fi
    sleep 0.1
  done
}
x() { podman exec "$@"; }
xs() { local c=$1; shift; podman exec "$c" sh -c "$*"; }

cleanup # a leftover of an interrupted earlier run (not timed)
WORK=$(mktemp -d)
T=$(now)

# --- prepare: the certificate and the Headscale config, as start.sh made them (openssl, sed)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=r3_headscale" -addext "subjectAltName=DNS:r3_headscale,DNS:headscale,IP:$HS_IP" \
  -keyout "$WORK/headscale.key" -out "$WORK/headscale.crt" >/dev/null 2>&1
sed -e "s/{{ nodes.headscale.ip.roaming }}/$HS_IP/g" -e "s/{{ vars.baseDomain }}/example.com/g" \
  "$ROOT/recipes/recipe-3/headscale.yaml" >"$WORK/config.yaml"
phase prepare

# --- create: networks, then each container (files copied in before it starts)
podman network create --subnet "$HOME_NET" --gateway 192.168.99.1 --opt isolate=true "${LABELS[@]}" recipe-3_home >/dev/null
podman network create --subnet "$ROAM_NET" --gateway 10.1.99.1 --opt isolate=true "${LABELS[@]}" recipe-3_roaming >/dev/null
common=(-it --cap-add NET_ADMIN --cap-add NET_RAW --stop-timeout 3 "${LABELS[@]}")
podman create "${common[@]}" --name recipe-3_headscale --hostname r3_headscale -e NO_COLOR=1 \
  --network "recipe-3_roaming:ip=$HS_IP" "$IMG_HEADSCALE" >/dev/null
podman cp "$WORK/config.yaml" recipe-3_headscale:/etc/headscale/config.yaml
podman cp "$WORK/headscale.crt" recipe-3_headscale:/etc/headscale/headscale.crt
podman cp "$WORK/headscale.key" recipe-3_headscale:/etc/headscale/headscale.key
podman create "${common[@]}" --name recipe-3_home-router --hostname r3_home-router --sysctl net.ipv4.ip_forward=1 \
  --network recipe-3_home:ip=192.168.99.2 --network recipe-3_roaming:ip=10.1.99.12 "$IMG_WGPEER" >/dev/null
podman create "${common[@]}" --name recipe-3_ts-client_home --hostname r3_ts-client_home --device /dev/net/tun \
  --sysctl net.ipv4.ip_forward=1 --sysctl net.ipv6.conf.all.forwarding=1 \
  --network recipe-3_home:ip=192.168.99.3 "$IMG_TAILSCALE" >/dev/null
podman create "${common[@]}" --name recipe-3_ts-client_roaming --hostname r3_ts-client_roaming --device /dev/net/tun \
  --network recipe-3_roaming:ip=10.1.99.2 "$IMG_TAILSCALE" >/dev/null
for c in recipe-3_ts-client_home recipe-3_ts-client_roaming; do
  podman cp "$WORK/headscale.crt" "$c:/usr/local/share/ca-certificates/wg3ways-lab-ca.crt"
done
podman create "${common[@]}" --name recipe-3_webserver --hostname r3_webserver \
  --network "recipe-3_home:ip=$WEB_IP" "$IMG_WEBSERVER" >/dev/null
phase create

# --- start
podman start recipe-3_headscale recipe-3_home-router recipe-3_ts-client_home recipe-3_ts-client_roaming recipe-3_webserver >/dev/null
phase start

# --- ready: Headscale answers, both tailscaled answer, Caddy serves
poll 60 x recipe-3_headscale headscale health
poll 60 xs recipe-3_ts-client_home "tailscale status --json | grep -q BackendState"
poll 60 xs recipe-3_ts-client_roaming "tailscale status --json | grep -q BackendState"
poll 60 x recipe-3_webserver curl -sf -o /dev/null http://127.0.0.1/
phase ready

# --- setup: the home router's NAT, default routes, user, keys, tailscale up, approval
xs recipe-3_home-router "nft add table ip nat && nft add chain ip nat postrouting '{ type nat hook postrouting priority srcnat; }' && nft add rule ip nat postrouting ip saddr $HOME_NET ip daddr != $HOME_NET masquerade"
x recipe-3_ts-client_home ip route replace default via 192.168.99.2
x recipe-3_webserver ip route replace default via 192.168.99.2
x recipe-3_headscale headscale users create hope >/dev/null
HOME_KEY=$(x recipe-3_headscale headscale preauthkeys create -u 1)
ROAMING_KEY=$(x recipe-3_headscale headscale preauthkeys create -u 1)
x recipe-3_ts-client_home tailscale up --login-server "https://$HS_IP" --auth-key "$HOME_KEY" --hostname home \
  --advertise-routes="$HOME_NET" --timeout 90s
x recipe-3_headscale headscale nodes approve-routes -i 1 -r "$HOME_NET" >/dev/null
x recipe-3_ts-client_roaming tailscale up --login-server "https://$HS_IP" --auth-key "$ROAMING_KEY" --hostname roaming \
  --accept-routes --timeout 90s
unset HOME_KEY ROAMING_KEY
poll 60 xs recipe-3_headscale "[ \$(headscale nodes list -o json | grep -Eo '\"online\": *true' | wc -l) -eq 2 ]"
poll 60 xs recipe-3_ts-client_roaming "ip route show table 52 | grep -q '^$HOME_NET '"
phase setup

# --- solve: the capture exercise, as recipe-3's reference solution does it
xs recipe-3_headscale "rm -f /root/hs.pcap; (timeout 8 tcpdump -i any -U -w /root/hs.pcap >/tmp/tcpdump.log 2>&1 &)"
xs recipe-3_ts-client_home "rm -f /root/lan.pcap; (timeout 8 tcpdump -i eth0 -U -w /root/lan.pcap tcp port 80 >/tmp/tcpdump.log 2>&1 &)"
poll 10 xs recipe-3_headscale "grep -q 'listening on' /tmp/tcpdump.log"
poll 10 xs recipe-3_ts-client_home "grep -q 'listening on' /tmp/tcpdump.log"
x recipe-3_ts-client_roaming curl -s --max-time 5 "http://$WEB_IP/?key=supersecretkey" >/dev/null
poll 10 xs recipe-3_ts-client_home "grep -aq supersecretkey /root/lan.pcap"
poll 15 xs recipe-3_headscale "! pgrep tcpdump"
poll 15 xs recipe-3_ts-client_home "! pgrep tcpdump"
phase solve

# --- check: recipe-3's exercise checks, polled until all pass
all_checks() {
  xs recipe-3_headscale "[ \$(headscale nodes list -o json | grep -Eo '\"online\": *true' | wc -l) -eq 2 ]" &&
    xs recipe-3_ts-client_roaming "tracepath -n -m 6 $WEB_IP > /tmp/tp.out 2>&1; grep -Eq ' 100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.[0-9]+\.[0-9]+ ' /tmp/tp.out && grep -Eq 'reached|$WEB_IP ' /tmp/tp.out" &&
    xs recipe-3_ts-client_roaming "curl -s --max-time 5 http://$WEB_IP/ | grep -q 'Hello from Caddy!'" &&
    xs recipe-3_ts-client_roaming "tailscale status | grep -Eq '\shome\s' && ping -c1 -W3 home" &&
    xs recipe-3_ts-client_home "tailscale status | grep -Eq '\sroaming\s' && ping -c1 -W3 roaming" &&
    xs recipe-3_headscale "test -s /root/hs.pcap && ! grep -aq supersecretkey /root/hs.pcap" &&
    xs recipe-3_ts-client_home "grep -aq supersecretkey /root/lan.pcap"
}
poll 60 all_checks
phase check
