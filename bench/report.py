"""Renders imkit-bench JSON lines as BENCHMARKS.md tables, imkit beside its peers."""
import json
import platform
import re
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
baseline = sys.argv[4] if len(sys.argv) > 4 else ""
rows = [json.loads(l) for l in open(path) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# Benchmarks\n")
print(f"Mode **{mode}**, made by `{command}` on this project's machine: {cpu}, "
      f"2 cores, {platform.system()} {platform.release()}. Servers pinned to core 0, the load generator "
      "(`imkit-bench`, one thread) to core 1; loopback only. Peers: "
      f"{version(['mosquitto', '-h'])} (TCP_NODELAY on, as imkit); {version(['nats-server', '--version'])}; "
      "RabbitMQ (the machine's own, pinned to core 0 for the run). "
      "This machine is a shared VM: repeated runs vary by up to 2x, so compare within one run, and "
      "prefer CPU µs per message, which varies less than throughput.\n")
if baseline:
    print(f"Rows labelled *before* ran the imkit server of {baseline} in the same run.\n")
print("Latency is from the timestamp in the payload to receipt at the receiver (broadcast: to the last "
      "member). CPU is the server's user+system time per delivered message; server / generator CPU is the "
      "share of a core each used while measuring (each is pinned to one core, so near 100% means that "
      "side was the limit). A figure whose generator used 90% or more is marked *floor*: the server "
      "might have done more.\n")


def share(r):
    s, g = r.get("server_cpu_share"), r.get("generator_cpu_share")
    if s is None or g is None:
        return "n/a"
    mark = " *floor*" if g >= 0.9 else ""
    return f"{s * 100:.0f}% / {g * 100:.0f}%{mark}"


def pairs_of(r):
    m = re.match(r"(\d+) pairs", r.get("notes", ""))
    return int(m.group(1)) if m else None


def table(title, scenario, note="", extra=None):
    sel = [r for r in rows if r["scenario"] == scenario]
    if not sel:
        return
    print(f"## {title}\n")
    if note:
        print(note + "\n")
    head = "| system | label | connections | delivered/s | p50 µs | p99 µs | p99.9 µs |"
    sep = "|---|---|---|---|---|---|---|"
    if extra:
        head += " ack p50 µs | ack p99 µs |"
        sep += "---|---|"
    print(head + " CPU µs/msg | server / generator CPU | RSS MiB | notes |")
    print(sep + "---|---|---|---|")
    for r in sel:
        rss = r["rss_bytes"] / 2**20 if r.get("rss_bytes") else None
        ack = f" {fmt(r.get('ack_p50_us'))} | {fmt(r.get('ack_p99_us'))} |" if extra else ""
        print(f"| {r['system']} | {r['label']} | {r['connections']:,} | {fmt(r['per_second'])} | {r['p50_us']:,} | "
              f"{r['p99_us']:,} | {r['p999_us']:,} |{ack} {fmt(r.get('cpu_us_per_message'))} | {share(r)} | {fmt(rss)} | {r['notes']} |")
    print()


def pick(scenario, system, label=None, note=None, pairs=None):
    for r in rows:
        if r["scenario"] == scenario and r["system"] == system and (label is None or r["label"] == label) \
                and (note is None or note in r["notes"]) and (pairs is None or pairs_of(r) == pairs):
            return r
    return None


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

table("2. 1:1 reliable, closed loop", "reliable",
      "Each pair: one sender with at most 16 messages in flight, one receiver. imkit: a message counts "
      "when the sender has both SENT (durable) and the delivered receipt covering it; the receiver "
      "acknowledges each batch of frames it read up to the highest seq, as the SDK does. MQTT: QoS 1, "
      "the window enforced by PUBACKs, counted at the subscriber (which PUBACKs each). RabbitMQ: durable "
      "queue per pair, persistent messages, publisher confirms as the window, manual cumulative acks; "
      "pairs share 8 AMQP connections.")
rel = [r for r in rows if r["scenario"] == "reliable"]
sizes = sorted({pairs_of(r) for r in rel if pairs_of(r)})
if rel:
    print("| pairs | imkit store | delivered/s | vs Mosquitto QoS 1 | vs RabbitMQ | CPU µs/msg (Mosquitto, RabbitMQ) |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        mq, am = pick("reliable", "Mqtt", pairs=n), pick("reliable", "Amqp", pairs=n)
        for r in rel:
            if r["system"] != "ImkitTcp" or pairs_of(r) != n:
                continue
            vs = lambda p: f"{r['per_second'] / p['per_second']:.2f}x" if p and p["per_second"] else "n/a"
            cpus = ", ".join(fmt(p.get("cpu_us_per_message")) if p else "n/a" for p in (mq, am))
            print(f"| {n} | {r['label']} | {fmt(r['per_second'])} | {vs(mq)} | {vs(am)} | "
                  f"{fmt(r.get('cpu_us_per_message'))} ({cpus}) |")
    print()
table("3. 1:1 at a fixed offered rate", "rate",
      "50 pairs, each sender on its own clock, whatever the server answers. *ack* is the send to the "
      "durable acknowledgement: imkit SENT, MQTT PUBACK, RabbitMQ publisher confirm; p50/p99 are send to "
      "receiver.", extra=True)
table("4. 1:1 fire-and-forget ceiling", "fire-and-forget",
      "imkit *memory*: stored messages, senders wait only for SENT acks (a window of 16). imkit *signals*: "
      "live-only `Signal` frames, never stored or answered, a `Ping` every 16 (the Pong paces the sender). "
      "NATS core: no acks at all, a flush every 16. Counted at the receiver.")
ff = [r for r in rows if r["scenario"] == "fire-and-forget"]
nats = next((r for r in ff if r["system"] == "Nats"), None)
for im in (r for r in ff if r["system"] != "Nats"):
    if nats and nats["per_second"] > 0:
        print(f"imkit {im['label']}/NATS: **{im['per_second'] / nats['per_second']:.2f}x**\n")
table("5. Large group broadcast", "broadcast",
      "One sender, every member online. Latency: time until the last member has each message. "
      "imkit *signals*: live-only `Signal`s to the same group instead of messages.")
table("6. A conversation of many messages against an empty one", "big-conversation",
      "One user sends from 4 devices (16 in flight each) to a user who stays offline; history pages of "
      "50 are read backward from random points in the middle. delivered/s is sends (or pages) per second; "
      "latency is send to SENT (or request to answer).")
table("7. Small groups, open-loop rate steps", "small-groups",
      "Each group: 10 connections, one of which sends (imkit: the owner, a member that does not receive "
      "its own message; peers: a publish-only connection beside 9 subscribers), so each message makes 9 "
      "deliveries everywhere. The pacer offers the rate whatever the system answers; latency is per "
      "delivery, from the time the pacer scheduled the message. MQTT publishes at QoS 1.")
table("8a. Reconnect storm", "storm",
      "Logins per second (delivered/s here) and the time from TCP connect to the login answer "
      "(MQTT: CONNACK; NATS: the client's connect, which ends with a PONG).")
table("8b. Offline drain", "drain",
      "Users who logged in once and left are sent 100 messages each (by ten senders); then all log in at "
      "once. Latency is per user, from connect to holding all 100. imkit: a login owed at most 100 gets them "
      "pushed, more gets a SyncNotice and pulls Sync pages. Mosquitto: persistent sessions with QoS 1 "
      "subscriptions (its queue lives in memory). NATS core keeps nothing for offline subscribers, so it "
      "has no row.")
table("8c. One returning user's backlog", "backlog",
      "One user who logged in once and left is sent the backlog by ten senders (ten conversations); then "
      "logs in. Latency (one sample) is from connect to holding every message; delivered/s is messages per "
      "second of the drain. imkit: SyncNotice, then byte-bounded Sync pages (256 KiB), a delivered receipt "
      "per page. Mosquitto: one persistent session replaying its QoS 1 queue.")
table("10. Abuse beside chat", "abuse",
      "50 pairs chat at 2,000 msgs/s (SQLite FULL, the server at its default limits) while hostile "
      "connections do their worst: logged-in clients that pipeline Sync requests and never read, "
      "slowloris logins (a byte a second), garbage senders that reconnect, and pre-login floods (a "
      "4 KiB frame half sent). Latency is the pairs' send to receiver; RSS and the server's open "
      "descriptors (in the notes) are at the end of the run.")


def verdict(ok):
    return "met" if ok else "**not met**"


targets = []
for n, want in ((50, 1.5), (500, 3.0)):
    imm, mq = pick("reliable", "ImkitTcp", "memory", pairs=n), pick("reliable", "Mqtt", pairs=n)
    if imm and mq and mq["per_second"]:
        ratio = imm["per_second"] / mq["per_second"]
        targets.append((f"1:1 reliable, memory, {n} pairs: ≥ {want}x Mosquitto QoS 1", f"{ratio:.2f}x",
                        verdict(ratio >= want)))
        if imm.get("cpu_us_per_message") and mq.get("cpu_us_per_message"):
            c, m = imm["cpu_us_per_message"], mq["cpu_us_per_message"]
            targets.append((f"1:1 reliable, memory, {n} pairs: server CPU per message ≤ half of Mosquitto's",
                            f"{c:.1f} vs {m:.1f} µs", verdict(c <= m / 2)))
    sq, am = pick("reliable", "ImkitTcp", "sqlite --durability full", pairs=n), pick("reliable", "Amqp", pairs=n)
    if n == 50 and sq and am and am["per_second"]:
        ratio = sq["per_second"] / am["per_second"]
        targets.append(("1:1 reliable, SQLite FULL, 50 pairs: ≥ 3x RabbitMQ durable", f"{ratio:.2f}x", verdict(ratio >= 3)))
    if n == 50 and sq and mq and mq["per_second"]:
        ratio = sq["per_second"] / mq["per_second"]
        targets.append(("1:1 reliable, SQLite FULL, 50 pairs: ≥ 0.5x Mosquitto QoS 1", f"{ratio:.2f}x", verdict(ratio >= 0.5)))
for label, peer in (("sqlite --durability full", "Amqp"), ("memory", "Mqtt")):
    r, p = pick("rate", "ImkitTcp", label), pick("rate", peer)
    if r and p:
        targets.append((f"fixed rate, {label}: p99 to receiver no worse than {peer} (same durability)",
                        f"{r['p99_us']:,} vs {p['p99_us']:,} µs", verdict(r["p99_us"] <= p["p99_us"])))
na = pick("fire-and-forget", "Nats")
for label, what in (("signals", "live-only signals"), ("memory", "stored messages, SENT-windowed")):
    im = pick("fire-and-forget", "ImkitTcp", label)
    if im and na and na["per_second"]:
        ratio = im["per_second"] / na["per_second"]
        targets.append((f"fire-and-forget ({what}): ≥ 0.5x NATS core", f"{ratio:.2f}x", verdict(ratio >= 0.5)))
bs = [r for r in rows if r["scenario"] == "broadcast" and r["system"] == "ImkitTcp" and r["label"] not in ("before", "signals")]
if bs:
    best = max(bs, key=lambda r: r["per_second"])
    targets.append(("large group: ≥ 1,000,000 deliveries/s (best rate step)",
                    f"{best['per_second']:,.0f}/s ({best['notes'].split(';')[0]})", verdict(best["per_second"] >= 1e6)))
b = next((r for r in bs if " 100 msg/s" in r["notes"]), None)
if b:
    targets.append(("large group, 100 msg/s: p99 to the last member < 50 ms",
                    f"{b['p99_us'] / 1000:,.1f} ms ({b['notes']})", verdict(b["p99_us"] < 50_000)))
big = [r for r in rows if r["scenario"] == "big-conversation" and r["label"].startswith("sqlite")]
small = next((r for r in big if "send into an empty" in r["notes"]), None)
large = next((r for r in big if "send into the large" in r["notes"]), None)
if small and large and small["per_second"]:
    ratio = large["per_second"] / small["per_second"]
    targets.append(("SQLite: sends into a conversation of many messages as fast as into an empty one",
                    f"{ratio:.2f}x the throughput, p99 {large['p99_us']:,} vs {small['p99_us']:,} µs",
                    verdict(ratio >= 0.8)))
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
    print("## Targets (issue 14) in this run\n")
    print("| target | measured | |")
    print("|---|---|---|")
    for t in targets:
        print(f"| {t[0]} | {t[1]} | {t[2]} |")
    print()
try:
    print(open("bench/analysis.md").read())
except OSError:
    pass
for extra in ("bench/micro.md", "bench/later.md"):
    # Written by hand: criterion figures, and the focused runs of later
    # issues, so a full run keeps them.
    try:
        print(open(extra).read())
    except OSError:
        pass
