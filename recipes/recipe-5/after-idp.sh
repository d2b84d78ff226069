#!/bin/sh
# Headscale reads the identity provider's discovery document once, at start, and refuses to
# start without it (oidc.only_start_if_oidc_is_available): the lab's containers start side by
# side, so wait for the IdP to answer, then run the server.
url="http://{{ nodes.idp.ip.internet }}/.well-known/openid-configuration"
echo "waiting for the identity provider at $url"
until curl -sf -o /dev/null --max-time 2 "$url"; do sleep 0.2; done
exec "$@"
