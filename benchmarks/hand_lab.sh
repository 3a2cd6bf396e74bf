#!/usr/bin/env bash
# The local lab built by hand, without the harness: two namespaces, a veth pair,
# wireguard-go on both ends configured with wg, then one iperf3 TCP flow through
# the tunnel. Prints the receiver's bits/s. Used by benchmarks/spine.py to
# measure the harness's overhead. Usage: hand_lab.sh DURATION OMIT
set -euo pipefail
duration=${1:-5}
omit=${2:-1}
id=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
A=hand-$id-a B=hand-$id-b WA=hand${id}a WB=hand${id}b
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -f "/var/run/wireguard/$WA.sock" "/var/run/wireguard/$WB.sock"
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
ip netns add "$A"; ip netns add "$B"
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip link add "v$id"a netns "$A" type veth peer name "v$id"b netns "$B"
ip -n "$A" addr add 198.18.0.1/24 dev "v$id"a; ip -n "$A" link set "v$id"a up
ip -n "$B" addr add 198.18.0.2/24 dev "v$id"b; ip -n "$B" link set "v$id"b up
umask 077
wg genkey >"$tmp/ka"; wg pubkey <"$tmp/ka" >"$tmp/pa"
wg genkey >"$tmp/kb"; wg pubkey <"$tmp/kb" >"$tmp/pb"
WG_PROCESS_FOREGROUND=1 ip netns exec "$A" wireguard-go "$WA" & pids+=($!)
WG_PROCESS_FOREGROUND=1 ip netns exec "$B" wireguard-go "$WB" & pids+=($!)
until [ -S "/var/run/wireguard/$WA.sock" ] && [ -S "/var/run/wireguard/$WB.sock" ]; do sleep 0.02; done
ip netns exec "$A" wg set "$WA" private-key "$tmp/ka" listen-port 51820 peer "$(cat "$tmp/pb")" allowed-ips 198.19.0.2/32 endpoint 198.18.0.2:51821
ip netns exec "$B" wg set "$WB" private-key "$tmp/kb" listen-port 51821 peer "$(cat "$tmp/pa")" allowed-ips 198.19.0.1/32 endpoint 198.18.0.1:51820
ip -n "$A" addr add 198.19.0.1/24 dev "$WA"; ip -n "$A" link set "$WA" mtu 1420 up
ip -n "$B" addr add 198.19.0.2/24 dev "$WB"; ip -n "$B" link set "$WB" mtu 1420 up
until ip netns exec "$A" ping -c 1 -W 1 198.19.0.2 >/dev/null; do :; done
ip netns exec "$B" iperf3 --server --one-off --port 5201 --bind 198.19.0.2 >/dev/null & pids+=($!)
until ip netns exec "$B" ss -Hltn 'sport = :5201' | grep -q .; do sleep 0.02; done
ip netns exec "$A" iperf3 --client 198.19.0.2 --port 5201 --json --time "$duration" --omit "$omit" >"$tmp/out.json"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$tmp/out.json"
