#!/bin/sh
set -e
sleep 2718.28 >/dev/null 2>&1 </dev/null &
iptables -A FORWARD -p tcp -m tcp --dport 22 -j DROP
