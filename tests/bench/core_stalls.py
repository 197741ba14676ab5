#!/usr/bin/env python3
"""Finds times a core is taken from a process: a process pinned to each given core sleeps 0.2 ms at
a time for --duration seconds and reports every wake-up later than --threshold-ms, with when it
happened (ms from the start). Run it with nothing else running before a latency benchmark: a core
the machine takes for milliseconds now and then (another process, a periodic kernel thread, the
hypervisor) sets the p99 of any proxy pinned to it, whatever the proxy does.

  tests/bench/core_stalls.py --cpus 0,1 --duration 5
"""

import argparse
import os
import sys
import multiprocessing
import time


def probe(cpu, duration, threshold, conn):
    os.sched_setaffinity(0, {cpu})
    start = last = time.monotonic()
    stalls = []
    while last - start < duration:
        time.sleep(0.0002)
        now = time.monotonic()
        if now - last > threshold:
            stalls.append(((now - start) * 1000, (now - last) * 1000))
        last = now
    conn.send(stalls)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", default="0,1", help="cores to probe, comma-separated")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds")
    ap.add_argument("--threshold-ms", type=float, default=1.5,
                    help="report wake-ups later than this")
    args = ap.parse_args()
    try:
        cpus = [int(c) for c in args.cpus.split(",")]
    except ValueError:
        ap.error(f"--cpus {args.cpus!r}: expected core numbers such as 0,1")
    missing = set(cpus) - os.sched_getaffinity(0)
    if missing:
        ap.error(f"--cpus: cores {sorted(missing)} are not available here")
    if args.duration <= 0 or args.threshold_ms <= 0:
        ap.error("--duration and --threshold-ms must be positive")
    # One process per core: threads of one interpreter would wait for each other's lock.
    results, procs = {}, []
    for cpu in cpus:
        ours, theirs = multiprocessing.Pipe()
        proc = multiprocessing.Process(target=probe, args=(cpu, args.duration,
                                                           args.threshold_ms / 1000, theirs))
        proc.start()
        procs.append((cpu, proc, ours))
    for cpu, proc, ours in procs:
        results[cpu] = ours.recv()
        proc.join()
    for cpu in cpus:
        stalls = results[cpu]
        worst = max((late for _, late in stalls), default=0)
        print(f"core {cpu}: {len(stalls)} wake-ups later than {args.threshold_ms:g} ms "
              f"(worst {worst:.1f} ms)" + ("" if not stalls else ": " + ", ".join(
                  f"at {at:.0f} ms +{late:.1f}" for at, late in stalls[:40])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
