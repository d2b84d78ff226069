#!/bin/sh
# The reference solve's stand-in for a browser: follows a login URL that `tailscale up` printed
# through the identity provider's sign-in form and the coordination server's confirmation page,
# with curl and a cookie jar (the e2e test does the same in a real Chromium).
# usage: oidc-login URL USERNAME PASSWORD
set -eu
url=$1 user=$2 pass=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
page=$dir/page.html
# Fetch (following redirects, keeping cookies) and print the URL we ended up at.
fetch() { curl -sS -L --max-redirs 10 -c "$dir/jar" -b "$dir/jar" -o "$page" -w '%{url_effective}' "$@"; }
origin() { echo "$1" | sed -E 's|^(https?://[^/]+).*|\1|'; }
# The first <form>'s action, and one attribute of a tag.
form_action() { grep -o '<form[^>]*>' "$page" | head -n 1 | grep -o 'action="[^"]*"' | cut -d'"' -f2; }
attr() { echo "$1" | grep -o "$2=\"[^\"]*\"" | cut -d'"' -f2; }

# The coordination server sends us to the identity provider, which shows its sign-in form.
at=$(fetch "$url")
action=$(form_action)
[ -n "$action" ] && grep -q 'name="password"' "$page" || { echo "no sign-in form at $at" >&2; exit 1; }
at=$(fetch --data-urlencode "username=$user" --data-urlencode "password=$pass" "$(origin "$at")$action")
if grep -q 'id="error"' "$page"; then echo "the identity provider refused $user's password" >&2; exit 1; fi

# Back at the coordination server: "Confirm registration", a form with a hidden CSRF token.
action=$(form_action)
hidden=$(grep -o '<input[^>]*type="hidden"[^>]*>' "$page" | head -n 1)
[ -n "$action" ] && [ -n "$hidden" ] || { echo "no confirmation form at $at: $(sed 's/<[^>]*>/ /g' "$page" | tr -s ' \n' ' ' | cut -c1-300)" >&2; exit 1; }
fetch --data-urlencode "$(attr "$hidden" name)=$(attr "$hidden" value)" "$(origin "$at")$action" >/dev/null
sed 's/<[^>]*>/ /g' "$page" | tr -s ' \n' ' ' | cut -c1-300
echo
