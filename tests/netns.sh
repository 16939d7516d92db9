# tests/netns.sh - hosts for MPI on one machine: network namespaces, each
# with its own address and host name, joined by veth pairs to a bridge in
# a namespace of its own (a switch). Nothing is added to the machine's own
# namespace: every link is made inside the namespaces.
#
#   . tests/netns.sh
#   netns_up N [DELAY]   N hosts, strata-h0 .. strata-h<N-1>, at
#                        $NETNS_NET.1 ..; DELAY (tc netem, e.g. 200us) on
#                        every host's link: one way host to host = DELAY
#   netns_delay DELAY    change it (0: none)
#   netns_mpirun ARGS    mpirun in host 0 across the hosts, MPI's TCP
#                        transport only (btl tcp,self; no shared memory
#                        between hosts); ARGS after mpirun's own (-np ...);
#                        killed after NETNS_TIMEOUT s (120)
#   netns_has_netem      whether this kernel has sch_netem
#   netns_pids I         the pids running in host I
#   netns_down           kill what runs in them, delete them (idempotent;
#                        callers trap it on EXIT)
# The rsh agent mpirun uses to start its daemons is tests/netns-rsh: an
# "ssh" that enters a host's namespace (an unknown host: ssh's "No route").
# Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2, util-linux unshare.

NETNS_ID=${NETNS_ID:-strata$$}
NETNS_NET=${NETNS_NET:-10.213.77}
NETNS_N=0
NETNS_DIR=""
NETNS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

netns_name() { echo "$NETNS_ID-h$1"; }

# The CPUs host I runs on: hosts share this machine, so each gets its own
# share of the CPUs this shell may use (NETNS_CPUS_PER_HOST each, default
# 1; wrapping round when hosts x that exceed them), as separate machines
# would have their own
netns_cpus() {
	local per=${NETNS_CPUS_PER_HOST:-1} all j out=""
	read -r -a all < <(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')
	for ((j = 0; j < per; j++)); do
		out+="${out:+,}${all[($1 * per + j) % ${#all[@]}]}"
	done
	echo "$out"
}

netns_up() {
	local n=$1 delay=${2:-0} sw="$NETNS_ID-sw" i h
	NETNS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-netns.XXXXXX") || return 1
	ip netns add "$sw" || return 1
	NETNS_N=$n
	ip -n "$sw" link set lo up &&
		ip -n "$sw" link add br0 type bridge &&
		ip -n "$sw" link set br0 up || return 1
	: >"$NETNS_DIR/map"
	: >"$NETNS_DIR/hostfile"
	for ((i = 0; i < n; i++)); do
		h=$(netns_name "$i")
		ip netns add "$h" || return 1
		ip link add eth0 netns "$h" type veth peer name "p$i" netns "$sw" &&
			ip -n "$sw" link set "p$i" master br0 &&
			ip -n "$sw" link set "p$i" up &&
			ip -n "$h" link set lo up &&
			ip -n "$h" addr add "$NETNS_NET.$((i + 1))/24" dev eth0 &&
			ip -n "$h" link set eth0 up || return 1
		echo "$NETNS_NET.$((i + 1)) $h strata-h$i $(netns_cpus "$i")" \
			>>"$NETNS_DIR/map"
		echo "$NETNS_NET.$((i + 1)) slots=8" >>"$NETNS_DIR/hostfile"
	done
	netns_delay "$delay"
}

# can links be delayed here (sch_netem in this kernel)?
netns_has_netem() {
	local h
	h=$(netns_name 0)
	ip netns exec "$h" tc qdisc add dev lo root netem delay 1us 2>/dev/null &&
		ip netns exec "$h" tc qdisc del dev lo root
}

netns_delay() {
	local i h
	for ((i = 0; i < NETNS_N; i++)); do
		h=$(netns_name "$i")
		ip netns exec "$h" tc qdisc del dev eth0 root 2>/dev/null
		if [[ $1 != 0 ]]; then
			ip netns exec "$h" tc qdisc add dev eth0 root netem \
				delay "$1" || return 1
		fi
	done
}

netns_pids() { ip netns pids "$(netns_name "$1")" 2>/dev/null; }

# mpirun [ARGS...] in host 0, with host 0's own name; a hostfile line per
# host (HOSTFILE=path overrides it, e.g. to name a host that is not there)
netns_mpirun() {
	local hf=${HOSTFILE:-$NETNS_DIR/hostfile}
	STRATA_NETNS_MAP="$NETNS_DIR/map" OMPI_ALLOW_RUN_AS_ROOT=1 \
		OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
		timeout -k 5 "${NETNS_TIMEOUT:-120}" ip netns exec "$(netns_name 0)" unshare --uts \
		taskset -c "$(netns_cpus 0)" \
		sh -c 'hostname strata-h0 && exec "$@"' sh \
		mpirun --hostfile "$hf" --bind-to none \
		--mca plm_rsh_agent "$NETNS_ROOT/tests/netns-rsh" \
		--mca plm_rsh_no_tree_spawn 1 \
		--mca pml ob1 --mca btl tcp,self \
		--mca btl_tcp_if_include "$NETNS_NET.0/24" \
		--mca oob_tcp_if_include "$NETNS_NET.0/24" \
		--mca orte_base_help_aggregate 0 \
		"$@"
}

netns_down() {
	local i h
	for h in $(ip netns list 2>/dev/null | awk '{print $1}' |
		grep "^$NETNS_ID-"); do
		ip netns pids "$h" 2>/dev/null | xargs -r kill -9 2>/dev/null
	done
	for h in $(ip netns list 2>/dev/null | awk '{print $1}' |
		grep "^$NETNS_ID-"); do
		ip netns del "$h" 2>/dev/null
	done
	[[ -n $NETNS_DIR ]] && rm -rf "$NETNS_DIR"
	NETNS_DIR=""
	NETNS_N=0
}
