#!/bin/sh
# Leaves a background child and takes its time, as a daemon-driving producer does.
set -eu
sleep 30 &
sleep 0.6
iptables-restore "$NETCONFORM_SCENARIO_DIR/rules/accept.rules"
