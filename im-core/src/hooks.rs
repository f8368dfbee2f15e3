//! In-process hooks: an embedder's code that sees and steers what flows
//! through the engine. Implement [`Hooks`] and install it once with
//! [`crate::Engine::install_hooks`] (the server's `ServerBuilder::hooks`
//! does this).
//!
//! - **Before a send is stored**, [`Hooks::before_send`] may accept it,
//!   reject it (the sender gets error 3008 `REJECTED` with the hook's
//!   reason, and nothing is stored) or rewrite its content (the rewritten
//!   content is checked against the same limits, then stored and
//!   delivered). It runs in the sender's request, outside any store
//!   transaction, bounded by [`HookOptions::before_send_timeout`]; a hook
//!   that times out or panics is treated as [`HookOptions::on_failure`]
//!   says (fail open: the send goes through unchanged; fail closed: the
//!   sender gets a retryable 5003). Only that sender waits.
//! - **After a commit**, [`Hooks::after`] observes an [`Event`]: messages,
//!   receipts, recalls, group and contact events, logins and logouts. Events are handed to a bounded
//!   queue and run on [`HookOptions::event_lanes`] lanes keyed by
//!   conversation (or user), so events of one conversation arrive in
//!   order and a slow hook on one lane never stalls the others, nor any
//!   send. A call is cut off after [`HookOptions::event_timeout`]; a lane
//!   whose queue is full drops the event and logs it (hooks are
//!   observers; durable delivery to other systems is the webhooks' job).
//!
//! A resend of a message already stored runs `before_send` again, but the
//! stored message (and the content the first run chose) wins.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imkit_proto::pb;
use tokio::sync::mpsc;

use crate::model::{ConversationId, DeviceId, Message, MessageId, UserId};
use crate::{Error, Result};

/// A send about to be stored, as [`Hooks::before_send`] sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PendingSend {
    /// Who sends it ([`UserId::system`] for server-side notices).
    pub sender: UserId,
    /// From which device.
    pub device: DeviceId,
    /// Where it goes.
    pub conversation: ConversationId,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// What it carries, already checked against the content limits.
    pub content: pb::Content,
}

/// What [`Hooks::before_send`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Store and deliver it as it is.
    Accept,
    /// Store and deliver this content instead.
    Rewrite(pb::Content),
    /// Refuse it; the sender gets `REJECTED` (3008) with this reason.
    Reject(String),
    /// The hook could not decide (its moderation service is down, say):
    /// the send goes as [`HookOptions::on_failure`] says, like a hook that
    /// timed out.
    Undecided(String),
}

/// Something that happened, after its commit.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A message was stored (once; resends do not repeat it).
    Message(Message),
    /// A read or delivered cursor moved forward.
    Receipt {
        /// Whose cursor.
        user: UserId,
        /// The conversation.
        conversation: ConversationId,
        /// Read or delivered.
        kind: pb::ReceiptKind,
        /// The cursor's new position.
        seq: u64,
    },
    /// A message was recalled.
    Recall {
        /// The conversation.
        conversation: ConversationId,
        /// The recalled message.
        message: MessageId,
        /// Who recalled it.
        by: UserId,
    },
    /// A group changed (created, members added or removed, renamed,
    /// dismissed, ...); the same event is stored in the group's
    /// conversation as a system message.
    Group {
        /// The group's conversation.
        conversation: ConversationId,
        /// What happened (`created`, `members_added`, ...; docs/protocol.md).
        kind: String,
        /// Its details, as JSON.
        data: String,
        /// Who did it.
        by: UserId,
    },
    /// A friend request, acceptance or removal.
    Contact {
        /// Whom it concerns.
        user: UserId,
        /// Who did it.
        from: UserId,
        /// Request, accepted or removed.
        kind: pb::ContactEventKind,
    },
    /// A device logged in on this node.
    Login {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// A device went offline on this node.
    Logout {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
}

impl Event {
    /// What orders events: their conversation, or for logins their user.
    fn lane_key(&self) -> &str {
        match self {
            Event::Message(m) => m.conversation.as_str(),
            Event::Receipt { conversation, .. }
            | Event::Recall { conversation, .. }
            | Event::Group { conversation, .. } => conversation.as_str(),
            Event::Contact { user, .. } => user.as_str(),
            Event::Login { user, .. } | Event::Logout { user, .. } => user.as_str(),
        }
    }
}

/// An embedder's hooks. Both methods have do-nothing defaults.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Decides a send before it is stored (see the module docs).
    async fn before_send(&self, send: &PendingSend) -> Verdict {
        let _ = send;
        Verdict::Accept
    }

    /// Observes an event after its commit (see the module docs).
    async fn after(&self, event: &Event) {
        let _ = event;
    }
}

