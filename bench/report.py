"""Renders imkit-bench JSON lines as BENCHMARKS.md tables, imkit beside its peers."""
import json
import platform
import subprocess
import sys


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}"


path, mode, command = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(path) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# Benchmarks\n")
print(f"Mode **{mode}**, made by `{command}` on this project's machine: {cpu}, "
      f"2 cores, {platform.system()} {platform.release()}. Servers pinned to core 0, the load generator "
      "(`imkit-bench`) to core 1; loopback only. Peers: "
      f"{version(['mosquitto', '-h'])}; {version(['nats-server', '--version'])}. "
      "This machine is a shared VM: repeated runs vary by up to 2x, so compare within one run.\n")
print("Latency is from the timestamp in the payload to receipt at the receiver (broadcast: to the last "
      "member). CPU is the server's user+system time per delivered message; server / generator CPU is the "
      "share of a core each used while measuring (each is pinned to one core, so near 100% means that "
      "side was the limit).\n")


def share(r):
    s, g = r.get("server_cpu_share"), r.get("generator_cpu_share")
    if s is None or g is None:
        return "n/a"
    return f"{s * 100:.0f}% / {g * 100:.0f}%"


def table(title, scenario, note=""):
    sel = [r for r in rows if r["scenario"] == scenario]
    if not sel:
        return
    print(f"## {title}\n")
    if note:
        print(note + "\n")
    print("| system | label | connections | delivered/s | p50 µs | p99 µs | p99.9 µs | CPU µs/msg | server / generator CPU | RSS MiB | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sel:
        rss = r["rss_bytes"] / 2**20 if r.get("rss_bytes") else None
        print(f"| {r['system']} | {r['label']} | {r['connections']:,} | {fmt(r['per_second'])} | {r['p50_us']:,} | "
              f"{r['p99_us']:,} | {r['p999_us']:,} | {fmt(r.get('cpu_us_per_message'))} | {share(r)} | {fmt(rss)} | {r['notes']} |")
    print()


idle = [r for r in rows if r["scenario"] == "idle"]
if idle:
    print("## 1. Idle footprint\n")
    print("| system | connections | server RSS per connection | ratio to imkit TCP |")
    print("|---|---|---|---|")
    base = next((r["rss_per_connection"] for r in idle if r["system"] == "ImkitTcp"), None)
    for r in idle:
        per = r.get("rss_per_connection")
        ratio = f"{base / per:.2f}" if base and per else "n/a"
        print(f"| {r['system']} | {r['connections']:,} | {fmt(per, ' B')} | {ratio} |")
    print()

table("2. 1:1 reliable", "reliable",
      "imkit: a message counts when the sender has both SENT and the delivered receipt. MQTT: QoS 1, "
      "counted at the subscriber (the publisher's window is its PUBACKs).")
rel = [r for r in rows if r["scenario"] == "reliable"]
mq = next((r for r in rel if r["system"] == "Mqtt"), None)
if mq and mq["per_second"] > 0:
    print("| imkit store | imkit/Mosquitto deliveries | p99 imkit vs Mosquitto |")
    print("|---|---|---|")
    for r in rel:
        if r["system"] != "Mqtt":
            print(f"| {r['label']} | {r['per_second'] / mq['per_second']:.2f}x | {r['p99_us']:,} vs {mq['p99_us']:,} µs |")
    print()
table("3. 1:1 fire-and-forget ceiling", "fire-and-forget",
      "imkit: senders wait only for SENT (durable) acks; counted at the receiver. NATS core: no acks at all.")
ff = [r for r in rows if r["scenario"] == "fire-and-forget"]
nats = next((r for r in ff if r["system"] == "Nats"), None)
im = next((r for r in ff if r["system"] != "Nats"), None)
if nats and im and nats["per_second"] > 0:
    print(f"imkit/NATS: **{im['per_second'] / nats['per_second']:.2f}x**\n")
table("5. Large group broadcast", "broadcast", "Latency: time until the last member has each message.")
table("4. Small groups, open-loop rate steps", "small-groups",
      "Each group: 10 connections, one of which sends (imkit: the owner, a member that does not receive "
      "its own message; peers: a publish-only connection beside 9 subscribers), so each message makes 9 "
      "deliveries everywhere. The pacer offers the rate whatever the system answers; latency is per "
      "delivery, from the time the pacer scheduled the message. MQTT publishes at QoS 1.")
sg = [r for r in rows if r["scenario"] == "small-groups"]
if sg:
    print("| offered | imkit delivered/s | imkit/Mosquitto | imkit/NATS | p99 µs imkit / Mosquitto / NATS |")
    print("|---|---|---|---|---|")
    for label in dict.fromkeys(r["label"] for r in sg):
        by = {r["system"]: r for r in sg if r["label"] == label}
        im, mq, na = by.get("ImkitTcp"), by.get("Mqtt"), by.get("Nats")
        if not im:
            continue
        ratio = lambda p: f"{im['per_second'] / p['per_second']:.2f}x" if p and p["per_second"] else "n/a"
        p99 = " / ".join(f"{r['p99_us']:,}" if r else "n/a" for r in (im, mq, na))
        print(f"| {label} | {fmt(im['per_second'])} | {ratio(mq)} | {ratio(na)} | {p99} |")
    print()
table("6a. Reconnect storm", "storm",
      "Logins per second (delivered/s here) and the time from TCP connect to the login answer "
      "(MQTT: CONNACK; NATS: the client's connect, which ends with a PONG).")
table("6b. Offline drain", "drain",
      "Users who logged in once and left are sent 100 messages each; then all log in at once. Latency is "
      "per user, from connect to holding all 100. Mosquitto: persistent sessions with QoS 1 subscriptions "
      "(its queue lives in memory, like imkit's memory store). NATS core keeps nothing for offline "
      "subscribers, so it has no row.")


def pick(scenario, system, label=None, note=None):
    for r in rows:
        if r["scenario"] == scenario and r["system"] == system and (label is None or r["label"] == label) \
                and (note is None or note in r["notes"]):
            return r
    return None


def verdict(ok):
    return "met" if ok else "**not met**"


targets = []
mq = pick("reliable", "Mqtt")
for label, want in (("memory", 10), ("sqlite --durability full", 3)):
    im = pick("reliable", "ImkitTcp", label)
    if im and mq and mq["per_second"]:
        ratio = im["per_second"] / mq["per_second"]
        p99_ok = im["p99_us"] <= mq["p99_us"]
        extra = f", p99 {im['p99_us']:,} vs {mq['p99_us']:,} µs" if label == "memory" else ""
        targets.append((f"1:1 reliable, {label}: ≥ {want}x Mosquitto QoS 1" + (", p99 no worse" if label == "memory" else ""),
                        f"{ratio:.2f}x{extra}", verdict(ratio >= want and (p99_ok or label != "memory"))))
im, na = pick("fire-and-forget", "ImkitTcp"), pick("fire-and-forget", "Nats")
if im and na and na["per_second"]:
    ratio = im["per_second"] / na["per_second"]
    targets.append(("fire-and-forget: ≥ 0.5x NATS core", f"{ratio:.2f}x", verdict(ratio >= 0.5)))
for system, limit in (("ImkitTcp", 4096), ("ImkitWs", 8192)):
    r = pick("idle", system)
    if r and r.get("rss_per_connection") is not None:
        per = r["rss_per_connection"]
        targets.append((f"idle {system}: ≤ {limit // 1024} KiB per connection", f"{per / 1024:.1f} KiB", verdict(per <= limit)))
bs = [r for r in rows if r["scenario"] == "broadcast" and r["system"] == "ImkitTcp"]
if bs:
    # 100 msg/s to 5,000 members offers only 500,000 deliveries/s, so the
    # throughput target is read off the best rate step.
    best = max(bs, key=lambda r: r["per_second"])
    targets.append(("large group: ≥ 1,000,000 deliveries/s (best rate step)",
                    f"{best['per_second']:,.0f}/s ({best['notes'].split(';')[0]})", verdict(best["per_second"] >= 1e6)))
b = pick("broadcast", "ImkitTcp", note=" 100 msg/s")
if b:
    targets.append(("large group, 100 msg/s: p99 to the last member < 50 ms",
                    f"{b['p99_us'] / 1000:,.1f} ms ({b['notes']})", verdict(b["p99_us"] < 50_000)))
try:
    failed = [l.strip() for l in open(f"target/bench/failed-{mode}.txt") if l.strip()]
except OSError:
    failed = []
if failed:
    print("## Runs that did not complete\n")
    print("These runs ended with an error (the generator's last words follow each), so they have no row above.\n")
    for l in failed:
        print(f"- {l}")
    print()
if targets:
    print("## Targets (issue 7) in this run\n")
    print("| target | measured | |")
    print("|---|---|---|")
    for t in targets:
        print(f"| {t[0]} | {t[1]} | {t[2]} |")
    print()
try:
    print(open("bench/micro.md").read())
except OSError:
    pass
