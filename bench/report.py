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
      "member). CPU is the server's user+system time per delivered message.\n")


def table(title, scenario, note=""):
    sel = [r for r in rows if r["scenario"] == scenario]
    if not sel:
        return
    print(f"## {title}\n")
    if note:
        print(note + "\n")
    print("| system | label | connections | delivered/s | p50 µs | p99 µs | p99.9 µs | CPU µs/msg | RSS MiB | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sel:
        rss = r["rss_bytes"] / 2**20 if r.get("rss_bytes") else None
        print(f"| {r['system']} | {r['label']} | {r['connections']:,} | {fmt(r['per_second'])} | {r['p50_us']:,} | "
              f"{r['p99_us']:,} | {r['p999_us']:,} | {fmt(r.get('cpu_us_per_message'))} | {fmt(rss)} | {r['notes']} |")
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
try:
    print(open("bench/micro.md").read())
except OSError:
    pass
