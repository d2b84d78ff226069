#!/bin/sh
# Trust the lab's CA (placed by the harness before the container starts), then run tailscaled
# as PID 1 so its log is the container's log (through wg3-init, which sets a LAN host's route).
set -e
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  update-ca-certificates >/dev/null 2>&1
fi
exec /usr/local/bin/wg3-init tailscaled \
  --state=/var/lib/tailscale/tailscaled.state \
  --socket=/var/run/tailscale/tailscaled.sock \
  --tun=tailscale0 \
  --no-logs-no-support \
  "$@"
