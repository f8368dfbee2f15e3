//! Scenario 6a: a reconnect storm. `conns` clients connect and log in as
//! fast as the generator can (`concurrency` at once); each login is timed
//! from the TCP connect to the server's answer. The drain that follows it
//! is in [`crate::drain`].

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;

use crate::imkit::login;
use crate::peers::{mqtt_connect, run_id};
use crate::stats::{self, finish, histogram};
use crate::{Report, System, Target};

/// Scenario 6a: `conns` logins, `concurrency` at a time.
pub(crate) async fn storm(t: &Target, conns: usize, concurrency: usize) -> Result<Report, String> {
    let run = run_id();
    let hist = Arc::new(Mutex::new(histogram()));
    let bar = ProgressBar::new(conns as u64).with_message("storm");
    let before = stats::sample(t.pid);
    let start = Instant::now();
    let held: Vec<Box<dyn std::any::Any + Send>> = futures::stream::iter(0..conns)
        .map(|i| {
            let (t, run, hist, bar) = (t.clone(), run.clone(), hist.clone(), bar.clone());
            async move {
                let began = Instant::now();
                let conn: Box<dyn std::any::Any + Send> = match t.system {
                    System::ImkitTcp | System::ImkitWs => {
                        Box::new(login(&t, &format!("st{run}-{i}")).await?)
                    }
                    System::Mqtt => {
                        let (c, mut el) =
                            mqtt_connect(&t.addr, &format!("st{run}-{i}"), 10).await?;
                        let task = tokio::spawn(async move { while el.poll().await.is_ok() {} });
                        Box::new((c, AbortOnDrop(task)))
                    }
                    System::Nats => Box::new(
                        async_nats::connect(&t.addr)
                            .await
                            .map_err(|e| format!("nats connect: {e}"))?,
                    ),
                    System::Amqp => return Err("no storm scenario for AMQP".to_string()),
                };
                let us = began.elapsed().as_micros() as u64;
                if let Ok(mut h) = hist.lock() {
                    let _ = h.record(us.max(1));
                }
                bar.inc(1);
                Ok::<_, String>(conn)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let elapsed = start.elapsed();
    let after = stats::sample(t.pid);
    bar.finish_and_clear();
    let mut r = Report {
        scenario: "storm".into(),
        system: format!("{:?}", t.system),
        label: "logins".into(),
        connections: conns,
        notes: format!(
            "{conns} logins, {concurrency} at a time; latency is connect to login answer"
        ),
        ..Report::default()
    };
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut r, held.len() as u64, elapsed, &h, before, after);
    drop(held);
    Ok(r)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
