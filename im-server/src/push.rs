//! A ready [`PushNotifier`] (feature `webhooks`): FCM- and APNs-shaped
//! HTTP requests to endpoints you configure.
//!
//! - **FCM** (`provider = "fcm"`): `POST {url}` with the body of FCM's
//!   HTTP v1 API, `{"message": {"token", "notification", "data", ...}}`,
//!   and `Authorization: Bearer {key}`. A 404, or an answer naming
//!   `UNREGISTERED`, marks the token invalid.
//! - **APNs** (`provider = "apns"`): `POST {url}/3/device/{token}` with
//!   `apns-topic`, `apns-push-type: alert`, `apns-priority: 10`, an
//!   optional `Authorization: Bearer {key}`, and the body
//!   `{"aps": {"alert", "badge", "sound"}, ...}`. A 410, or a 400 naming
//!   `BadDeviceToken` or `DeviceTokenNotForTopic`, marks it invalid.
//!
//! Requests are HTTP/1.1 (rustls for `https://`). FCM's endpoint takes
//! them as they are, with an OAuth access token as the key. Apple's
//! endpoint speaks only HTTP/2, so point `apns.url` at a gateway that
//! relays to it. Tokens of other providers are skipped, and logged at
//! debug level.
//!
//! A notification shows the sender as its title and the preview as its
//! body. For a user who hides content it says only "New message". Its data
//! always carries `conversation_id`, `message_id`, `seq` and `badge`, so the
//! app can fetch the message when it wakes.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use imkit_core::push::{PushNotice, PushNotifier, PushReport};
use serde_json::{Value, json};

use crate::webhooks::Poster;

/// The title of a notification whose user hides content.
const HIDDEN_TITLE: &str = "New message";

/// Where FCM-shaped requests go.
#[derive(Debug, Clone)]
pub struct FcmGateway {
    /// The send URL, e.g.
    /// `https://fcm.googleapis.com/v1/projects/{project}/messages:send`.
    pub url: String,
    /// Sent as `Authorization: Bearer {key}`, if set.
    pub key: Option<String>,
}

/// Where APNs-shaped requests go.
#[derive(Debug, Clone)]
pub struct ApnsGateway {
    /// The base URL; requests go to `{url}/3/device/{token}`.
    pub url: String,
    /// The app's bundle id, sent as `apns-topic`.
    pub topic: String,
    /// Sent as `Authorization: Bearer {key}`, if set.
    pub key: Option<String>,
}

/// Settings of [`HttpPushNotifier`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PushGateways {
    /// FCM, for tokens with provider `fcm`.
    pub fcm: Option<FcmGateway>,
    /// APNs, for tokens with provider `apns`.
    pub apns: Option<ApnsGateway>,
    /// Longest one request may take (default 10 s).
    pub request_timeout: Duration,
    /// Requests in flight at once, per batch of notices (default 16).
    pub concurrency: usize,
    /// More CA certificates (PEM) to trust for `https://` gateways.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for PushGateways {
    fn default() -> Self {
        PushGateways {
            fcm: None,
            apns: None,
            request_timeout: Duration::from_secs(10),
            concurrency: 16,
            extra_roots_pem: None,
        }
    }
}

impl PushGateways {
    /// Sends FCM tokens' notifications to `url`.
    pub fn fcm(mut self, url: impl Into<String>, key: Option<String>) -> Self {
        self.fcm = Some(FcmGateway {
            url: url.into(),
            key,
        });
        self
    }

    /// Sends APNs tokens' notifications to `url` for the app `topic`.
    pub fn apns(
        mut self,
        url: impl Into<String>,
        topic: impl Into<String>,
        key: Option<String>,
    ) -> Self {
        self.apns = Some(ApnsGateway {
            url: url.into(),
            topic: topic.into(),
            key,
        });
        self
    }
}

/// A [`PushNotifier`] that posts FCM- and APNs-shaped requests (see the
/// module docs).
pub struct HttpPushNotifier {
    gateways: PushGateways,
    poster: Poster,
}

impl std::fmt::Debug for HttpPushNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPushNotifier")
            .field("gateways", &self.gateways)
            .finish_non_exhaustive()
    }
}

/// What became of one notice.
enum Sent {
    Ok,
    Invalid,
    Failed(String),
    Skipped,
}

impl HttpPushNotifier {
    /// A notifier for these gateways.
    pub fn new(gateways: PushGateways) -> Result<HttpPushNotifier, crate::ServerError> {
        let poster = Poster::new(
            gateways.request_timeout,
            gateways.extra_roots_pem.as_deref(),
        )
        .map_err(crate::ServerError::Config)?;
        Ok(HttpPushNotifier { gateways, poster })
    }

    async fn send_one(&self, i: usize, n: &PushNotice) -> (usize, Sent) {
        (i, self.send(n).await)
    }

