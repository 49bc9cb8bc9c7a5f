#!/bin/sh
# A host where Docker 20.10 has written its rules (container web on docker0 at
# 172.17.0.2, published as 8080 -> 80/tcp) and then ufw is enabled with a default-deny
# policy that also denies 8080 explicitly. Docker's rules come from the static file its
# contract scenarios use; ufw is the real one.
set -eu
iptables-restore "$NETCONFORM_SCENARIO_DIR/../../docker/rules/docker-20.10-iptables.rules"
"$NETCONFORM_SCENARIO_DIR/ufw-setup.sh"
ufw default deny incoming
ufw allow 22/tcp
ufw deny 8080/tcp
ufw --force enable
ufw status verbose
