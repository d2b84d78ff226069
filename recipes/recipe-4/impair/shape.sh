#!/bin/sh
# shape.sh RATE DELAY: shape what leaves each of the router's interfaces (the internet side is
# the site's upload, the LAN side its download). RATE "unlimited" or a tc rate (1mbit), DELAY
# "0ms" or a tc time (50ms). A rate alone is a tbf qdisc; a delay needs netem (which has a rate
# of its own), and the harness refuses a delay before running this on a kernel without netem.
set -e
rate=$1 delay=$2
for dev in $(ls /sys/class/net); do
  [ "$dev" = lo ] && continue
  if [ "$delay" != 0ms ]; then
    if [ "$rate" = unlimited ]; then tc qdisc replace dev "$dev" root netem delay "$delay"
    else tc qdisc replace dev "$dev" root netem delay "$delay" rate "$rate"; fi
  elif [ "$rate" != unlimited ]; then
    tc qdisc replace dev "$dev" root tbf rate "$rate" burst 32kbit latency 400ms
  else
    tc qdisc del dev "$dev" root 2>/dev/null || true
  fi
done
