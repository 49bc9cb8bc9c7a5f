#!/bin/sh
# Puts copies of ufw's configuration over the originals, in the lab host's sandbox
# only, the way the `ufw` producer does (harness/src/producer/ufw.rs), for scenarios
# that drive ufw from a script of their own. The sandbox's mount namespace is private,
# so the bind mounts below stay in it and end with it.
#
# ufw runs /usr/sbin/iptables by its full path and ufw-init resets PATH, so the back
# end is chosen through a copy of /etc/alternatives whose iptables names point at the
# programs of NETCONFORM_BACKEND. The copy of /etc/default/ufw says IPV6=no (the lab has
# IPv6 off) and IPT_MODULES="" (loading kernel modules would change the machine), and
# ufw's sysctl file keeps only net keys, which belong to the lab host's namespace.
set -eu
command -v ufw >/dev/null || { echo "ufw not installed (ci/install-deps installs it)" >&2; exit 1; }
case "$NETCONFORM_BACKEND" in
  iptables-nft) flavour=nft ;;
  iptables-legacy) flavour=legacy ;;
  *) echo "ufw writes iptables rules; back end $NETCONFORM_BACKEND is not an iptables one" >&2; exit 1 ;;
esac
case "$(readlink /usr/sbin/iptables)" in
  /etc/alternatives/*) ;;
  *) echo "/usr/sbin/iptables does not lead through /etc/alternatives here" >&2; exit 1 ;;
esac

S=/run/netconform/ufw
mkdir -p "$S"
cp -a /etc/ufw "$S/etc-ufw"
cp -a /lib/ufw "$S/lib-ufw"
cp -a /etc/default/ufw "$S/default-ufw"
sed -i -e 's/^IPV6=.*/IPV6=no/' -e 's/^IPT_MODULES=.*/IPT_MODULES=""/' \
  -e 's|^IPT_SYSCTL=.*|IPT_SYSCTL=/etc/ufw/sysctl.conf|' "$S/default-ufw"
sed -i -E '/^[[:space:]]*-?net[./]/!{/^[[:space:]]*([#;]|$)/!s/^/# left out in the lab, not a network namespace setting: /}' \
  "$S/etc-ufw/sysctl.conf"

cp -a /etc/alternatives "$S/alternatives"
for name in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do
  base=${name%%-*}
  rest=${name#"$base"}
  ln -sfn "$(command -v "$base-$flavour$rest")" "$S/alternatives/$name"
done

mount --bind "$S/alternatives" /etc/alternatives
mount --bind "$S/etc-ufw" /etc/ufw
mount --bind "$S/lib-ufw" /lib/ufw
mount --bind "$S/default-ufw" /etc/default/ufw
