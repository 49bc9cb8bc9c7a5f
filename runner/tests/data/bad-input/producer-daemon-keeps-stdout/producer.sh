#!/bin/sh
set -e
sleep 1414.21 &
iptables -A FORWARD -p tcp -m tcp --dport 22 -j DROP
