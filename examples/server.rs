//! An embedded imkit server in a few lines: SQLite storage, TCP and
//! WebSocket listeners, JWT login tokens minted by the server itself.
//!
//! ```sh
//! cargo run --example server
//! ```

use std::time::Duration;

use imkit::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let server = Server::builder()
        .store(StoreConfig::sqlite("example.db"))
        .token_secret("change-me")
        .tcp("127.0.0.1:7400")
        .websocket("127.0.0.1:7401")
        .bind()
        .await?;
    let handle = server.handle();
    for user in ["alice", "bob"] {
        let token = handle.mint_token(user, Duration::from_secs(86_400))?;
        println!("token for {user}: {token}");
    }
    server
        .run_until(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await?;
    Ok(())
}
