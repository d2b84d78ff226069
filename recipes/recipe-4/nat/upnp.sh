#!/bin/sh
# Site's miniupnpd, for NAT type upnp. Every type's apply calls `upnp.sh stop` before its
# `nft -f` (which deletes miniupnpd's table, see site.nft), then `upnp.sh TYPE LAN_IP STUN_IP`,
# which starts miniupnpd only when TYPE is upnp.
# Why STUN: miniupnpd refuses to map ports when its WAN address is private or reserved (it
# would be behind another NAT), and the lab's "internet" is 10.44.0.0/24 (or 10.213.x.0/24).
# With ext_perform_stun it asks a STUN server instead, and if four RFC 5780 tests (answers
# from the server's other address and port too) show nothing in between filters or remaps
# its port, it takes the address STUN saw and enables port forwarding.
set -eu
# Our own record of its pid (miniupnpd keeps /run/miniupnpd.pid, and refuses to start while
# that names a live process).
PID=/run/wg3-miniupnpd.pid
# Kept across stop and start, as a home router keeps them across a restart of its UPnP service
# (OpenWrt's default): clients trust a mapping for its whole lifetime (tailscaled: 2 h, renewed
# after 1 h), so a miniupnpd that forgot them would leave them advertising a dead port.
LEASES=/run/wg3-miniupnpd.leases
LOG=/var/log/miniupnpd.log
CONF=/etc/wg3-nat/miniupnpd.conf

if [ "$1" = stop ]; then
  if [ -s "$PID" ] && kill "$(cat "$PID")" 2>/dev/null; then
    # It deletes its own rules on SIGTERM: wait until it is gone before the rules change.
    i=0
    while kill -0 "$(cat "$PID")" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  fi
  rm -f "$PID"
  exit 0
fi
[ "$1" = upnp ] || exit 0
lan_ip=$2 stun_ip=$3
iface_of() { ip -o -4 addr show | awk -v ip="$1" '{ split($4, a, "/") } a[1] == ip { print $2; exit }'; }
lan_if=$(iface_of "$lan_ip")
wan_if=$(ip -o route get "$stun_ip" | sed -n 's/.* dev \([^ ]*\).*/\1/p')

cat >"$CONF" <<CONF
ext_ifname=$wan_if
listening_ip=$lan_if
ext_perform_stun=yes
ext_stun_host=$stun_ip
ext_stun_port=3478
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
lease_file=$LEASES
uuid=6d1e2c3a-0b4f-4e8a-9c51-77a0f0c0ffee
upnp_table_name=wg3upnp
upnp_nat_table_name=wg3upnp
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 0.0.0.0/0 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF

# Foreground (-d) in the background: its log goes to a file the attendee can read.
miniupnpd -d -f "$CONF" >"$LOG" 2>&1 &
echo $! >"$PID"
# Ready once STUN has given it a public address and it listens for NAT-PMP/PCP.
i=0
until grep -q "Port forwarding is now enabled" "$LOG" 2>/dev/null; do
  if [ $i -ge 100 ] || ! kill -0 $! 2>/dev/null; then
    echo "miniupnpd did not enable port forwarding within 10 s:" >&2
    grep -v table_cb "$LOG" | tail -n 8 >&2
    kill $! 2>/dev/null || true
    rm -f "$PID"
    exit 1
  fi
  sleep 0.1
  i=$((i + 1))
done
