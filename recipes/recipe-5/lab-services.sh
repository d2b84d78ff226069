#!/bin/sh
# The lab's services on every node, plain TCP so the reachability matrix can probe them:
# a web service on 80 (answers one HTTP line) and an SSH-like listener on 22 (a banner).
# socat forks per connection: the matrix probes a port from several nodes at once.
d=/run/lab-services
mkdir -p "$d"
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nHello from %s\n' "$(hostname)" > "$d/80"
printf 'SSH-2.0-lab-listener\r\n' > "$d/22"
for port in 80 22; do
  socat "TCP-LISTEN:$port,fork,reuseaddr" "SYSTEM:cat $d/$port" >/dev/null 2>&1 &
done
wait
