//! The HTTP client webhooks post with: HTTP/1.1 on hyper, over rustls
//! (ring; the platform's roots plus any configured) for `https://`,
//! keep-alive connections pooled per host, a deadline per request, and
//! answers read up to a bound.
//!
//! Not reqwest: its rustls feature either builds aws-lc or, without a
//! provider, makes every other `reqwest::Client` in the embedder's
//! process panic unless one is installed globally. This client sets its
//! provider on its own configuration and touches nothing global.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use super::sign;

/// Most bytes of an answer read (a moderation verdict; event receivers'
/// answers are not read).
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Idle connections kept per host.
const IDLE_PER_HOST: usize = 16;

type Sender = SendRequest<Full<Bytes>>;

/// An HTTP answer.
pub(crate) struct Answer {
    /// Its status.
    pub(crate) status: u16,
    /// Its body, if it was kept.
    pub(crate) body: Vec<u8>,
}

/// Posts JSON bodies (signed, for webhooks).
#[derive(Clone)]
pub(crate) struct Poster {
    inner: Arc<Inner>,
}

struct Inner {
    timeout: Duration,
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<HashMap<String, Vec<Sender>>>,
}

/// Where a URL points.
struct Target {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("URL {url:?} is not http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("URL {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target {
            https,
            host,
            port,
            authority,
            path,
        })
    }

    fn pool_key(&self) -> String {
        format!(
            "{}://{}:{}",
            if self.https { "https" } else { "http" },
            self.host,
            self.port
        )
    }
}

impl Poster {
    /// A client whose requests time out after `timeout`, trusting the
    /// platform's roots and `extra_roots_pem`.
    pub(crate) fn new(timeout: Duration, extra_roots_pem: Option<&[u8]>) -> Result<Poster, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A platform certificate rustls cannot use is skipped.
            let _ = roots.add(cert);
        }
        if let Some(pem) = extra_roots_pem {
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("webhook CA file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("webhook CA file: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("webhook TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Poster {
            inner: Arc::new(Inner {
                timeout,
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                idle: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Posts a webhook: `body` signed with `secret` (and the event's id, if
    /// any). The answer's body on a 2xx status (read only if
    /// `keep_answer`), otherwise why not.
    pub(crate) async fn post_signed(
        &self,
        url: &str,
        secret: &str,
        event_id: &str,
        body: Bytes,
        keep_answer: bool,
    ) -> Result<Vec<u8>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut headers = vec![(
            sign::SIGNATURE_HEADER,
            sign::sign(secret.as_bytes(), now, &body),
        )];
        if !event_id.is_empty() {
            headers.push(("imkit-event-id", event_id.to_owned()));
        }
        let answer = self.post(url, &headers, body, keep_answer).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer.body)
        } else {
            Err(format!("answered HTTP {}", answer.status))
        }
    }

    /// Posts JSON `body` to `url` with `headers`; the answer (its body
    /// kept only if `keep_answer`, and up to [`MAX_ANSWER_BYTES`]), or why
    /// there was none. The whole exchange has the client's timeout.
    pub(crate) async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        keep_answer: bool,
    ) -> Result<Answer, String> {
        let target = Target::parse(url)?;
        let timeout = self.inner.timeout;
        match tokio::time::timeout(timeout, self.exchange(&target, headers, body, keep_answer))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    async fn exchange(
        &self,
        target: &Target,
        headers: &[(&str, String)],
        body: Bytes,
        keep_answer: bool,
    ) -> Result<Answer, String> {
        let request = || {
            let mut r = Request::post(target.path.as_str())
                .header(hyper::header::HOST, target.authority.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(
                    hyper::header::USER_AGENT,
                    concat!("imkit/", env!("CARGO_PKG_VERSION")),
                );
            for (name, value) in headers {
                r = r.header(*name, value.as_str());
            }
            r.body(Full::new(body.clone()))
                .map_err(|e| format!("request: {e}"))
        };
        let key = target.pool_key();
        // A pooled connection the host has since closed fails before any
        // answer: try once more on a new one.
        let (sender, answer) = match self.idle(&key) {
            Some(mut sender) => match send(&mut sender, request()?).await {
                Ok(a) => (sender, a),
                Err(_) => {
                    let mut sender = self.connect(target).await?;
                    let a = send(&mut sender, request()?).await?;
                    (sender, a)
                }
            },
            None => {
                let mut sender = self.connect(target).await?;
                let a = send(&mut sender, request()?).await?;
                (sender, a)
            }
        };
        let status = answer.status().as_u16();
        let mut body = answer.into_body();
        let mut read = Vec::new();
        // Read the answer to its end (so the connection can be reused),
        // keeping at most the bound.
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the answer: {e}"))?;
            if let Some(chunk) = frame.data_ref() {
                if read.len() + chunk.len() > MAX_ANSWER_BYTES {
                    if keep_answer {
                        return Err(format!("the answer is over {MAX_ANSWER_BYTES} bytes"));
                    }
                    // Not worth reading on: drop the connection.
                    return Ok(Answer {
                        status,
                        body: Vec::new(),
                    });
                }
                if keep_answer {
                    read.extend_from_slice(chunk);
                }
            }
        }
        self.keep(key, sender);
        Ok(Answer { status, body: read })
    }

    /// An idle connection to `key` that is still open.
    fn idle(&self, key: &str) -> Option<Sender> {
        let mut idle = self.inner.idle.lock();
        let list = idle.get_mut(key)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn keep(&self, key: String, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock();
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_HOST {
            list.push(sender);
        }
    }

    async fn connect(&self, target: &Target) -> Result<Sender, String> {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connect to {}:{}: {e}", target.host, target.port))?;
        let _ = tcp.set_nodelay(true);
        if target.https {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("TLS name {:?}: {e}", target.host))?;
            let tls = self
                .inner
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", target.host))?;
            handshake(TokioIo::new(tls)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }
}

async fn send(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    sender.ready().await.map_err(|e| format!("{e}"))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("{e}"))
}

async fn handshake<T>(io: T) -> Result<Sender, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "a webhook connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn urls_are_taken_apart() {
        let t = Target::parse("https://hooks.example.com/im/events?x=1").expect("parse");
        assert!(t.https);
        assert_eq!((t.host.as_str(), t.port), ("hooks.example.com", 443));
        assert_eq!(t.path, "/im/events?x=1");
        let t = Target::parse("http://127.0.0.1:8080").expect("parse");
        assert_eq!(
            (t.port, t.path.as_str(), t.authority.as_str()),
            (8080, "/", "127.0.0.1:8080")
        );
        let t = Target::parse("http://[::1]:9/h").expect("parse");
        assert_eq!(t.host, "::1");
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("/relative").is_err());
    }
}
