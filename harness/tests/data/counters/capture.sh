#!/bin/sh
# Re-creates the captured dumps in this folder from lab-iptables.rules, lab-nft.nft and
# fixtures under ../../../../../shared/fixtures (or $FIXTURES). Needs root; every rule
# tool runs inside a throwaway network namespace, never in the caller's.
set -eu
cd "$(dirname "$0")"
FIXTURES=${FIXTURES:-../../../../../shared/fixtures}
export FIXTURES
exec unshare --net --mount sh -eu -c '
mount -t tmpfs tmpfs /run
ip link set lo up
traffic() { python3 traffic.py; }

# iptables-nft: counters before and after two more rounds of traffic.
iptables-nft-restore < lab-iptables.rules
traffic
iptables-nft-save -c > iptables-nft-lab-before.rules
traffic; traffic
iptables-nft-save -c > iptables-nft-lab-after.rules
# The same rules as nft lists them, with handles.
nft -a list ruleset > nft-iptables-nft-handles.nft 2>&1
nft flush ruleset

# nft: counters before and after two more rounds of traffic.
nft -f lab-nft.nft
traffic
nft list ruleset > nft-lab-before.nft
traffic; traffic
nft list ruleset > nft-lab-after.nft
nft flush ruleset

# Both back ends at once: iptables-nft-save warns (on stderr) about legacy tables.
iptables-legacy-restore < "$FIXTURES/captured/cni-plugins-1.1.1-live.rules"
iptables-nft-restore < "$FIXTURES/captured/ufw-0.36.2-live.rules"
iptables-nft-save -c > ufw.out 2> ufw.err
cat ufw.err ufw.out > iptables-nft-ufw-warning.rules
rm ufw.out ufw.err
iptables-legacy-save -c > iptables-legacy-cni.rules
nft flush ruleset
iptables-nft-restore < "$FIXTURES/captured/docker-20.10.24-live.rules"
iptables-nft-save -c > docker.out 2> docker.err
cat docker.err docker.out > docker-20.10.24-before.rules
rm docker.out docker.err
nft flush ruleset

# Docker 29 nftables rules as nft lists them.
nft -f "$FIXTURES/docker/docker-29-nftables.nft"
nft list ruleset > nft-docker-29-listing.nft
'
