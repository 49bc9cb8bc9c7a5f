#!/bin/sh
# A producer as a script, in both families: web on port 80 only, with iptables and
# ip6tables of the back end put first on PATH.
set -eu
for tool in iptables ip6tables; do
  "$tool" -P FORWARD DROP
  "$tool" -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  "$tool" -A FORWARD -p tcp --dport 80 -m comment --comment web -j ACCEPT
done
