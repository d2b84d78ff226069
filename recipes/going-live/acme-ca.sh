#!/bin/bash
# The CA's two ACME directories, as Let's Encrypt has them:
# - production, https://{{ vars.acmeName }}:14000/dir: pebble (on loopback) behind
#   acme-rate-limit, {{ vars.rateLimit }} certificates per exact set of names per {{ vars.rateWindow }} s
#   (Let's Encrypt: 5 per week); its root is the one the clients trust.
# - staging, https://{{ vars.acmeName }}:14002/dir: a second pebble with no limit and a root of
#   its own that no client trusts (Let's Encrypt's staging: "(STAGING) Pretend Pear X1").
# Each pebble logs to the container's log, prefixed by its name.
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
pebble -config /etc/pebble/pebble.json -strict=false 2>&1 | sed -u 's/^/production: /' &
pebble -config /etc/pebble/pebble-staging.json -strict=false 2>&1 | sed -u 's/^/staging: /' &
LIMIT={{ vars.rateLimit }} WINDOW={{ vars.rateWindow }} LISTEN=0.0.0.0:14000 UPSTREAM=127.0.0.1:14001 acme-rate-limit serve &
wait
