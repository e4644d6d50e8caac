#!/usr/bin/env python3
"""The kernel's garbage collection of a large nftables set with timeouts, and single adds into it.

  scripts/bench-nft-gc.py [ELEMENTS [SAMPLES]]      (defaults: 1000000, 300; needs root and nft)

Loads ELEMENTS addresses into a `flags timeout` hash set in a network namespace it creates, then
times SAMPLES single `nft add element` commands, 50-300 ms apart, once with the kernel's default
collection interval (a walk of the whole set every second) and once with `gc-interval 1m` (what
rephub's agent declares). Prints one row per setting. The namespace is removed however it ends.
"""
import random, subprocess, sys, time

NS = "rhbgc"


def sh(cmd, stdin=None):
    return subprocess.run(cmd, shell=True, check=True, input=stdin, capture_output=True, text=True)


def dotted(a):
    return f"{(a >> 24) & 255}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


def run(gc, count, samples):
    subprocess.run(f"ip netns del {NS}", shell=True, capture_output=True)
    sh(f"ip netns add {NS}")
    try:
        sh(f"ip netns exec {NS} nft -f -",
           f"table inet t {{ set s {{ type ipv4_addr; flags timeout; size {2 * count + 65536}; {gc} }}; }}\n")
        for start in range(0, count, 100_000):
            els = ", ".join(dotted(0x0B000000 + a) for a in range(start, min(count, start + 100_000)))
            sh(f"ip netns exec {NS} nft -f -", f"add element inet t s {{ {els} }}\n")
        time.sleep(2)
        xs = []
        for i in range(samples):
            t0 = time.monotonic()
            sh(f"ip netns exec {NS} nft add element inet t s {{ {dotted(0x0A000000 + i)} }}")
            xs.append((time.monotonic() - t0) * 1000)
            time.sleep(random.uniform(0.05, 0.3))
        return sorted(xs)
    finally:
        subprocess.run(f"ip netns del {NS}", shell=True, capture_output=True)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    print(f"single adds into a set of {count} elements, {samples} samples")
    print("| collection | p50 | p90 | p99 | max | adds over 20 ms |\n|---|---|---|---|---|---|")
    for name, gc in (("every second (the default)", ""), ("gc-interval 1m", "gc-interval 1m;")):
        xs = run(gc, count, samples)
        p = lambda q: xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]
        print(f"| {name} | {p(50):.1f} ms | {p(90):.1f} ms | {p(99):.1f} ms | {xs[-1]:.1f} ms | "
              f"{sum(1 for x in xs if x > 20)} |")


if __name__ == "__main__":
    main()
