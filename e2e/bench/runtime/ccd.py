#!/usr/bin/env python3
"""create + start + wait + delete of a busybox `true` bundle, median over N,
for each runtime given, side by side in one run, plus the peak RSS (VmHWM)
of the runtime process that holds a created container (the init waiting
for `start`: crius-runtime's forked init, `runc init`).

    e2e/bench/runtime/ccd.py [-n 50] [--pause-ms 100] NAME=PATH ...

Back to back (the default), a kernel cost that only the first of a burst
pays stays hidden: moving a process into a v1 cgroup by pid waits out an
RCU grace period after a quiet spell (10 ms and more on these machines).
--pause-ms waits that long between containers (not timed), as a node
between pod starts does.

Builds the bundle (busybox and its libraries, runc's default spec) in a
temporary directory; each runtime gets its own --root. Root only.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

def make_bundle(d):
    rootfs = os.path.join(d, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    bb = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(bb, os.path.join(rootfs, "bin/busybox"))
    for a in ("sh", "true"):
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    out = subprocess.run(["ldd", bb], capture_output=True, text=True).stdout
    for w in out.split():
        if w.startswith("/") and os.path.exists(w):
            dst = rootfs + w
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(w, dst)
    for sub in ("proc", "sys", "dev"):
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    subprocess.run(["runc", "spec"], cwd=d, check=True)
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    c["process"]["terminal"] = False
    c["process"]["args"] = ["true"]
    c["process"]["capabilities"].pop("ambient", None)
    c["root"]["readonly"] = False
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

def measure(name, rt, bundle, n, tmp, pause):
    root = os.path.join(tmp, "root-" + name)
    ts = []
    hwm = 0
    for i in range(n):
        cid = f"bench-{name}-{os.getpid()}-{i}"
        pf = os.path.join(tmp, cid + ".pid")
        t = time.monotonic()
        subprocess.run([rt, "--root", root, "create", "--bundle", bundle, "--pid-file", pf, cid],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(pf) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
        subprocess.run([rt, "--root", root, "start", cid], check=True)
        deadline = time.monotonic() + 10
        while alive(pid):
            if time.monotonic() > deadline:
                sys.exit(f"{name}: container {cid} did not exit")
            time.sleep(0.0002)
        subprocess.run([rt, "--root", root, "delete", cid], check=True)
        ts.append(time.monotonic() - t)
        os.unlink(pf)
        time.sleep(pause)
    ts.sort()
    return statistics.median(ts) * 1000, ts[int(len(ts) * 0.9)] * 1000, hwm

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--pause-ms", type=float, default=0, help="quiet time between containers")
    ap.add_argument("runtimes", nargs="+", help="NAME=PATH")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="crius-bench-runtime-", dir="/var/tmp")
    try:
        bundle = os.path.join(tmp, "bundle")
        os.makedirs(bundle)
        make_bundle(bundle)
        rows = []
        for spec in a.runtimes:
            name, path = spec.split("=", 1)
            med, p90, rss = measure(name, path, bundle, a.n, tmp, a.pause_ms / 1000)
            rows.append((name, med, p90, rss))
        base = rows[0][1]
        print(f"{'runtime':<16} {'median ms':>10} {'p90 ms':>8} {'peak RSS KiB':>13} {'vs first':>9}")
        for name, med, p90, rss in rows:
            print(f"{name:<16} {med:>10.1f} {p90:>8.1f} {rss:>13} {med / base:>9.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
