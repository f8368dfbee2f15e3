//! `imkit-bench`: one load generator for imkit, Mosquitto (MQTT) and NATS.
//!
//! Each subcommand runs one scenario against one system for a bounded time
//! and prints a JSON result line (also appended to `--out`): delivered
//! messages per second, latency percentiles from timestamps in the payload,
//! the server's CPU time per delivered message and its RSS (read from
//! `/proc/PID`). Loopback only; every run stops by itself.
//! `bench/run.sh` runs them all and writes BENCHMARKS.md.

mod abuse;
mod amqp;
mod drain;
mod groups;
mod imkit;
mod imkit_big;
mod imkit_pairs;
mod mqtt_wire;
mod nats;
mod peers;
mod stats;
mod storm;
mod wire;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "imkit-bench",
    about = "Load generator for imkit, Mosquitto and NATS"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Append the JSON result to this file.
    #[arg(long, global = true)]
    out: Option<std::path::PathBuf>,
    /// Runtime threads (default 1: bench/run.sh pins the generator to one
    /// core, where more threads only switch contexts).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
}

/// Which system to drive.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum System {
    /// imkit over TCP.
    ImkitTcp,
    /// imkit over WebSocket.
    ImkitWs,
    /// MQTT (Mosquitto).
    Mqtt,
    /// NATS core.
    Nats,
    /// RabbitMQ (AMQP 0-9-1): durable queues, persistent messages,
    /// publisher confirms, manual acks.
    Amqp,
}

#[derive(clap::Args, Debug, Clone)]
struct Target {
    /// The system.
    #[arg(long, value_enum)]
    system: System,
    /// Its address, host:port.
    #[arg(long)]
    addr: String,
    /// The server's process id, for CPU and RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// imkit token secret.
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// imkit: a second node of the same cluster. Receivers and group
    /// members connect there, senders to --addr, so every message crosses
    /// nodes (reliable, rate, broadcast).
    #[arg(long)]
    receivers_addr: Option<String>,
}

