//! Webhooks (feature `webhooks`): what happens on the server, posted as
//! signed JSON to the URLs you configure, and a before-send webhook that
//! lets a moderation service accept, reject or rewrite each send.
//!
//! **Delivery.** Events come from the durable journal
//! ([`imkit_core::store::journal`]): a message and its journal record are
//! committed together, so a crash or restart loses no event. The
//! dispatcher reads the journal in order, posts each event to every
//! endpoint that wants its kind, retries failures with exponential backoff
//! ([`WebhookOptions::first_retry`] doubling up to
//! [`WebhookOptions::max_retry_interval`]) and removes an event from the
//! journal only once every endpoint answered 2xx: delivery is at least
//! once, and receivers de-duplicate on the event's `id`. Events of one
//! conversation (or, for logins and contacts, one user) are posted one at
//! a time, in order, on one of [`WebhookOptions::lanes`] lanes; a failing
//! endpoint holds back the lane's later events, not other lanes. An event
//! still failing after [`WebhookOptions::give_up_after`] is dropped, logged
//! and counted (`imkit_webhook_events_total{result="dropped"}`).
//!
//! **Bounds.** At most [`WebhookOptions::max_in_flight`] events are read
//! and not yet removed; the dispatcher stops reading until some finish. A
//! moderation answer is read up to 64 KiB.
//!
//! **Signatures.** See [`sign`]: `Imkit-Signature: t=..,v1=..`,
//! HMAC-SHA256 over `"<t>.<body>"`. [`verify`] checks one.
//!
//! **Clusters.** Every node records; one node at a time reads and posts,
//! the holder of the journal's lease ([`WebhookOptions::lease_ttl`]).
//!
//! docs/webhooks.md describes the payloads (with a JSON schema each), the
//! headers and how to verify them.

mod client;
mod dispatch;
pub(crate) mod moderation;
mod payload;
pub mod sign;

use std::time::Duration;

use imkit_core::hooks::FailMode;
use imkit_core::journal::EventKinds;

pub(crate) use client::Poster;
pub(crate) use dispatch::Dispatcher;
pub use sign::{SignatureError, verify};

/// Where events are posted.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// The key its requests are signed with.
    pub secret: String,
    /// The kinds of event it gets (default: all).
    pub events: EventKinds,
}

impl Endpoint {
    /// An endpoint for every kind of event.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Endpoint {
        Endpoint {
            url: url.into(),
            secret: secret.into(),
            events: EventKinds::all(),
        }
    }

    /// Only these kinds of event.
    pub fn events(mut self, events: EventKinds) -> Endpoint {
        self.events = events;
        self
    }
}

/// The before-send webhook: a moderation service that decides each send.
#[derive(Debug, Clone)]
pub struct BeforeSendWebhook {
    /// The URL.
    pub url: String,
    /// The key its requests are signed with.
    pub secret: String,
    /// Longest it may take to answer (default 1 s).
    pub timeout: Duration,
    /// What a send does when it does not answer in time or answers
    /// nonsense (default [`FailMode::Open`]: the send goes through).
    pub on_failure: FailMode,
}

impl BeforeSendWebhook {
    /// A before-send webhook with the default timeout and fail mode.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> BeforeSendWebhook {
        BeforeSendWebhook {
            url: url.into(),
            secret: secret.into(),
            timeout: Duration::from_secs(1),
            on_failure: FailMode::Open,
        }
    }
}

/// Webhook settings. Every limit has a default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookOptions {
    /// Where events are posted.
    pub endpoints: Vec<Endpoint>,
    /// The moderation service, if any.
    pub before_send: Option<BeforeSendWebhook>,
    /// Longest one event request may take (default 10 s).
    pub request_timeout: Duration,
    /// Lanes events are posted on, each in order (default 8).
    pub lanes: usize,
    /// Most events read from the journal and not yet done (default 1,024).
    pub max_in_flight: usize,
    /// Wait before the first retry (default 1 s); it doubles per attempt.
    pub first_retry: Duration,
    /// Longest wait between retries (default 60 s).
    pub max_retry_interval: Duration,
    /// How long an event is retried before it is dropped (default 24 h).
    pub give_up_after: Duration,
    /// How often an idle dispatcher looks for new events (default 100 ms).
    pub poll_interval: Duration,
    /// How long a node's hold on the journal lasts unless renewed
    /// (default 15 s; renewed every third of it).
    pub lease_ttl: Duration,
    /// More CA certificates (PEM) to trust for `https://` endpoints.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            endpoints: Vec::new(),
            before_send: None,
            request_timeout: Duration::from_secs(10),
            lanes: 8,
            max_in_flight: 1_024,
            first_retry: Duration::from_secs(1),
            max_retry_interval: Duration::from_secs(60),
            give_up_after: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(15),
            extra_roots_pem: None,
        }
    }
}

impl WebhookOptions {
    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Sets the before-send webhook.
    pub fn before_send(mut self, webhook: BeforeSendWebhook) -> Self {
        self.before_send = Some(webhook);
        self
    }

    /// Sets the retry schedule: the first wait, the longest, and when to
    /// give up.
    pub fn retries(mut self, first: Duration, max_interval: Duration, give_up: Duration) -> Self {
        self.first_retry = first;
        self.max_retry_interval = max_interval;
        self.give_up_after = give_up;
        self
    }

    /// The kinds of event some endpoint wants: what the journal records.
    pub fn recorded(&self) -> EventKinds {
        self.endpoints.iter().fold(EventKinds::default(), |all, e| {
            imkit_core::journal::EventKind::ALL
                .into_iter()
                .filter(|k| e.events.contains(*k))
                .fold(all, EventKinds::with)
        })
    }

    /// Checks the settings.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for url in self
            .endpoints
            .iter()
            .map(|e| &e.url)
            .chain(self.before_send.iter().map(|b| &b.url))
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "webhook URL {url:?} must start with http:// or https://"
                ));
            }
        }
        if self
            .endpoints
            .iter()
            .map(|e| &e.secret)
            .chain(self.before_send.iter().map(|b| &b.secret))
            .any(String::is_empty)
        {
            return Err("every webhook needs a signing secret".into());
        }
        if self.lanes == 0 || self.max_in_flight == 0 {
            return Err("webhook lanes and max_in_flight must be at least 1".into());
        }
        Ok(())
    }
}
