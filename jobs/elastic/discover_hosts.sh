#!/usr/bin/env bash
# Host discovery for `horovodrun --gloo --min-np/--max-np --host-discovery-script` on ONE machine.
#
# Horovod's elastic driver blacklists the *host* of a worker that fails. With every slot on
# "localhost" one lost worker would take all of them, so each slot gets its own name. horovodrun
# starts a worker locally (no ssh) when its host name resolves to an address of this machine's
# interfaces, so use names that do: localhost, 127.0.0.1, this host's name (if /etc/hosts maps
# it to a local address) and the machine's other IPv4 addresses.
#
# Usage: discover_hosts.sh [SLOTS]  -- prints up to SLOTS (default 3) "name:1" lines.
# On a cluster, print "node:slots" lines for the nodes of the allocation instead.
set -euo pipefail
want=${1:-3}
names=(localhost 127.0.0.1)
local_addrs=" 127.0.0.1 $(hostname -I 2>/dev/null || true) "
own=$(hostname)
own_addr=$(getent ahostsv4 "$own" 2>/dev/null | awk '{print $1; exit}' || true)
if [[ -n $own_addr && $local_addrs == *" $own_addr "* ]]; then names+=("$own"); fi
for addr in $local_addrs; do
    case $addr in *:*) ;; *) names+=("$addr") ;; esac
done
printf '%s\n' "${names[@]}" | awk '!seen[$0]++' | head -n "$want" | sed 's/$/:1/'
