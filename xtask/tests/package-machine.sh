#!/bin/sh
# A throw-away "clean machine" for the package test (xtask/tests/package.rs),
# built without touching the host:
#
#   package-machine.sh root WORK
#       Run by the test under `unshare --mount --net` (a private mount and
#       network namespace). Builds the machine's root at WORK/m/root: an
#       overlay whose lower layer is the host's root file system (so dpkg,
#       libc and the shell are those of a Debian install, with Strata not
#       installed) and whose upper layer is a tmpfs that dies with the
#       namespace; fresh /proc, /sys (of this network namespace), /run, /tmp
#       and bpffs, the host's /dev for /dev/net/tun. WORK/notify is visible
#       inside as /run/notify, for the daemons' sd_notify sockets. Then
#       chroots into it and becomes the machine's anchor process: the test
#       enters the machine with `nsenter --target PID --mount --net --root`.
#
#   package-machine.sh wire HUB_PID EDGE_PID
#       Run on the host: the network of the installed example
#       configurations. The hub's namespace gets a bridge named eth0 with
#       the example's hub address 203.0.113.10/24; the edge's namespace two
#       "modems" wwan0 and wwan1 (veth pairs into the bridge) with
#       addresses and default routes, as a modem's DHCP would give them.
#       So the examples run unchanged.
set -eu

case "$1" in
root)
    work=$2
    mount --make-rprivate /
    mkdir -p "$work/m"
    mount -t tmpfs -o mode=0755 machine "$work/m"
    mkdir -p "$work/m/upper" "$work/m/work" "$work/m/root"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$work/m/upper,workdir=$work/m/work" "$work/m/root"
    r=$work/m/root
    mount -t proc proc "$r/proc"
    mount -t sysfs sysfs "$r/sys"
    mount -t bpf bpf "$r/sys/fs/bpf"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs -o mode=0755 run "$r/run"
    mount -t tmpfs -o mode=1777 tmp "$r/tmp"
    mkdir -p "$r/run/notify"
    mount --bind "$work/notify" "$r/run/notify"
    ip link set lo up
    # Ready only once chrooted: the test enters the machine through this
    # process's root, which is the host's until chroot.
    exec chroot "$r" sh -c 'echo anchor-ready; exec sleep 3600'
    ;;
wire)
    hub=$2
    edge=$3
    in_hub() { nsenter --target "$hub" --net -- "$@"; }
    in_edge() { nsenter --target "$edge" --net -- "$@"; }
    in_hub ip link add eth0 type bridge
    in_hub ip addr add 203.0.113.10/24 dev eth0
    in_hub ip link set eth0 up
    for i in 0 1; do
        in_hub ip link add "port$i" type veth peer name "wwan$i" netns "$edge"
        in_hub ip link set "port$i" master eth0 up
        in_edge ip addr add "203.0.113.2$i/24" dev "wwan$i"
        in_edge ip link set "wwan$i" up
        # Two default routes, one per modem, as two DHCP leases would give.
        in_edge ip route add default via 203.0.113.10 dev "wwan$i" metric "$((100 + i))"
    done
    # Two interfaces on one subnet: each answers ARP only for its own
    # address, so the hub reaches each "modem" through its own port.
    in_edge sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    ;;
*)
    echo "usage: $0 root WORK | wire HUB_PID EDGE_PID" >&2
    exit 2
    ;;
esac
