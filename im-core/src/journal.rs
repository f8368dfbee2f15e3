//! What the engine writes to the durable event journal
//! ([`crate::store::journal`]), and reading it back as [`Event`]s.
//!
//! Turn it on with [`crate::Engine::record_journal`], naming the
//! [`EventKinds`] to keep; the server's webhooks do this. A unit of work
//! then carries a small record of what it is (a message, a receipt), and
//! the backend stores it in the unit's own transaction. A message's record
//! does not copy the message: [`resolve`] reads it from the conversation
//! when the record is handed on (a message recalled in between is read as
//! recalled, its content gone, as everywhere else).

use std::collections::HashMap;

use imkit_proto::pb;
use serde_json::{Value, json};

use crate::hooks::Event;
use crate::model::{ConversationId, DeviceId, MessageId, UserId};
use crate::store::{JournalRecord, Stores};
use crate::{Error, Result};

/// A kind of [`Event`], as webhooks name and filter them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// [`Event::Message`].
    Message,
    /// [`Event::Receipt`].
    Receipt,
    /// [`Event::Recall`].
    Recall,
    /// [`Event::Group`].
    Group,
    /// [`Event::Contact`].
    Contact,
    /// [`Event::Login`].
    Login,
    /// [`Event::Logout`].
    Logout,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 7] = [
        EventKind::Message,
        EventKind::Receipt,
        EventKind::Recall,
        EventKind::Group,
        EventKind::Contact,
        EventKind::Login,
        EventKind::Logout,
    ];

    /// Its name: `message`, `receipt`, `recall`, `group`, `contact`,
    /// `login` or `logout`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Receipt => "receipt",
            EventKind::Recall => "recall",
            EventKind::Group => "group",
            EventKind::Contact => "contact",
            EventKind::Login => "login",
            EventKind::Logout => "logout",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of an event.
    pub fn of(event: &Event) -> EventKind {
        match event {
            Event::Message(_) => EventKind::Message,
            Event::Receipt { .. } => EventKind::Receipt,
            Event::Recall { .. } => EventKind::Recall,
            Event::Group { .. } => EventKind::Group,
            Event::Contact { .. } => EventKind::Contact,
            Event::Login { .. } => EventKind::Login,
            Event::Logout { .. } => EventKind::Logout,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`EventKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventKinds(u8);

impl EventKinds {
    /// Every kind.
    pub fn all() -> EventKinds {
        EventKind::ALL.into_iter().collect()
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind` added.
    pub fn with(self, kind: EventKind) -> EventKinds {
        EventKinds(self.0 | kind.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set named by a comma-separated list (`message,recall`; `all`
    /// for every kind).
    pub fn parse(list: &str) -> Result<EventKinds> {
        let mut kinds = EventKinds::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "all" {
                return Ok(EventKinds::all());
            }
            let kind = EventKind::from_name(name).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown event kind {name:?}; kinds are {}",
                    EventKind::ALL.map(EventKind::name).join(", ")
                ))
            })?;
            kinds = kinds.with(kind);
        }
        Ok(kinds)
    }
}

impl FromIterator<EventKind> for EventKinds {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> Self {
        iter.into_iter()
            .fold(EventKinds::default(), EventKinds::with)
    }
}

/// What a record says; the unit's seq completes it.
pub(crate) enum Recorded<'a> {
    /// The unit's appended message (a message, a recall or a group event).
    Appended,
    /// The unit moved the user's read or delivered cursor.
    Receipt {
        user: &'a UserId,
        kind: pb::ReceiptKind,
    },
    Contact {
        user: &'a UserId,
        from: &'a UserId,
        kind: pb::ContactEventKind,
    },
    Login {
        user: &'a UserId,
        device: &'a DeviceId,
    },
    Logout {
        user: &'a UserId,
        device: &'a DeviceId,
    },
}

impl Recorded<'_> {
    /// The record's payload, for an event at `at_ms`.
    pub(crate) fn encode(&self, at_ms: u64) -> Vec<u8> {
        let mut v = match self {
            Recorded::Appended => json!({"t": "appended"}),
            Recorded::Receipt { user, kind } => json!({
                "t": "receipt",
                "user": user.as_str(),
                "kind": *kind as i32,
            }),
            Recorded::Contact { user, from, kind } => json!({
                "t": "contact",
                "user": user.as_str(),
                "from": from.as_str(),
                "kind": *kind as i32,
            }),
            Recorded::Login { user, device } => json!({
                "t": "login",
                "user": user.as_str(),
                "device": device.as_str(),
            }),
            Recorded::Logout { user, device } => json!({
                "t": "logout",
                "user": user.as_str(),
                "device": device.as_str(),
            }),
        };
        v["ms"] = json!(at_ms);
        v.to_string().into_bytes()
    }
}

fn field<'v>(v: &'v Value, name: &str) -> Result<&'v str> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::store("journal", format!("a record lacks {name:?}")))
}

fn number(v: &Value, name: &str) -> Result<i32> {
    v.get(name)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| Error::store("journal", format!("a record lacks {name:?}")))
}

/// A journal record read back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Resolved {
    /// What happened.
    pub event: Event,
    /// When, in ms since the Unix epoch (a message's own timestamp).
    pub at_ms: u64,
}

