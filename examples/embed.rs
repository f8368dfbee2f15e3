//! A server and two clients in one process: `cargo run --example embed`.
use std::time::Duration;

use imkit::prelude::*;

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder().token_secret("dev").tcp("127.0.0.1:0");
    let server = server.start().await?;
    let addr = server.tcp_addr().ok_or("no tcp listener")?.to_string();
    let token = |user: &str| server.mint_token(user, Duration::from_secs(3600));

    let (alice, _) = Client::connect(&addr, ClientOptions::default()).await?;
    alice.login(&token("alice")?, "phone").await?;
    let (bob, mut events) = Client::connect(&addr, ClientOptions::default()).await?;
    bob.login(&token("bob")?, "laptop").await?;

    alice
        .send(Peer::user("bob"), Content::text("hello, bob"))
        .await?;
    while let Some(event) = events.recv().await {
        if let Event::Message(m) = event {
            println!("bob got {:?} from {}", m.text(), m.sender_id);
            break;
        }
    }
    server.shutdown();
    Ok(())
}