    async fn send(&self, n: &PushNotice) -> Sent {
        match n.token.provider.as_str() {
            "fcm" => match &self.gateways.fcm {
                Some(g) => self.fcm(g, n).await,
                None => Sent::Skipped,
            },
            "apns" => match &self.gateways.apns {
                Some(g) => self.apns(g, n).await,
                None => Sent::Skipped,
            },
            _ => Sent::Skipped,
        }
    }

    async fn fcm(&self, g: &FcmGateway, n: &PushNotice) -> Sent {
        let notification = match &n.preview {
            Some(p) => json!({ "title": p.sender.as_str(), "body": p.text }),
            None => json!({ "title": HIDDEN_TITLE }),
        };
        let body = json!({
            "message": {
                "token": n.token.token,
                "notification": notification,
                "data": data(n, true),
                "android": { "priority": "high" },
                "apns": { "payload": { "aps": { "badge": n.badge } } },
            }
        });
        let mut headers = Vec::new();
        if let Some(key) = &g.key {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        match self.post(&g.url, &headers, &body).await {
            Ok((status, _)) if (200..300).contains(&status) => Sent::Ok,
            Ok((404, _)) => Sent::Invalid,
            Ok((status, answer)) if answer.contains("UNREGISTERED") => {
                tracing::debug!(status, "fcm: token unregistered");
                Sent::Invalid
            }
            Ok((status, answer)) => Sent::Failed(format!("fcm answered {status}: {answer}")),
            Err(e) => Sent::Failed(e),
        }
    }

    async fn apns(&self, g: &ApnsGateway, n: &PushNotice) -> Sent {
        let alert = match &n.preview {
            Some(p) => json!({ "title": p.sender.as_str(), "body": p.text }),
            None => json!({ "title": HIDDEN_TITLE }),
        };
        let mut body = data(n, false);
        body["aps"] = json!({ "alert": alert, "badge": n.badge, "sound": "default" });
        let mut headers = vec![
            ("apns-topic", g.topic.clone()),
            ("apns-push-type", "alert".to_owned()),
            ("apns-priority", "10".to_owned()),
            (
                "apns-collapse-id",
                n.conversation.as_str().chars().take(64).collect(),
            ),
        ];
        if let Some(key) = &g.key {
            headers.push(("authorization", format!("Bearer {key}")));
        }
        let url = format!(
            "{}/3/device/{}",
            g.url.trim_end_matches('/'),
            percent_path(&n.token.token)
        );
        match self.post(&url, &headers, &body).await {
            Ok((status, _)) if (200..300).contains(&status) => Sent::Ok,
            Ok((410, _)) => Sent::Invalid,
            Ok((400, answer))
                if answer.contains("BadDeviceToken")
                    || answer.contains("DeviceTokenNotForTopic") =>
            {
                Sent::Invalid
            }
            Ok((status, answer)) => Sent::Failed(format!("apns answered {status}: {answer}")),
            Err(e) => Sent::Failed(e),
        }
    }

    async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
    ) -> Result<(u16, String), String> {
        let answer = self
            .poster
            .post(url, headers, Bytes::from(body.to_string()), true)
            .await?;
        Ok((
            answer.status,
            String::from_utf8_lossy(&answer.body).into_owned(),
        ))
    }
}

/// The data every notification carries (FCM wants strings).
fn data(n: &PushNotice, strings: bool) -> Value {
    if strings {
        json!({
            "conversation_id": n.conversation.as_str(),
            "message_id": n.message_id.to_string(),
            "seq": n.seq.to_string(),
            "badge": n.badge.to_string(),
        })
    } else {
        json!({
            "conversation_id": n.conversation.as_str(),
            "message_id": n.message_id.to_string(),
            "seq": n.seq,
        })
    }
}

/// A token made safe for a URL path (APNs tokens are hex; others may not
/// be).
fn percent_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[async_trait]
impl PushNotifier for HttpPushNotifier {
    async fn notify(&self, notices: &[PushNotice]) -> PushReport {
        let sends: Vec<_> = notices
            .iter()
            .enumerate()
            .map(|(i, n)| self.send_one(i, n))
            .collect();
        let sent: Vec<(usize, Sent)> = futures::stream::iter(sends)
            .buffer_unordered(self.gateways.concurrency.max(1))
            .collect()
            .await;
        let mut report = PushReport::default();
        for (i, s) in sent {
            match s {
                Sent::Ok => crate::metrics::push_request("ok"),
                Sent::Invalid => {
                    crate::metrics::push_request("invalid");
                    report.invalid.push(i);
                }
                Sent::Failed(why) => {
                    crate::metrics::push_request("failed");
                    let n = &notices[i];
                    tracing::warn!(user = %n.user, device = %n.device, why = %why, "a push failed");
                }
                Sent::Skipped => {
                    let n = &notices[i];
                    tracing::debug!(provider = %n.token.provider, "no gateway for this push provider");
                }
            }
        }
        report.invalid.sort_unstable();
        report
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_escaped_in_paths() {
        assert_eq!(super::percent_path("ab12"), "ab12");
        assert_eq!(super::percent_path("a/b c"), "a%2Fb%20c");
    }
}
