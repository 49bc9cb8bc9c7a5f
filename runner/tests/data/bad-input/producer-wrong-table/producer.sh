#!/bin/sh
set -e
ip6tables -A FORWARD -p tcp -m tcp --dport 22 -j DROP
ip6tables-save
