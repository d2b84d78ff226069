#!/bin/sh
# blackhole.sh reachable|blackholed CONTROL_IP: drop everything the router forwards to or from
# the coordination server (its control plane, and the DERP relay and STUN it also runs), as
# when it goes down or a firewall cuts it off. Peers already connected keep their direct
# tunnels: the coordinator is not in the data path. Its own table, replaced in one `nft -f`.
set -e
state=$1 control=$2
rules=""
[ "$state" = blackholed ] && rules="ip daddr $control counter drop
    ip saddr $control counter drop"
nft -f - <<NFT
table ip wg3blackhole
delete table ip wg3blackhole
table ip wg3blackhole {
  comment "coordinator $state"
  chain forward {
    type filter hook forward priority -10; policy accept;
    $rules
  }
}
NFT