fn parse(record: &JournalRecord) -> Result<Value> {
    serde_json::from_slice(&record.payload)
        .map_err(|e| Error::store("journal", format!("record {}: {e}", record.id)))
}

fn is_appended(v: &Value) -> bool {
    v.get("t").and_then(Value::as_str) == Some("appended")
}

/// A record read back as the event it reports. `None` if what it reports
/// is gone (a message store that forgot the message; never on durable
/// backends).
pub async fn resolve(stores: &Stores, record: &JournalRecord) -> Result<Option<Resolved>> {
    let v = parse(record)?;
    let message = if is_appended(&v) {
        let conv = ConversationId::new(record.key.as_str());
        match stores.conversations.get(&conv, record.seq).await? {
            Some(m) => Some(m),
            None => return Ok(None),
        }
    } else {
        None
    };
    build(record, &v, message).map(Some)
}

/// [`resolve`] for many records at once: the messages they report are
/// read with one range read per conversation, all at once, so a batch
/// costs one store round trip (and, on SQLite, one wait for durability)
/// rather than one per record. A record whose message is gone, or whose
/// conversation could not be read, is `None` (resolve it alone to retry).
pub async fn resolve_all(stores: &Stores, records: &[JournalRecord]) -> Vec<Option<Resolved>> {
    let parsed: Vec<Option<Value>> = records.iter().map(|r| parse(r).ok()).collect();
    // Per conversation: the seqs its appended records name.
    let mut spans: HashMap<&str, (u64, u64, usize)> = HashMap::new();
    for (r, v) in records.iter().zip(&parsed) {
        if v.as_ref().is_some_and(is_appended) && r.seq > 0 {
            let e = spans.entry(r.key.as_str()).or_insert((r.seq, r.seq, 0));
            e.0 = e.0.min(r.seq);
            e.1 = e.1.max(r.seq);
            e.2 += 1;
        }
    }
    let mut reads = tokio::task::JoinSet::new();
    for (key, (lo, hi, n)) in spans {
        let span = hi - lo + 1;
        // A sparse span (few records far apart) is not worth a range.
        if span > (n as u64).saturating_mul(4).max(64) {
            continue;
        }
        let (store, conv) = (stores.conversations.clone(), ConversationId::new(key));
        reads.spawn(async move {
            let limit = usize::try_from(span).unwrap_or(usize::MAX);
            store
                .range(&conv, lo - 1, crate::store::Direction::Forward, limit)
                .await
        });
    }
    let mut messages: HashMap<(ConversationId, u64), crate::model::Message> = HashMap::new();
    while let Some(read) = reads.join_next().await {
        if let Ok(Ok(found)) = read {
            for m in found {
                messages.insert((m.conversation.clone(), m.seq), m);
            }
        }
    }
    records
        .iter()
        .zip(parsed)
        .map(|(r, v)| {
            let v = v?;
            let message = if is_appended(&v) {
                Some(messages.remove(&(ConversationId::new(r.key.as_str()), r.seq))?)
            } else {
                None
            };
            build(r, &v, message).ok()
        })
        .collect()
}

/// The event of a parsed record, given the message it reports if any.
fn build(
    record: &JournalRecord,
    v: &Value,
    message: Option<crate::model::Message>,
) -> Result<Resolved> {
    let mut at_ms = v.get("ms").and_then(Value::as_u64).unwrap_or(0);
    let event = match field(v, "t")? {
        "appended" => {
            let m = message.ok_or_else(|| {
                Error::store("journal", format!("record {} lacks its message", record.id))
            })?;
            at_ms = m.timestamp_ms;
            match &m.content.body {
                Some(pb::content::Body::Recall(r)) => Event::Recall {
                    conversation: m.conversation.clone(),
                    message: MessageId::parse(&r.target_message_id)?,
                    by: m.sender.clone(),
                },
                Some(pb::content::Body::System(s)) if !m.conversation.is_direct() => Event::Group {
                    conversation: m.conversation.clone(),
                    kind: s.kind.clone(),
                    data: s.data.clone(),
                    by: m.sender.clone(),
                },
                _ => Event::Message(m),
            }
        }
        "receipt" => Event::Receipt {
            user: UserId::new(field(v, "user")?),
            conversation: ConversationId::new(record.key.as_str()),
            kind: pb::ReceiptKind::try_from(number(v, "kind")?)
                .unwrap_or(pb::ReceiptKind::Unspecified),
            seq: record.seq,
        },
        "contact" => Event::Contact {
            user: UserId::new(field(v, "user")?),
            from: UserId::new(field(v, "from")?),
            kind: pb::ContactEventKind::try_from(number(v, "kind")?)
                .unwrap_or(pb::ContactEventKind::Unspecified),
        },
        "login" => Event::Login {
            user: UserId::new(field(v, "user")?),
            device: DeviceId::new(field(v, "device")?),
        },
        "logout" => Event::Logout {
            user: UserId::new(field(v, "user")?),
            device: DeviceId::new(field(v, "device")?),
        },
        other => {
            return Err(Error::store(
                "journal",
                format!("record {} has unknown type {other:?}", record.id),
            ));
        }
    };
    Ok(Resolved { event, at_ms })
}
