#!/bin/sh
# A producer as a script: loads the rule set into the lab host with whatever
# iptables-restore the back end put first on PATH, and shows the lab it was given.
set -eu
echo "nodes: $NETCONFORM_NODES; bridges: $NETCONFORM_BRIDGES; back end: $NETCONFORM_BACKEND"
# The namespace paths open from here: the client's address, read from inside it.
nsenter --net="$NETCONFORM_NETNS_CLIENT" ip -o -4 addr show dev eth0 | grep -q "$NETCONFORM_ADDRESS_CLIENT"
iptables-restore "$NETCONFORM_SCENARIO_DIR/rules/web-only.rules"
iptables-save | grep -c -- '-A FORWARD'
