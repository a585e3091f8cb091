#!/usr/bin/env bash
# The driver carrying real traffic on Linux. Two network namespaces, each with an adapter: the
# driver on the simulated kernel in a wintun-emu process, its upper edge a TUN interface. The
# router example (client/examples/router.rs) joins their rings, so ping and TCP from one
# namespace to the other cross both drivers' send and receive paths. Namespaces and TUN
# interfaces need root: without it, the network part runs under sudo. The emulators run the
# build of the driver OXTUN_SIM_DRIVER chooses (host, or image: the x64 kernel image, which must
# be built), and each says which on its first line.
set -euo pipefail
if [ -z "${OXTUN_DEMO_BUILT:-}" ]; then
    source "$(dirname "$0")/setup.sh" demo
    cargo build --release --locked -p oxtun-sim --bin wintun-emu -p oxtun-client --example router
fi
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "demo: network namespaces need root; continuing under sudo"
    exec sudo OXTUN_DEMO_BUILT=1 OXTUN_SIM_DRIVER="${OXTUN_SIM_DRIVER:-host}" "$0"
fi

work=$(mktemp -d)
namespaces=(oxtun-demo-a-$$ oxtun-demo-b-$$)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for namespace in "${namespaces[@]}"; do ip netns del "$namespace" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

in_namespace() {
    local index=$1
    shift
    ip netns exec "${namespaces[$index]}" "$@"
}

# Every task offload the driver offers, turned on as an administrator does with
# Set-NetAdapterAdvancedProperty; they come into force while the router, which asks for the
# per-packet header, is registered, so TCP crosses as super-packets (docs/offloads.md).
offloads=()
for keyword in '*IPChecksumOffloadIPv4=3' '*TCPChecksumOffloadIPv4=3' '*TCPChecksumOffloadIPv6=3' \
    '*UDPChecksumOffloadIPv4=3' '*UDPChecksumOffloadIPv6=3' '*LsoV2IPv4=1' '*LsoV2IPv6=1' \
    '*UsoIPv4=1' '*UsoIPv6=1' '*RscIPv4=1' '*RscIPv6=1'; do
    offloads+=(--keyword "$keyword")
done

# start_adapter INDEX NAME ADDRESS...: a wintun-emu in namespace INDEX (MTU 1500, as a VPN sets
# its adapter's), once it says ready.
start_adapter() {
    local index=$1 name=$2
    shift 2
    local addresses=()
    for address in "$@"; do addresses+=(--address "$address"); done
    # Not through in_namespace: a function would run in a subshell, and $! would be its pid.
    ip netns exec "${namespaces[$index]}" target/release/wintun-emu --socket "$work/$name.sock" --name "$name" \
        --mtu 1500 "${offloads[@]}" "${addresses[@]}" >"$work/$name.out" &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q '^ready ' "$work/$name.out" && return
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "demo: wintun-emu for $name did not start" >&2
    exit 1
}

# stop PID: SIGTERM, then its exit status.
stop() {
    kill -TERM "$1"
    local status=0
    wait "$1" || status=$?
    return $status
}

for namespace in "${namespaces[@]}"; do
    ip netns add "$namespace"
    ip -n "$namespace" link set lo up
done
start_adapter 0 oxtun-a 10.77.0.1/24 fd77::1/64
start_adapter 1 oxtun-b 10.77.0.2/24 fd77::2/64
target/release/examples/router "$work/oxtun-a.sock" "$work/oxtun-b.sock" >"$work/router.out" &
router=$!
pids+=($router)
emulators=("${pids[0]}" "${pids[1]}")
# Traffic only once both of the router's sessions are up: a packet before that has no way
# across, and a demo that loses one says the driver drops packets.
for _ in $(seq 100); do
    grep -q '^router: ready' "$work/router.out" && break
    kill -0 "$router" 2>/dev/null || break
    sleep 0.1
done
grep -q '^router: ready' "$work/router.out" || { echo "demo: the router did not start" >&2; exit 1; }

# ping_all FAMILY ADDRESS: five pings, every one answered, or the demo fails.
ping_all() {
    local result
    result=$(in_namespace 0 ping "$1" -c 5 -i 0.2 -W 2 "$2" | tail -n 2)
    echo "$result"
    grep -q ' 0% packet loss' <<<"$result" || { echo "demo: pings to $2 were lost" >&2; exit 1; }
}

echo
echo "== ping, namespace a (oxtun-a, 10.77.0.1, fd77::1) to namespace b (oxtun-b)"
ping_all -4 10.77.0.2
ping_all -6 fd77::2
echo
echo "== TCP, both ways, every byte checked"
for server in 10.77.0.2 fd77::2; do
    in_namespace 1 python3 scripts/demo_tcp.py serve 7777 >"$work/server.out" &
    server_pid=$!
    for _ in $(seq 100); do
        grep -qs listening "$work/server.out" && break
        sleep 0.1
    done
    in_namespace 0 python3 scripts/demo_tcp.py transfer "$server" 7777 256
    wait "$server_pid"
done
echo
echo "== teardown: each adapter halted and its driver unloaded, then the router's figures"
for pid in "${emulators[@]}"; do stop "$pid"; done
wait "$router"
pids=()
grep -v '^router: ready' "$work/router.out"
echo
echo "demo: done"