impl Target {
    /// Where receivers connect: the second node if there is one.
    pub(crate) fn receiving(&self) -> Target {
        let mut t = self.clone();
        if let Some(addr) = &self.receivers_addr {
            t.addr = addr.clone();
        }
        t
    }
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Idle connections: server memory per connection.
    Idle {
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
    },
    /// 1:1 reliable: pairs, a window of in-flight messages per sender.
    Reliable {
        #[command(flatten)]
        target: Target,
        /// Sender/receiver pairs.
        #[arg(long, default_value_t = 500)]
        pairs: usize,
        /// In-flight messages per sender.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Measured seconds (after one second of warm-up).
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Without receipts (imkit: SENT acks only; NATS: no acks at all).
        #[arg(long)]
        fire_and_forget: bool,
        /// imkit only: live-only `Signal`s (never stored or answered) with a
        /// `Ping` every `window`, the counterpart of NATS core publishing.
        #[arg(long)]
        signals: bool,
        /// A label for the report (e.g. the store in use).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// 1:1 pairs at a fixed offered rate (open loop): latency to the
    /// durable acknowledgement and to the receiver.
    Rate {
        #[command(flatten)]
        target: Target,
        /// Sender/receiver pairs.
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Messages per second offered, over all pairs.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Measured seconds (after one second of warm-up).
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// A label for the report (e.g. the store in use).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Hostile connections (never reading, slowloris, garbage, pre-login
    /// floods) beside pairs chatting at a fixed rate (imkit only).
    Abuse {
        #[command(flatten)]
        target: Target,
        /// Hostile connections (0: the baseline without them).
        #[arg(long, default_value_t = 10_000)]
        hostile: usize,
        /// Which kinds of hostile connection, shared out evenly:
        /// never-read, slowloris, garbage, prelogin.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "never-read,slowloris,garbage,prelogin"
        )]
        kinds: Vec<String>,
        /// Chatting pairs.
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Messages per second offered by the pairs.
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
        /// Measured seconds (after one second of warm-up).
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// A label for the report.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Sending into a conversation of many messages against an empty one,
    /// and history pages from its middle (imkit only).
    BigConversation {
        #[command(flatten)]
        target: Target,
        /// Messages the large conversation is filled with.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Sending connections (devices of one user).
        #[arg(long, default_value_t = 4)]
        senders: usize,
        /// In-flight sends per connection.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Measured seconds per step.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// A label for the report (e.g. the store in use).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// One group (topic, subject) with many online members; a fixed send rate.
    Broadcast {
        #[command(flatten)]
        target: Target,
        /// Online members.
        #[arg(long, default_value_t = 5_000)]
        members: usize,
        /// Messages per second sent to the group.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// imkit only: live-only `Signal`s to the group instead of messages.
        #[arg(long)]
        signals: bool,
    },
    /// Many small groups, open-loop rate steps: one report per step.
    SmallGroups {
        #[command(flatten)]
        target: Target,
        /// Groups.
        #[arg(long, default_value_t = 1_000)]
        groups: usize,
        /// Connections per group (one of them sends).
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Offered messages per second, one step each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000,10000")]
        rates: Vec<u64>,
        /// Seconds per step.
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// Reconnect storm: logins as fast as they go.
    Storm {
        #[command(flatten)]
        target: Target,
        /// Logins.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Logins in flight at once.
        #[arg(long, default_value_t = 500)]
        concurrency: usize,
    },
    /// Offline drain: users with queued messages log in at once.
    Drain {
        #[command(flatten)]
        target: Target,
        /// Offline users.
        #[arg(long, default_value_t = 1_000)]
        users: usize,
        /// Queued messages per user.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// A label for the report (e.g. the store in use).
        #[arg(long)]
        label: Option<String>,
    },
}

/// One scenario's result.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    scenario: String,
    system: String,
    label: String,
    /// Connections the scenario held.
    connections: usize,
    /// Messages delivered (counted as the scenario defines it).
    delivered: u64,
    /// Measured seconds.
    seconds: f64,
    /// Delivered per second.
    per_second: f64,
    /// Latency percentiles in microseconds.
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    /// Latency to the durable acknowledgement (SENT, PUBACK, confirm), in
    /// microseconds, where the scenario measures it.
    ack_p50_us: Option<u64>,
    ack_p99_us: Option<u64>,
    /// Server CPU microseconds per delivered message.
    cpu_us_per_message: Option<f64>,
    /// Server RSS at the end, bytes.
    rss_bytes: Option<u64>,
    /// Server RSS added per connection, bytes (idle scenario).
    rss_per_connection: Option<f64>,
    /// Server CPU seconds per second while measuring (1.0 = one core busy).
    server_cpu_share: Option<f64>,
    /// The generator's CPU seconds per second (it is pinned to one core).
    generator_cpu_share: Option<f64>,
    /// Anything worth knowing about the run.
    notes: String,
}

impl Report {
    /// Records acknowledgement latency percentiles.
    fn set_ack(&mut self, h: &hdrhistogram::Histogram<u64>) {
        if !h.is_empty() {
            self.ack_p50_us = Some(h.value_at_quantile(0.5));
            self.ack_p99_us = Some(h.value_at_quantile(0.99));
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    stats::raise_nofile();
    let built = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imkit-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Every scenario is bounded; this is the backstop.
        tokio::time::timeout(Duration::from_secs(600), run(cli.scenario))
            .await
            .map_err(|_| "scenario exceeded 600 s".to_string())?
    });
    match result {
        Ok(reports) => {
            for report in reports {
                let line = serde_json::to_string(&report).unwrap_or_default();
                println!("{line}");
                if let Some(path) = &cli.out {
                    use std::io::Write;
                    let appended = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| writeln!(f, "{line}"));
                    if let Err(e) = appended {
                        eprintln!("imkit-bench: cannot write {}: {e}", path.display());
                        return std::process::ExitCode::FAILURE;
                    }
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imkit-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(s: Scenario) -> Result<Vec<Report>, String> {
    let one = match s {
        Scenario::Idle { target, conns } => match target.system {
            System::ImkitTcp | System::ImkitWs => imkit::idle(&target, conns).await,
            System::Mqtt => peers::mqtt_idle(&target, conns).await,
            System::Nats => nats::nats_idle(&target, conns).await,
            System::Amqp => Err("no idle scenario for AMQP".into()),
        },
        Scenario::Reliable {
            target,
            pairs,
            window,
            secs,
            fire_and_forget,
            signals,
            label,
        } => {
            let mut r = match target.system {
                System::ImkitTcp | System::ImkitWs if signals => {
                    imkit_pairs::signal_pairs(&target, pairs, window, secs).await
                }
                _ if signals => Err("--signals is for imkit".into()),
                System::ImkitTcp | System::ImkitWs => {
                    imkit_pairs::pairs(&target, pairs, window, secs, fire_and_forget).await
                }
                System::Mqtt => {
                    peers::mqtt_pairs(&target, pairs, window, secs, fire_and_forget).await
                }
                System::Nats => nats::nats_pairs(&target, pairs, window, secs).await,
                System::Amqp => amqp::pairs(&target, pairs, window, secs).await,
            }?;
            r.label = label;
            Ok(r)
        }
        Scenario::Rate {
            target,
            pairs,
            rate,
            secs,
            label,
        } => {
            let mut r = match target.system {
                System::ImkitTcp | System::ImkitWs => {
                    imkit_pairs::rate(&target, pairs, rate, secs).await
                }
                System::Mqtt => peers::mqtt_rate(&target, pairs, rate, secs).await,
                System::Amqp => amqp::rate(&target, pairs, rate, secs).await,
                System::Nats => Err("NATS core has no acknowledgement to time".into()),
            }?;
            r.label = label;
            Ok(r)
        }
        Scenario::Abuse {
            target,
            hostile,
            kinds,
            pairs,
            rate,
            secs,
            label,
        } => {
            if !matches!(target.system, System::ImkitTcp) {
                return Err("the abuse scenario drives imkit over TCP only".into());
            }
            let mut r = abuse::run(&target, hostile, &kinds, pairs, rate, secs).await?;
            r.label = label;
            Ok(r)
        }
        Scenario::BigConversation {
            target,
            messages,
            senders,
            window,
            secs,
            label,
        } => {
            let mut reports = imkit_big::run(&target, messages, senders, window, secs).await?;
            for r in &mut reports {
                r.label = label.clone();
            }
            return Ok(reports);
        }
        Scenario::Broadcast {
            target,
            members,
            rate,
            secs,
            signals,
        } => match target.system {
            System::ImkitTcp | System::ImkitWs => {
                imkit::broadcast(&target, members, rate, secs, signals).await
            }
            _ if signals => Err("--signals is for imkit".into()),
            System::Mqtt => peers::mqtt_broadcast(&target, members, rate, secs).await,
            System::Nats => nats::nats_broadcast(&target, members, rate, secs).await,
            System::Amqp => Err("no broadcast scenario for AMQP".into()),
        },
        Scenario::SmallGroups {
            target,
            groups,
            members,
            rates,
            secs,
        } => return groups::small_groups(&target, groups, members, &rates, secs).await,
        Scenario::Storm {
            target,
            conns,
            concurrency,
        } => storm::storm(&target, conns, concurrency).await,
        Scenario::Drain {
            target,
            users,
            messages,
            label,
        } => {
            let mut r = match target.system {
                System::ImkitTcp | System::ImkitWs => {
                    drain::imkit_drain(&target, users, messages).await
                }
                System::Mqtt => drain::mqtt_drain(&target, users, messages).await,
                System::Nats => Err("NATS core keeps nothing for offline subscribers".into()),
                System::Amqp => Err("no drain scenario for AMQP".into()),
            }?;
            if let Some(label) = label {
                r.label = label;
            }
            Ok(r)
        }
    }?;
    Ok(vec![one])
}
