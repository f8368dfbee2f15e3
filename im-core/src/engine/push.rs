//! Push tokens and settings, and the push queue: offline recipients of a
//! stored message wait here, bounded in count and bytes, until a worker
//! turns them into [`PushNotice`]s (see [`crate::push`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use imkit_proto::pb;
use tokio::sync::{Semaphore, mpsc};

use super::{Caller, Engine, Inner};
use crate::model::*;
use crate::push::{Preview, PushNotice, PushOptions, preview_text};
use crate::store::PushToken;
use crate::{Error, Result};

/// Longest provider or platform name (A-Z a-z 0-9 _ - .).
const MAX_NAME_BYTES: usize = 32;

/// Offline recipients of one message.
struct Job {
    message: Arc<Message>,
    users: Vec<UserId>,
    bytes: usize,
}

/// The bounded hand-off from senders to the push worker.
pub(crate) struct PushQueue {
    jobs: mpsc::Sender<Job>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl PushQueue {
    /// Starts the worker (on the current runtime); it ends with the engine.
    fn start(engine: Weak<Inner>, options: &PushOptions) -> PushQueue {
        let (jobs, rx) = mpsc::channel(options.max_queued.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        tokio::spawn(work(
            engine,
            rx,
            bytes.clone(),
            options.concurrency.max(1),
            options.preview_chars,
        ));
        PushQueue {
            jobs,
            bytes,
            max_bytes: options.max_queued_bytes,
        }
    }

    /// Queues `users`' pushes for `message`, or drops them if the queue
    /// is full in count or bytes. Never waits.
    fn offer(&self, message: &Message, users: Vec<UserId>) {
        let bytes = prost::Message::encoded_len(&message.content)
            + users.iter().map(|u| u.as_str().len() + 16).sum::<usize>();
        let before = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.max_bytes {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            crate::telemetry::push_dropped(users.len());
            return;
        }
        let job = Job {
            message: Arc::new(message.clone()),
            users,
            bytes,
        };
        if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            self.jobs.try_send(job)
        {
            self.bytes.fetch_sub(job.bytes, Ordering::Relaxed);
            crate::telemetry::push_dropped(job.users.len());
        }
    }
}

async fn work(
    engine: Weak<Inner>,
    mut jobs: mpsc::Receiver<Job>,
    bytes: Arc<AtomicUsize>,
    concurrency: usize,
    preview_chars: usize,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    while let Some(job) = jobs.recv().await {
        bytes.fetch_sub(job.bytes, Ordering::Relaxed);
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let engine = Engine { inner };
        tokio::spawn(async move {
            if let Err(e) = engine
                .push_job(&job.message, &job.users, preview_chars)
                .await
            {
                tracing::warn!(error = %e, conversation = %job.message.conversation,
                    seq = job.message.seq, "offline pushes failed");
            }
            drop(permit);
        });
    }
}

impl Engine {
    /// Hands a stored message's offline recipients to the push worker.
    pub(super) fn queue_pushes(&self, message: &Message, users: Vec<UserId>) {
        if users.is_empty() || !is_user_content(&message.content) || !self.inner.notifier.sends() {
            return;
        }
        let queue = self
            .inner
            .push_queue
            .get_or_init(|| PushQueue::start(Arc::downgrade(&self.inner), &self.inner.config.push));
        queue.offer(message, users);
    }

    /// One message's notices: tokens, badges, previews; then the
    /// notifier, then the invalid tokens removed.
    async fn push_job(&self, message: &Message, users: &[UserId], chars: usize) -> Result<()> {
        let s = &self.inner.stores;
        let profiles = s.push.profiles(users).await?;
        if profiles.is_empty() {
            return Ok(());
        }
        let preview = preview_text(&message.content, chars).map(|text| Preview {
            sender: message.sender.clone(),
            text,
        });
        let mut notices = Vec::new();
        for profile in profiles {
            let Some(first) = profile.tokens.first() else {
                continue;
            };
            let badge = self
                .positions(&profile.user, &first.device)
                .await?
                .iter()
                .map(|p| p.unread)
                .sum();
            for t in profile.tokens {
                notices.push(PushNotice {
                    user: profile.user.clone(),
                    device: t.device,
                    token: t.token,
                    badge,
                    conversation: message.conversation.clone(),
                    message_id: message.id,
                    seq: message.seq,
                    preview: if profile.hide_content {
                        None
                    } else {
                        preview.clone()
                    },
                });
            }
        }
        crate::telemetry::push_sent(notices.len());
        let report = self.inner.notifier.notify(&notices).await;
        for i in report.invalid {
            let Some(n) = notices.get(i) else { continue };
            let removed = s
                .push
                .remove_token(&n.user, &n.device, Some(&n.token.token))
                .await?;
            if removed {
                tracing::info!(user = %n.user, device = %n.device, "push token reported invalid; removed");
            }
        }
        Ok(())
    }

    /// Registers (or, with an empty token, removes) the caller's device's
    /// push token.
    pub async fn push_token_set(
        &self,
        caller: &Caller,
        req: pb::PushTokenSetRequest,
    ) -> Result<pb::PushTokenSetResponse> {
        let push = &self.inner.stores.push;
        if req.token.is_empty() {
            push.remove_token(&caller.user, &caller.device, None)
                .await?;
            return Ok(pb::PushTokenSetResponse {});
        }
        let max = self.inner.config.push.max_token_bytes;
        if req.token.len() > max || !req.token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidArgument(format!(
                "a push token is at most {max} printable ASCII characters, without spaces"
            )));
        }
        let name = |s: &str| {
            s.len() <= MAX_NAME_BYTES
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if req.provider.is_empty() || !name(&req.provider) || !name(&req.platform) {
            return Err(Error::InvalidArgument(format!(
                "provider must be 1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 _ - ., platform at most {MAX_NAME_BYTES}"
            )));
        }
        push.set_token(
            &caller.user,
            &caller.device,
            PushToken {
                provider: req.provider,
                platform: req.platform,
                token: req.token,
            },
        )
        .await?;
        Ok(pb::PushTokenSetResponse {})
    }

    /// Sets the caller's notification settings.
    pub async fn push_settings(
        &self,
        caller: &Caller,
        req: pb::PushSettingsRequest,
    ) -> Result<pb::PushSettingsResponse> {
        let hide = match pb::PushPreview::try_from(req.preview) {
            Ok(pb::PushPreview::Unspecified) => return Ok(pb::PushSettingsResponse {}),
            Ok(pb::PushPreview::Show) => false,
            Ok(pb::PushPreview::Hide) => true,
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "unknown push preview {}",
                    req.preview
                )));
            }
        };
        self.inner
            .stores
            .push
            .set_hide_content(&caller.user, hide)
            .await?;
        Ok(pb::PushSettingsResponse {})
    }
}
