//! An embedded imkit server in a few lines: SQLite storage, TCP and
//! WebSocket listeners, HMAC login tokens.
//!
//! ```sh
//! cargo run --example server
//! ```

use imkit::core::auth::HmacAuthenticator;
use imkit::core::model::UserId;
use imkit::core::store::sqlite::{SqliteOptions, open_stores};
use imkit::server::Server;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let secret = "change-me";
    let server = Server::builder()
        .stores(open_stores("example.db", SqliteOptions::default())?)
        .token_secret(secret)
        .tcp("127.0.0.1:7400")
        .websocket("127.0.0.1:7401")
        .bind()
        .await?;
    let auth = HmacAuthenticator::new(secret);
    for user in ["alice", "bob"] {
        println!(
            "token for {user}: {}",
            auth.mint(&UserId::from(user), 86_400)
        );
    }
    server
        .run_until(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await?;
    Ok(())
}