/// What a send does when its hook fails (times out or panics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// The send goes through as it was (the default: chat keeps working
    /// while a moderation service is down).
    Open,
    /// The send fails with a retryable error (5003); nothing is stored.
    Closed,
}

/// Bounds on hooks. Every field has a default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HookOptions {
    /// Longest a [`Hooks::before_send`] call may take (default 1 s).
    pub before_send_timeout: Duration,
    /// What a send does when its hook fails (default [`FailMode::Open`]).
    pub on_failure: FailMode,
    /// Longest a [`Hooks::after`] call may take (default 5 s).
    pub event_timeout: Duration,
    /// Lanes events run on, each in order (default 8).
    pub event_lanes: usize,
    /// Events waiting per lane before more are dropped (default 4,096).
    pub event_queue: usize,
}

impl Default for HookOptions {
    fn default() -> Self {
        HookOptions {
            before_send_timeout: Duration::from_secs(1),
            on_failure: FailMode::Open,
            event_timeout: Duration::from_secs(5),
            event_lanes: 8,
            event_queue: 4_096,
        }
    }
}

impl HookOptions {
    /// Sets what a send does when its hook fails.
    pub fn on_failure(mut self, mode: FailMode) -> Self {
        self.on_failure = mode;
        self
    }

    /// Sets the before-send timeout.
    pub fn before_send_timeout(mut self, timeout: Duration) -> Self {
        self.before_send_timeout = timeout;
        self
    }
}

/// Installed hooks and their event lanes.
pub(crate) struct HookRunner {
    hooks: Arc<dyn Hooks>,
    options: HookOptions,
    lanes: Vec<mpsc::Sender<Event>>,
    hasher: foldhash::fast::FixedState,
}

impl HookRunner {
    /// Starts the event lanes (on the current tokio runtime).
    pub(crate) fn start(hooks: Arc<dyn Hooks>, options: HookOptions) -> HookRunner {
        let lanes = (0..options.event_lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(options.event_queue.max(1));
                tokio::spawn(run_lane(hooks.clone(), rx, options.event_timeout));
                tx
            })
            .collect();
        HookRunner {
            hooks,
            options,
            lanes,
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    /// Runs the before-send hook: `Ok(Some(content))` to store instead,
    /// `Ok(None)` to store as is, or the rejection.
    pub(crate) async fn before_send(&self, pending: PendingSend) -> Result<Option<pb::Content>> {
        let hooks = self.hooks.clone();
        // A task of its own, so a panic is contained and a timeout
        // abandons it cleanly.
        let task = tokio::spawn(async move { hooks.before_send(&pending).await });
        let abort = task.abort_handle();
        let failed = match tokio::time::timeout(self.options.before_send_timeout, task).await {
            Ok(Ok(Verdict::Accept)) => return Ok(None),
            Ok(Ok(Verdict::Rewrite(content))) => return Ok(Some(content)),
            Ok(Ok(Verdict::Reject(reason))) => return Err(Error::Rejected(reason)),
            Ok(Ok(Verdict::Undecided(why))) => format!("the send hook could not decide: {why}"),
            Ok(Err(e)) => format!("the send hook failed: {e}"),
            Err(_) => {
                abort.abort();
                format!(
                    "the send hook did not answer within {:?}",
                    self.options.before_send_timeout
                )
            }
        };
        tracing::warn!(why = %failed, mode = ?self.options.on_failure, "send hook failure");
        match self.options.on_failure {
            FailMode::Open => Ok(None),
            FailMode::Closed => Err(Error::Unavailable(failed)),
        }
    }

    /// Queues an event on its lane without waiting; a full lane drops it.
    pub(crate) fn emit(&self, event: Event) {
        use std::hash::BuildHasher;
        let lane = (self.hasher.hash_one(event.lane_key()) as usize) % self.lanes.len();
        if let Err(mpsc::error::TrySendError::Full(e)) = self.lanes[lane].try_send(event) {
            tracing::warn!(lane, event = ?std::mem::discriminant(&e), "hook event queue full; event dropped");
        }
    }
}

async fn run_lane(hooks: Arc<dyn Hooks>, mut events: mpsc::Receiver<Event>, timeout: Duration) {
    while let Some(event) = events.recv().await {
        let hooks = hooks.clone();
        let task = tokio::spawn(async move { hooks.after(&event).await });
        let abort = task.abort_handle();
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "an event hook failed"),
            Err(_) => {
                abort.abort();
                tracing::warn!(?timeout, "an event hook timed out");
            }
        }
    }
}
