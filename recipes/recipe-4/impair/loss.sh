#!/bin/sh
# loss.sh PERCENT: drop that share of the packets the router forwards, each way, at random.
# An nftables `numgen random` rule (this needs no netem); its counter shows what it dropped
# (`nft list table ip wg3loss`). The table is replaced in one `nft -f` transaction; the NAT
# rules (table wg3nat) are not touched.
set -e
percent=$1
rule=""
[ "$percent" -gt 0 ] && rule="numgen random mod 100 < $percent counter drop"
nft -f - <<NFT
table ip wg3loss
delete table ip wg3loss
table ip wg3loss {
  comment "loss $percent%"
  chain forward {
    type filter hook forward priority -10; policy accept;
    $rule
  }
}
NFT
