//! An HTTP API under test: a server with the HTTP API on free ports, and
//! requests as the admin or as a user.

use std::net::SocketAddr;
use std::sync::Arc;

use imkit::client::{Client, ClientOptions, Events};
use imkit::engine::blob::DirBlobStore;
use imkit::server::http::HttpOptions;
use imkit::server::{Server, ServerHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::WAIT;

pub const ADMIN_KEY: &str = "test-admin-key";

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub tcp: SocketAddr,
    pub handle: ServerHandle,
    /// The options the server's HTTP API runs with.
    pub options: HttpOptions,
    _files: tempfile::TempDir,
}

impl Api {
    pub async fn start(admin_key: Option<&str>) -> Api {
        let files = tempfile::tempdir().expect("tempdir");
        let options = HttpOptions {
            admin_key: admin_key.map(str::to_owned),
            max_file_bytes: 1024 * 1024,
            ..HttpOptions::default()
        };
        let server = Server::builder()
            .token_secret(super::SECRET)
            .tcp("127.0.0.1:0")
            .blob_store(Arc::new(DirBlobStore::open(files.path()).expect("blobs")))
            .http("127.0.0.1:0", options.clone())
            .bind()
            .await
            .expect("bind");
        let base = format!("http://{}", server.http_addr().expect("http addr"));
        let tcp = server.tcp_addr().expect("tcp addr");
        let handle = server.handle();
        tokio::spawn(async move { server.run().await.expect("run") });
        Api {
            http: reqwest::Client::builder()
                .timeout(WAIT)
                .build()
                .expect("client"),
            base,
            tcp,
            handle,
            options,
            _files: files,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with a bearer (or none); returns status and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
        (status, value)
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_KEY), body).await
    }

    /// Creates an account and returns a fresh token for it.
    pub async fn user(&self, id: &str) -> String {
        let (s, _) = self
            .admin(
                "POST",
                "/v1/admin/users",
                Some(json!({ "user_id": id, "name": id })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, t) = self
            .admin("POST", &format!("/v1/admin/users/{id}/tokens"), None)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        t["token"].as_str().expect("token").to_owned()
    }

    pub async fn connect(&self, token: &str, device: &str) -> (Client, Events) {
        let options = ClientOptions {
            reconnect: false,
            ..ClientOptions::default()
        };
        let (c, e) = Client::connect(&self.tcp.to_string(), options)
            .await
            .expect("connect");
        c.login(token, device).await.expect("login");
        (c, e)
    }
}
