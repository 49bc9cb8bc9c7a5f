#!/bin/sh
printf "producer-garbage-marker \\000\\001\\033[2J\\377\\376 \\r\\n"
iptables -A FORWARD -p tcp -m tcp --dport 23 -j DROP
