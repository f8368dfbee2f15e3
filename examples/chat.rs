//! An interactive terminal chat client.
//!
//! ```sh
//! cargo run --example chat -- --user alice       # mints a token from ./imkit.secret
//! ```
//!
//! Type a line to send it to the current peer. Commands:
//! `/to <user>`, `/group <group-id>`, `/create <name> <user,user,...>`,
//! `/groups`, `/list`, `/history`, `/read`, `/recall <message-id>`,
//! `/friends`, `/add <user>`, `/accept <user>`, `/quit`.

use std::path::PathBuf;

use clap::Parser;
use imkit::client::{Client, ClientOptions, Event, Peer};
use imkit::engine::auth::HmacAuthenticator;
use imkit::engine::model::UserId;
use imkit::proto::pb;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
struct Args {
    /// Server address: host:port or ws://host:port/.
    #[arg(long, default_value = "127.0.0.1:7400")]
    addr: String,
    /// Who you are.
    #[arg(long)]
    user: String,
    /// Login token; by default one is minted from --secret-file.
    #[arg(long, env = "IMKIT_TOKEN")]
    token: Option<String>,
    /// The server's secret file, to mint a token (what `imkit-server` created).
    #[arg(long, default_value = "imkit.secret")]
    secret_file: PathBuf,
    /// This device's id.
    #[arg(long, default_value = "terminal")]
    device: String,
}

fn render(m: &pb::Message) -> String {
    use pb::content::Body;
    let what = match m.content.as_ref().and_then(|c| c.body.as_ref()) {
        Some(Body::Text(t)) => t.text.clone(),
        Some(Body::File(f)) => format!("[file {} ({} bytes)]", f.name, f.size),
        Some(Body::Custom(c)) => format!("[{}]", c.kind),
        Some(Body::Recall(r)) => format!("[recalled message #{}]", r.target_seq),
        Some(Body::System(s)) => format!("[{} {}]", s.kind, s.data),
        None if m.recalled => "[recalled]".into(),
        None => String::new(),
    };
    format!("{} #{} {}: {}", m.conversation_id, m.seq, m.sender_id, what)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let token = match args.token {
        Some(t) => t,
        None => {
            let secret = std::fs::read_to_string(&args.secret_file).map_err(|e| {
                format!(
                    "no --token and cannot read {}: {e}",
                    args.secret_file.display()
                )
            })?;
            HmacAuthenticator::new(secret.trim()).mint(&UserId::parse(&args.user)?, 86_400)
        }
    };
    let (client, mut events) = Client::connect(&args.addr, ClientOptions::default()).await?;
    let me = client.login(&token, &args.device).await?.user_id;
    println!("logged in as {me}. /to <user> to pick a peer; /help for commands.");
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                Event::Message(m) => println!("< {}", render(&m)),
                Event::Receipt(r) => {
                    let kind = if r.kind == pb::ReceiptKind::Read as i32 {
                        "read"
                    } else {
                        "delivered"
                    };
                    println!(
                        "  ({} {kind} up to #{} in {})",
                        r.user_id, r.seq, r.conversation_id
                    );
                }
                Event::Typing(t) if t.active => println!("  ({} is typing)", t.user_id),
                Event::Contact(c) => println!("  (contact event {:?} from {})", c.kind, c.user_id),
                Event::Kicked { reason, message } => println!("! kicked: {reason:?} {message}"),
                Event::Disconnected { reason } => println!("! disconnected: {reason}"),
                Event::Connected { .. } => println!("! connected"),
                _ => {}
            }
        }
    });
    let mut peer: Option<Peer> = None;
    let mut conv: Option<String> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let result: Result<(), Box<dyn std::error::Error>> = async {
            match cmd {
                "" => {}
                "/quit" => std::process::exit(0),
                "/help" => println!("/to <user> /group <id> /create <name> <a,b> /groups /list /history /read /recall <id> /friends /add <user> /accept <user> /quit"),
                "/to" => {
                    let mut ids = [me.as_str(), rest];
                    ids.sort_unstable();
                    conv = Some(format!("d:{}:{}", ids[0], ids[1]));
                    peer = Some(Peer::user(rest));
                }
                "/group" => {
                    conv = Some(format!("g:{rest}"));
                    peer = Some(Peer::group(rest));
                }
                "/create" => {
                    let (name, members) = rest.split_once(' ').unwrap_or((rest, ""));
                    let members: Vec<&str> = members.split(',').filter(|s| !s.is_empty()).collect();
                    let g = client.create_group(name, &members).await?;
                    println!("created group {} ({} members); /group {} to talk", g.group_id, g.member_count, g.group_id);
                }
                "/groups" => {
                    for g in client.groups().await? {
                        println!("  {} {} ({} members)", g.group_id, g.name, g.member_count);
                    }
                }
                "/list" => {
                    let l = client.conversations().await?;
                    for c in &l.conversations {
                        println!("  {} unread {}: {}", c.conversation_id, c.unread, c.last_message.as_ref().map(render).unwrap_or_default());
                    }
                    println!("  total unread: {}", l.total_unread);
                }
                "/history" => {
                    let c = conv.as_deref().ok_or("pick a peer with /to first")?;
                    let page = client.history(c, 0, true, 20).await?;
                    for m in page.messages.iter().rev() {
                        println!("  {}", render(m));
                    }
                }
                "/read" => {
                    let c = conv.as_deref().ok_or("pick a peer with /to first")?;
                    let latest = client.history(c, 0, true, 1).await?;
                    let seq = latest.messages.first().map_or(0, |m| m.seq);
                    println!("  read up to #{}", client.mark_read(c, seq).await?);
                }
                "/recall" => {
                    let c = conv.as_deref().ok_or("pick a peer with /to first")?;
                    client.recall(c, rest).await?;
                }
                "/friends" => println!("  {:?}", client.friends().await?),
                "/add" => println!("  friends now: {}", client.add_friend(rest, "hi!").await?),
                "/accept" => client.accept_friend(rest).await?,
                unknown if unknown.starts_with('/') => println!("! unknown command {unknown}; /help lists them"),
                _ => {
                    let to = peer.clone().ok_or("pick a peer with /to <user> or /group <id>")?;
                    let ack = client.send_text(to, line.to_owned()).await?;
                    println!("  sent #{} ({})", ack.seq, ack.message_id);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            println!("! {e}");
        }
    }
    Ok(())
}
