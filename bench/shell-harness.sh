#!/usr/bin/env bash
# The benchmark's shell side: the work netconform does, done the way shell test
# harnesses do it. `ip netns add` and `ip -n NS ...` for the lab, `ip netns exec NS
# sysctl` for its settings, `iptables-restore` / `nft -f` for the rules, socat for the
# services, and one `ping -c1 -W1` or `nc -w1` per probe, one after another.
# See bench/README.md; ci/bench runs this beside runner/benches/bench.rs.
#
#   bench/shell-harness.sh [--out FILE] [--plan FILE] [--quick] [MEASURE...]
#
# MEASURE is build, rules, probe, matrix or seed (default: all; seed needs --plan, the
# seed scenarios as written by `bench --plan FILE`). --out gets one line per measure:
# key<TAB>median ms<TAB>runs<TAB>min<TAB>max[<TAB>note].
#
# Every namespace this makes is named $PFX-*, and all of them are deleted at the end
# and on exit, however it ends (trap). Nothing is created in the root namespace: every
# `ip link` and `ip addr` names a lab namespace with -n, veths are made inside the
# lab's host namespace with the peer put straight into the node's, and probes go only
# to lab addresses. The xtables lock lives in our temp folder, not /run.
set -euo pipefail
export LC_ALL=C

PFX="ncbench$$"
OUT=/dev/stdout
PLAN=""
QUICK=0
MEASURES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --plan) PLAN=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    build|rules|probe|matrix|seed) MEASURES+=("$1"); shift ;;
    *) echo "shell-harness: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#MEASURES[@]} -gt 0 ] || MEASURES=(build rules probe matrix seed)
[ "$(id -u)" -eq 0 ] || { echo "shell-harness: needs root" >&2; exit 2; }
for tool in ip sysctl iptables-nft-restore iptables-legacy-restore iptables-nft-save iptables-legacy-save nft nc ping socat ss; do
  command -v "$tool" >/dev/null || { echo "shell-harness: $tool is not installed" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/ncbench.XXXXXX)
# `ip netns add` makes /run/netns a mount point the first time; if we made it, it goes.
NETNS_DIR_WAS_THERE=0
[ -e /run/netns ] && NETNS_DIR_WAS_THERE=1
export XTABLES_LOCKFILE="$WORK/xtables.lock"
SERVERS=()  # PIDs of the services we started, and only those

stop_servers() {
  local pid
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SERVERS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVERS=()
}

# Our namespaces, by prefix.
our_namespaces() {
  ip netns list | awk -v p="$1" 'index($1, p) == 1 { print $1 }'
}

cleanup() {
  local ns
  set +e
  stop_servers
  for ns in $(our_namespaces "$PFX-"); do ip netns del "$ns"; done
  if [ "$NETNS_DIR_WAS_THERE" -eq 0 ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
    umount /run/netns 2>/dev/null
    rmdir /run/netns 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

reps() { # full count; halved (rounded up) with --quick
  if [ "$QUICK" -eq 1 ]; then echo $(( ($1 + 1) / 2 )); else echo "$1"; fi
}

# Microseconds since T0 (set with T0=$EPOCHREALTIME); no fork.
since() { ELAPSED=$(( ${EPOCHREALTIME/./} - ${1/./} )); }

ms() { printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 )); }

