//! An echo bot on the client SDK: answers every text message it receives,
//! 1:1 or in a group, with the same text.
//!
//! ```sh
//! cargo run --example bot -- --token "$(cargo run -q -p imkit-server -- token echo-bot)"
//! ```

use clap::Parser;
use imkit::client::{Client, ClientOptions, Event, Peer};
use imkit::proto::pb;

#[derive(Parser)]
struct Args {
    /// Server address: host:port or ws://host:port/.
    #[arg(long, default_value = "127.0.0.1:7400")]
    addr: String,
    /// Login token (see `imkit-server token <user>`).
    #[arg(long, env = "IMKIT_TOKEN")]
    token: String,
    /// Device id of the bot.
    #[arg(long, default_value = "bot")]
    device: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let args = Args::parse();
    let (client, mut events) = Client::connect(&args.addr, ClientOptions::default()).await?;
    let me = client.login(&args.token, &args.device).await?.user_id;
    println!("echo bot running as {me}");
    while let Some(event) = events.recv().await {
        let Event::Message(m) = event else { continue };
        if m.sender_id == me {
            continue;
        }
        let Some(pb::content::Body::Text(t)) = m.content.and_then(|c| c.body) else {
            continue;
        };
        let to = match m.conversation_id.strip_prefix("g:") {
            Some(group) => Peer::group(group),
            None => Peer::user(m.sender_id.clone()),
        };
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.send_text(to, format!("echo: {}", t.text)).await {
                eprintln!("reply failed: {e}");
            }
        });
    }
    Ok(())
}
