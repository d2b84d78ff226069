#!/bin/sh
# cable cut | cable restore: pull this router's internet cable (eth0), or plug it back in.
# Every packet in or out of eth0 is dropped, and nothing is closed: the control server and the
# peers only notice by silence, as with a real cable. The home LAN side (eth1) stays up.
set -e
case "$1" in
  cut)
    nft -f - <<'NFT'
table inet cable {
  chain pre { type filter hook prerouting priority -400; iifname "eth0" drop; }
  chain post { type filter hook postrouting priority 400; oifname "eth0" drop; }
}
NFT
    echo "cable cut: eth0 drops everything" ;;
  restore)
    nft delete table inet cable 2>/dev/null || true
    echo "cable restored" ;;
  *)
    echo "usage: cable cut | cable restore" >&2
    exit 2 ;;
esac