# record KEY NOTE SAMPLE_US...: median, min and max in ms, one line to OUT.
record() {
  local key=$1 note=$2; shift 2
  local sorted n med
  mapfile -t sorted < <(printf '%s\n' "$@" | sort -n)
  n=${#sorted[@]}
  if (( n % 2 )); then med=${sorted[n/2]}; else med=$(( (sorted[n/2-1] + sorted[n/2]) / 2 )); fi
  printf '  %-28s median %10s ms over %d runs %s\n' "$key" "$(ms "$med")" "$n" "$note" >&2
  printf '%s\t%s\t%d\t%s\t%s\t%s\n' "$key" "$(ms "$med")" "$n" "$(ms "${sorted[0]}")" "$(ms "${sorted[n-1]}")" "$note" >> "$OUT"
}

# Let the kernel free the last lab's devices before the next run (as the Rust side).
settle() { sleep "$(awk -v n="$1" 'BEGIN { printf "%.3f", (50 + 4 * n) / 1000 }')"; }

# The settings netconform gives every lab namespace (harness/src/lab/mod.rs,
# prepare_namespace): IPv6 off, ping sockets, no ICMP rate limit, kernel defaults.
BASELINE=(
  net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  "net.ipv4.ping_group_range=0 2147483647" net.ipv4.icmp_ratemask=0 net.ipv4.icmp_ratelimit=0
  net.ipv4.ip_forward=0
)
for scope in all default; do
  BASELINE+=(net.ipv4.conf.$scope.rp_filter=0 net.ipv4.conf.$scope.route_localnet=0
    net.ipv4.conf.$scope.accept_local=0 net.ipv4.conf.$scope.proxy_arp=0 net.ipv4.conf.$scope.arp_ignore=0
    net.ipv4.conf.$scope.arp_announce=0 net.ipv4.conf.$scope.accept_redirects=1)
done

ns_add() {
  ip netns add "$1"
  ip netns exec "$1" sysctl -qw "${BASELINE[@]}" >/dev/null
  ip -n "$1" link set lo up
}

# ------------------------------------------------------------------ generic lab

# build_lab LAB N: host LAB-host with br0 10.0.0.1/24, nodes LAB-n1..N at 10.0.0.(i+1).
build_lab() {
  local lab=$1 n=$2 h="$1-host" i ns
  ns_add "$h"
  ip netns exec "$h" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null
  ip -n "$h" link add br0 type bridge
  ip -n "$h" link set br0 up
  ip -n "$h" addr add 10.0.0.1/24 dev br0
  for (( i = 1; i <= n; i++ )); do
    ns="$lab-n$i"
    ns_add "$ns"
    ip -n "$h" link add "v$i" type veth peer name eth0 netns "$ns"
    ip -n "$h" link set "v$i" master br0 up
    ip -n "$ns" addr add "10.0.0.$(( i + 1 ))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via 10.0.0.1
  done
}

delete_lab() {
  local ns
  for ns in $(our_namespaces "$1-"); do ip netns del "$ns"; done
}

measure_build() {
  echo "lab build" >&2
  local n r lab built dropped
  for n in 1 10 50 200; do
    built=() dropped=()
    lab="$PFX-b$n"
    build_lab "$lab" "$n"; delete_lab "$lab"; settle "$n"  # warm-up, as the Rust side
    for (( r = 0; r < $(reps $(( n >= 200 ? 3 : 5 ))); r++ )); do
      T0=$EPOCHREALTIME; build_lab "$lab" "$n"; since "$T0"; built+=("$ELAPSED")
      T0=$EPOCHREALTIME; delete_lab "$lab"; since "$T0"; dropped+=("$ELAPSED")
      settle "$n"
    done
    record "build_$n" "" "${built[@]}"
    record "teardown_$n" "" "${dropped[@]}"
  done
}

# ------------------------------------------------------------------ rules

# rules_file N FORMAT: the same rules the Rust side loads (runner/benches/bench.rs).
rules_file() {
  awk -v n="$1" -v fmt="$2" 'BEGIN {
    if (fmt == "nft") {
      print "flush ruleset\ntable ip filter {\n  chain BENCH {"
      for (i = 0; i < n; i++) printf "    ip saddr 10.%d.%d.1 tcp dport %d accept\n", 1 + int(i / 250), i % 250, 1000 + i % 60000
      print "  }\n  chain FORWARD {\n    type filter hook forward priority 0; policy accept;\n    jump BENCH\n  }\n}"
    } else {
      print "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:BENCH - [0:0]\n-A FORWARD -j BENCH"
      for (i = 0; i < n; i++) printf "-A BENCH -s 10.%d.%d.1/32 -p tcp -m tcp --dport %d -j ACCEPT\n", 1 + int(i / 250), i % 250, 1000 + i % 60000
      print "COMMIT"
    }
  }'
}

# load BACKEND NS FIRST FILE: one restore, as netconform's back ends run it.
load() {
  case "$1" in
    iptables-nft|iptables-legacy)
      if [ "$3" -eq 1 ]; then ip netns exec "$2" "$1-restore" "$4"; else ip netns exec "$2" "$1-restore" --noflush "$4"; fi ;;
    nft) ip netns exec "$2" nft -f "$4" ;;
  esac
}

dump() {
  case "$1" in
    iptables-nft|iptables-legacy) ip netns exec "$2" "$1-save" -c ;;
    nft) ip netns exec "$2" nft list ruleset ;;
  esac
}

