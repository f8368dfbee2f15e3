//! The before-send webhook: a moderation service decides each send over
//! HTTP, as an in-process hook would ([`imkit_core::hooks`]).
//!
//! The server posts `{"type": "before_send", "data": {...}}`, signed like
//! every webhook, and reads one of `{"action": "accept"}`,
//! `{"action": "reject", "reason": "..."}` or
//! `{"action": "rewrite", "content": {...}}` (content as the HTTP API
//! writes it). Anything else (a timeout, a non-2xx status, a body that is
//! none of these) is undecided, and the send goes as the hook options'
//! fail mode says.

use std::sync::Arc;

use async_trait::async_trait;
use imkit_core::blob::BlobStore;
use imkit_core::hooks::{Event, Hooks, PendingSend, Verdict};
use serde::Deserialize;

use super::{BeforeSendWebhook, Poster};
use crate::http::json::ContentIn;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Answer {
    Accept,
    Reject {
        #[serde(default)]
        reason: String,
    },
    Rewrite {
        content: ContentIn,
    },
}

/// Runs the before-send webhook as a [`Hooks`].
pub(crate) struct Moderation {
    pub(crate) config: BeforeSendWebhook,
    pub(crate) poster: Poster,
    pub(crate) blobs: Arc<dyn BlobStore>,
}

impl Moderation {
    async fn decide(&self, send: &PendingSend) -> Result<Verdict, String> {
        let body = super::payload::before_send(send).to_string();
        let answer = self
            .poster
            .post_signed(
                &self.config.url,
                &self.config.secret,
                "",
                body.into_bytes().into(),
                true,
            )
            .await?;
        let answer: Answer = serde_json::from_slice(&answer)
            .map_err(|e| format!("the moderation service answered {e}"))?;
        Ok(match answer {
            Answer::Accept => Verdict::Accept,
            Answer::Reject { reason } => Verdict::Reject(if reason.is_empty() {
                "refused by moderation".into()
            } else {
                reason
            }),
            Answer::Rewrite { content } => Verdict::Rewrite(
                content
                    .into_pb(self.blobs.as_ref())
                    .await
                    .map_err(|e| format!("the rewritten content is unusable: {}", e.message))?,
            ),
        })
    }
}

#[async_trait]
impl Hooks for Moderation {
    async fn before_send(&self, send: &PendingSend) -> Verdict {
        let verdict = self.decide(send).await.unwrap_or_else(Verdict::Undecided);
        crate::metrics::webhook_verdict(match &verdict {
            Verdict::Accept => "accept",
            Verdict::Reject(_) => "reject",
            Verdict::Rewrite(_) => "rewrite",
            _ => "undecided",
        });
        verdict
    }
}

/// Two hooks as one: `first` decides a send, then `second` decides what
/// `first` let through (with its rewrite); both observe every event.
pub(crate) struct Chain {
    pub(crate) first: Arc<dyn Hooks>,
    pub(crate) second: Arc<dyn Hooks>,
}

#[async_trait]
impl Hooks for Chain {
    async fn before_send(&self, send: &PendingSend) -> Verdict {
        match self.first.before_send(send).await {
            Verdict::Accept => self.second.before_send(send).await,
            Verdict::Rewrite(content) => {
                let mut rewritten = send.clone();
                rewritten.content = content.clone();
                match self.second.before_send(&rewritten).await {
                    Verdict::Accept => Verdict::Rewrite(content),
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn after(&self, event: &Event) {
        self.first.after(event).await;
        self.second.after(event).await;
    }
}
