#!/usr/bin/env bash
# Provisioning for every box: a Rust toolchain and the distribution's own packages,
# then the same test script as CI. A box is a throwaway machine of its own, so
# loading br_netfilter there is fine.
set -euo pipefail
if command -v dnf >/dev/null; then
  # AlmaLinux / Rocky 9: nftables only; iptables-nft provides the iptables names.
  dnf install -y -q gcc make curl iproute iptables-nft nftables ipset util-linux libxml2 \
    podman netavark containernetworking-plugins firewalld
fi
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq curl ca-certificates build-essential
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
export PATH="$HOME/.cargo/bin:$PATH"
modprobe br_netfilter || true
cd /netconform
# On Debian and Ubuntu ci/install-deps installs the packages with apt; elsewhere it
# finds them installed above.
exec bash ci/test