measure_rules() {
  echo "rule load" >&2
  local be n r lab file samples found
  for be in iptables-nft iptables-legacy nft; do
    lab="$PFX-r"
    build_lab "$lab" 1
    for n in 30 1000; do
      file="$WORK/bench-$n.$be"
      rules_file "$n" "$([ "$be" = nft ] && echo nft || echo iptables)" > "$file"
      load "$be" "$lab-host" 1 "$file"
      samples=()
      for (( r = 0; r < $(reps 5); r++ )); do
        T0=$EPOCHREALTIME; load "$be" "$lab-host" 1 "$file"; since "$T0"; samples+=("$ELAPSED")
      done
      found=$(dump "$be" "$lab-host" | grep -c -e '-A BENCH ' -e '^[[:space:]]*ip saddr 10\.' || true)
      [ "$found" -eq "$n" ] || { echo "shell-harness: $be loaded $n rules, the dump shows $found" >&2; exit 1; }
      record "rules_${be}_$n" "" "${samples[@]}"
    done
    delete_lab "$lab"
    settle 1
  done
}

# ------------------------------------------------------------------ services, probes

# serve NS PROTO PORT NAME: a service answering every request with one line.
serve() {
  case "$2" in
    tcp) ip netns exec "$1" socat "TCP4-LISTEN:$3,fork,reuseaddr" "EXEC:echo netconform $4" & ;;
    # Reads the request before answering: an answer before the read loses the race.
    udp) ip netns exec "$1" socat "UDP4-RECVFROM:$3,fork" "SYSTEM:read -r request; echo netconform $4" & ;;
  esac
  SERVERS+=($!)
  READY+=("$1 $2 $3")
}

# Wait until every service started since the last call listens.
wait_ready() {
  local s ns proto port tries
  for s in "${READY[@]}"; do
    read -r ns proto port <<< "$s"
    for (( tries = 0; tries < 200; tries++ )); do
      [ -n "$(ip netns exec "$ns" ss -Hln --"$proto" "sport = :$port")" ] && break
      sleep 0.01
    done
  done
  READY=()
}
READY=()

# probe NS PROTO ADDR PORT: sets OUTCOME to reached, refused or dropped.
probe() {
  local out rc=0
  case "$2" in
    tcp) ip netns exec "$1" nc -v -w1 "$3" "$4" < /dev/null > "$WORK/probe" 2>&1 || rc=$? ;;
    udp) echo "netconform probe" | ip netns exec "$1" nc -u -w1 "$3" "$4" > "$WORK/probe" 2>&1 || rc=$? ;;
    icmp) ip netns exec "$1" ping -c1 -W1 -q "$3" > "$WORK/probe" 2>&1 || rc=$? ;;
  esac
  IFS= read -r -d '' out < "$WORK/probe" || true
  if [ "$2" = udp ]; then
    # nc -u prints the answer if one came; it cannot tell a refusal from silence.
    case "$out" in *netconform*) OUTCOME=reached ;; *) OUTCOME=dropped ;; esac
  elif [ "$rc" -eq 0 ]; then
    OUTCOME=reached
  else
    case "$out" in
      *refused*|*"No route to host"*|*nreachable*|*prohibited*) OUTCOME=refused ;;
      *) OUTCOME=dropped ;;
    esac
  fi
}

measure_probe() {
  echo "probes" >&2
  local lab="$PFX-p" r key proto port want samples
  build_lab "$lab" 2
  printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -d 10.0.0.3/32 -p tcp -m tcp --dport 81 -j DROP\nCOMMIT\n' > "$WORK/probe.rules"
  load iptables-nft "$lab-host" 1 "$WORK/probe.rules"
  serve "$lab-n2" tcp 80 n2
  wait_ready
  for spec in "probe_tcp_reached tcp 80 reached 21" "probe_tcp_dropped tcp 81 dropped 5" "probe_icmp_reached icmp 0 reached 21"; do
    read -r key proto port want r <<< "$spec"
    # The shell pays one second for a drop where netconform pays 200 ms: fewer runs.
    [ "$want" = dropped ] && r=3
    samples=()
    for (( i = 0; i <= $(reps "$r"); i++ )); do
      T0=$EPOCHREALTIME; probe "$lab-n1" "$proto" 10.0.0.3 "$port"; since "$T0"
      [ "$OUTCOME" = "$want" ] || { echo "shell-harness: $key: expected $want, got $OUTCOME" >&2; exit 1; }
      [ "$i" -gt 0 ] && samples+=("$ELAPSED")  # the first is a warm-up (ARP)
    done
    record "$key" "" "${samples[@]}"
  done
  stop_servers
  delete_lab "$lab"
  settle 2
}

