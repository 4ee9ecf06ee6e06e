#!/usr/bin/env python3
"""Example subscriber of Strata's bitrate socket (Python 3 standard library only).

The edge daemon pushes, ten times a second, what the bonded links carry within
the one-way delay budget (`[control] deadline_ms`) as one JSON object per line
on /run/strata/<name>.bitrate.sock (docs/BITRATE.md). This script prints it,
and can turn it into an encoder's target bitrate:

    strata-bitrate.py --name car7
    strata-bitrate.py --name car7 --command 'echo "set bitrate {kbps}"'

The target follows the rule docs/BITRATE.md recommends: a share (--share, 0.8)
of the lower of "now" and "next second", clamped to --min-kbps..--max-kbps;
down at once, up by at most --up-per-s (15 %) a second; held while the value
is unknown. --command runs (through the shell) when the target changed by more
than --step (5 %); {kbps} and {bps} are replaced by the target.

Run as root, or as a member of the daemon's `[status] group`.
"""

import argparse
import json
import socket
import subprocess
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--name", default="edge", help="instance name (default: edge)")
    where.add_argument("--socket", help="socket path (default: /run/strata/<name>.bitrate.sock)")
    p.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    p.add_argument("--json", action="store_true", help="print the daemon's lines as they come")
    p.add_argument("--share", type=float, default=0.8, help="target = share x fit (default 0.8)")
    p.add_argument("--min-kbps", type=float, default=500.0, help="lowest target (default 500)")
    p.add_argument("--max-kbps", type=float, default=20000.0, help="highest target (default 20000)")
    p.add_argument("--up-per-s", type=float, default=0.15, help="largest rise per second (default 0.15)")
    p.add_argument("--step", type=float, default=0.05, help="change that runs --command (default 0.05)")
    p.add_argument("--command", help="shell command run with {kbps}/{bps} when the target changes")
    return p.parse_args()


class Target:
    """An encoder bitrate that falls at once and rises slowly."""

    def __init__(self, args):
        self.args = args
        self.kbps = None  # unknown until the first known value
        self.at = None

    def update(self, now_bps, next_bps, t):
        """The new target, kbit/s, or None while nothing was known yet."""
        a = self.args
        if now_bps is None or next_bps is None:
            return self.kbps  # unknown: hold what we had
        want = a.share * min(now_bps, next_bps) / 1000.0
        want = max(a.min_kbps, min(a.max_kbps, want))
        if self.kbps is None or want <= self.kbps:
            self.kbps = want  # down at once: late packets are lost frames
        else:
            dt = max(0.0, t - self.at)
            self.kbps = min(want, self.kbps * (1.0 + a.up_per_s * dt))
        self.at = t
        return self.kbps


def mbit(v):
    return "   -  " if v is None else f"{v / 1e6:6.2f}"


def main():
    args = parse_args()
    path = args.socket or f"/run/strata/{args.name}.bitrate.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sys.exit(f"strata-bitrate: cannot connect to {path}: {e}")
    target = Target(args)
    applied = None
    last_seq = None
    seen = 0
    for line in sock.makefile("r", encoding="utf-8"):
        msg = json.loads(line)
        if "error" in msg:
            sys.exit(f"strata-bitrate: the daemon says: {msg['error']}")
        seen += 1
        kbps = target.update(msg.get("now_bps"), msg.get("next_second_bps"), time.monotonic())
        if args.json:
            print(line, end="", flush=True)
        else:
            gap = "" if last_seq is None or msg["seq"] == last_seq + 1 else f"  (missed {msg['seq'] - last_seq - 1})"
            clock = time.strftime("%H:%M:%S", time.localtime(msg["unix_ms"] / 1000)) + f".{msg['unix_ms'] % 1000:03d}"
            if msg.get("now_bps") is None:
                state = f"unknown: {msg.get('reason', '?')}"
            else:
                state = f"{msg['links_counted']} link(s)"
            tgt = "     -" if kbps is None else f"{kbps:6.0f}"
            print(
                f"{clock} #{msg['seq']:<6} within {msg['deadline_ms']} ms: now {mbit(msg.get('now_bps'))} "
                f"next {mbit(msg.get('next_second_bps'))} Mbit/s  target {tgt} kbit/s  {state}{gap}",
                flush=True,
            )
        last_seq = msg["seq"]
        if args.command and kbps is not None and (applied is None or abs(kbps - applied) > args.step * applied):
            cmd = args.command.replace("{kbps}", str(round(kbps))).replace("{bps}", str(round(kbps * 1000)))
            subprocess.run(cmd, shell=True, check=False)
            applied = kbps
        if args.count and seen >= args.count:
            break
    else:
        sys.exit("strata-bitrate: the daemon closed the socket")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
