#!/bin/sh
set -e
head -c 200000 /dev/zero | tr "\\000" "e" >&2
iptables -A FORWARD -p tcp -m tcp --dport 22 -j DROP