# counter_of DUMPFILE TABLE CHAIN RULE: packets of the rule in an iptables-save -c dump.
counter_of() {
  awk -v t="$2" -v c="$3" -v r="$4" '
    BEGIN { gsub(/[ \t]+/, " ", r) }
    /^\*/ { table = substr($0, 2); next }
    table == t && $2 == "-A" && $3 == c {
      line = $0; sub(/^\[[0-9]+:[0-9]+\] -A [^ ]+ /, "", line); gsub(/[ \t]+/, " ", line)
      if (line == r) { packets = substr($1, 2); sub(/:.*/, "", packets); print packets; found = 1; exit }
    }
    END { if (!found) print "none" }' "$1"
}

# counter_ok EXPECT GOT: EXPECT is =N or >=N.
counter_ok() {
  case "$1" in
    ">="*) [ "$2" != none ] && [ "$2" -ge "${1#>=}" ] ;;
    "="*) [ "$2" != none ] && [ "$2" -eq "${1#=}" ] ;;
  esac
}

# ------------------------------------------------------------------ matrix

# 9 nodes, services on 80, 443 and 8080, nothing on 22; the host drops 22 to n9.
# Every node probes every node on every port, one probe after another: 324 probes.
measure_matrix() {
  echo "324-probe matrix" >&2
  local lab="$PFX-m" r i from to port want whole=() phase=() failed=0 before after delta
  printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -d 10.0.0.10/32 -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n' > "$WORK/matrix.rules"
  for (( r = 0; r < $(reps 3); r++ )); do
    T0=$EPOCHREALTIME
    build_lab "$lab" 9
    load iptables-nft "$lab-host" 1 "$WORK/matrix.rules"
    for (( i = 1; i <= 9; i++ )); do
      for port in 80 443 8080; do serve "$lab-n$i" tcp "$port" "n$i"; done
    done
    wait_ready
    dump iptables-nft "$lab-host" > "$WORK/before"
    T1=$EPOCHREALTIME
    for (( from = 1; from <= 9; from++ )); do
      for (( to = 1; to <= 9; to++ )); do
        for port in 22 80 443 8080; do
          if [ "$port" != 22 ]; then want=reached; elif [ "$to" -eq 9 ] && [ "$from" -ne 9 ]; then want=dropped; else want=refused; fi
          probe "$lab-n$from" tcp "10.0.0.$(( to + 1 ))" "$port"
          [ "$OUTCOME" = "$want" ] || { failed=$(( failed + 1 )); echo "  matrix n$from -> n$to:$port: expected $want, got $OUTCOME" >&2; }
        done
      done
    done
    since "$T1"; phase+=("$ELAPSED")
    dump iptables-nft "$lab-host" > "$WORK/after"
    before=$(counter_of "$WORK/before" filter FORWARD "-d 10.0.0.10/32 -p tcp -m tcp --dport 22 -j DROP")
    after=$(counter_of "$WORK/after" filter FORWARD "-d 10.0.0.10/32 -p tcp -m tcp --dport 22 -j DROP")
    delta=$(( after - before ))
    # nc -w1 waits long enough for one SYN retransmission: at least 8, not exactly 8.
    counter_ok ">=8" "$delta" || { failed=$(( failed + 1 )); echo "  matrix counter: $delta packets, expected at least 8" >&2; }
    stop_servers
    delete_lab "$lab"
    since "$T0"; whole+=("$ELAPSED")
    settle 9
  done
  local note=""
  [ "$failed" -eq 0 ] || note="$failed wrong verdicts"
  record matrix_scenario "$note" "${whole[@]}"
  record matrix_probes "$note" "${phase[@]}"
}

# ------------------------------------------------------------------ seed suite

# Run the plan's scenarios, each built, loaded, probed, judged and torn down in turn.
# Prints PASS/FAIL per scenario on stderr and counts failures in FAILED_SCENARIOS.
run_plan() {
  local kind rest name be host="" lab="$PFX-s" nodes=() probes=() counters=() first settings
  local ns node ifname hostside att arg addr gw br file t c ch want rule from proto to port expect
  local bad before after delta nprobes
  FAILED_SCENARIOS=0
  while read -r kind rest; do
    case "$kind" in
      ""|"#"*) ;;
      scenario) read -r name be <<< "$rest"; host="" nodes=() probes=() counters=(); T0=$EPOCHREALTIME ;;
      timeout) ;;  # the shell harness waits nc -w1 and ping -W1 whatever the scenario says
      node) ns_add "$lab-$rest"; [ -n "$host" ] || host=$rest; nodes+=("$rest") ;;
      sysctl)  # NODE key=value|key=value...
        read -r node arg <<< "$rest"
        IFS='|' read -r -a settings <<< "$arg"
        ip netns exec "$lab-$node" sysctl -qw "${settings[@]}" >/dev/null ;;
      bridge)
        read -r br addr <<< "$rest"
        ip -n "$lab-$host" link add "$br" type bridge
        ip -n "$lab-$host" link set "$br" up
        [ "$addr" = - ] || ip -n "$lab-$host" addr add "$addr" dev "$br" ;;
      veth)
        read -r node ifname hostside att arg addr gw <<< "$rest"
        ip -n "$lab-$host" link add "$hostside" type veth peer name "$ifname" netns "$lab-$node"
        if [ "$att" = bridge ]; then
          ip -n "$lab-$host" link set "$hostside" master "$arg" up
        else
          ip -n "$lab-$host" addr add "$arg" dev "$hostside"
          ip -n "$lab-$host" link set "$hostside" up
        fi
        ip -n "$lab-$node" addr add "$addr" dev "$ifname"
        ip -n "$lab-$node" link set "$ifname" up
        [ "$gw" = - ] || ip -n "$lab-$node" route add default via "$gw" ;;
      rules)
        read -r be arg <<< "$rest"
        first=1
        for file in $arg; do load "$be" "$lab-$host" "$first" "$file"; first=0; done ;;
      tcp|udp) read -r node port <<< "$rest"; serve "$lab-$node" "$kind" "$port" "$node" ;;
      counter) counters+=("$rest") ;;
      probe) probes+=("$rest") ;;
      end)
        wait_ready
        [ ${#counters[@]} -eq 0 ] || dump "$be" "$lab-$host" > "$WORK/before"
        bad=()
        for p in "${probes[@]}"; do
          read -r from proto to port expect <<< "$p"
          probe "$lab-$from" "$proto" "$to" "$port"
          [ "$OUTCOME" = "$expect" ] || bad+=("$from -> $to:$port/$proto: expected $expect, got $OUTCOME")
        done
        if [ ${#counters[@]} -gt 0 ]; then
          dump "$be" "$lab-$host" > "$WORK/after"
          for c in "${counters[@]}"; do
            read -r t ch want rule <<< "$c"
            before=$(counter_of "$WORK/before" "$t" "$ch" "$rule")
            after=$(counter_of "$WORK/after" "$t" "$ch" "$rule")
            if [ "$before" = none ] || [ "$after" = none ]; then
              bad+=("counter $t $ch \`$rule\`: not found")
            else
              delta=$(( after - before ))
              # nc -w1 waits until the first TCP retransmission, so a dropped connect
              # may count two packets where netconform's 200 ms counts one: the shell
              # takes every count as "at least".
              want=${want#>=}; want=${want#=}
              counter_ok ">=$want" "$delta" || bad+=("counter $t $ch \`$rule\`: $delta packets, expected at least $want")
            fi
          done
        fi
        stop_servers
        delete_lab "$lab"
        since "$T0"
        nprobes=${#probes[@]}
        if [ ${#bad[@]} -eq 0 ]; then
          echo "    PASS  $name [$be] ($nprobes probes, ${#counters[@]} counters, $(( ELAPSED / 1000 )) ms)" >&2
        else
          FAILED_SCENARIOS=$(( FAILED_SCENARIOS + 1 ))
          echo "    FAIL  $name [$be] ($nprobes probes, ${#counters[@]} counters, $(( ELAPSED / 1000 )) ms)" >&2
          printf '      %s\n' "${bad[@]}" >&2
        fi ;;
      *) echo "shell-harness: unknown plan line: $kind $rest" >&2; exit 2 ;;
    esac
  done < "$1"
}

measure_seed() {
  [ -n "$PLAN" ] || { echo "shell-harness: seed needs --plan FILE (bench --plan FILE writes it)" >&2; exit 2; }
  echo "seed suite (plan $PLAN)" >&2
  local r samples=() failed=0 runs
  runs=$(reps 3)
  for (( r = 0; r < runs; r++ )); do
    T_SUITE=$EPOCHREALTIME
    run_plan "$PLAN"
    since "$T_SUITE"; samples+=("$ELAPSED")
    [ "$FAILED_SCENARIOS" -eq 0 ] || failed=$(( failed + 1 ))
    settle 5
  done
  local note=""
  [ "$failed" -eq 0 ] || note="$failed of $runs runs had failing scenarios"
  record seed_suite "$note" "${samples[@]}"
}

[ "$OUT" = /dev/stdout ] || : > "$OUT"
START=$EPOCHREALTIME
for m in "${MEASURES[@]}"; do "measure_$m"; done
since "$START"
echo "shell side done in $(( ELAPSED / 1000000 )) s" >&2
