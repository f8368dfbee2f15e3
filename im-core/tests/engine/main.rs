//! The delivery contract, the authorization matrix and whole conversations,
//! run through the engine with no network. A tiny in-test transport keeps a
//! mailbox per connected device and routes pushes the way a server would.
//!
//! This file holds that transport (`World`) and the helpers the tests share;
//! the tests are in `contract.rs`, `authorization.rs` and `conversations.rs`.

mod authorization;
mod contract;
mod conversations;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use imkit_core::model::*;
use imkit_core::store::{Committed, ConversationStore, Direction, Stores, UnitOfWork};
use imkit_core::{Caller, Clock, Engine, EngineConfig, Error};
use imkit_proto::{Packet, pb};
use parking_lot::Mutex;

struct World {
    engine: Engine,
    clock: Clock,
    connected: Mutex<HashSet<(UserId, DeviceId)>>,
    mailboxes: Mutex<HashMap<(UserId, DeviceId), Vec<Packet>>>,
}

impl World {
    fn new() -> Arc<World> {
        Self::with_stores(Stores::memory())
    }

    fn with_stores(stores: Stores) -> Arc<World> {
        let clock = Clock::manual(1_700_000_000_000);
        let config = EngineConfig {
            clock: clock.clone(),
            ..EngineConfig::default()
        };
        Arc::new(World {
            engine: Engine::new(stores, config),
            clock,
            connected: Mutex::default(),
            mailboxes: Mutex::default(),
        })
    }

    async fn connect(&self, user: &str, device: &str) -> Caller {
        let caller = Caller::new(user, device);
        self.connected
            .lock()
            .insert((caller.user.clone(), caller.device.clone()));
        let login = self
            .engine
            .login(&caller.user, &caller.device)
            .await
            .expect("login");
        self.route(login.pushes).await;
        caller
    }

    async fn disconnect(&self, caller: &Caller) {
        self.connected
            .lock()
            .remove(&(caller.user.clone(), caller.device.clone()));
        self.engine
            .logout(&caller.user, &caller.device)
            .await
            .expect("logout");
    }

    async fn route(&self, pushes: Vec<imkit_core::Push>) {
        for push in pushes {
            for t in push.targets.iter() {
                let key = (t.user.clone(), t.device.clone());
                let online = self.connected.lock().contains(&key);
                if online {
                    self.mailboxes
                        .lock()
                        .entry(key)
                        .or_default()
                        .push(push.packet.clone());
                }
                // A device that is not connected gets nothing: its cursors
                // say what it lacks, and it catches up at login.
            }
        }
    }

    async fn call(&self, caller: &Caller, packet: impl Into<Packet>) -> Result<Packet, Error> {
        let outcome = self.engine.handle(caller, packet.into()).await?;
        self.route(outcome.pushes).await;
        Ok(outcome.reply)
    }

    fn take(&self, caller: &Caller) -> Vec<Packet> {
        self.mailboxes
            .lock()
            .remove(&(caller.user.clone(), caller.device.clone()))
            .unwrap_or_default()
    }

    fn take_messages(&self, caller: &Caller) -> Vec<pb::Message> {
        self.take(caller)
            .into_iter()
            .filter_map(|p| match p {
                Packet::MessagePush(m) => m.message,
                _ => None,
            })
            .collect()
    }
}

fn text(s: &str) -> Option<pb::Content> {
    Some(pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    })
}

fn to_user(cmid: &str, user: &str, body: &str) -> pb::SendRequest {
    pb::SendRequest {
        client_msg_id: cmid.into(),
        to: Some(pb::send_request::To::UserId(user.into())),
        content: text(body),
    }
}

fn to_group(cmid: &str, group: &str, body: &str) -> pb::SendRequest {
    pb::SendRequest {
        client_msg_id: cmid.into(),
        to: Some(pb::send_request::To::GroupId(group.into())),
        content: text(body),
    }
}

fn sent(p: Packet) -> pb::SendResponse {
    match p {
        Packet::SendResponse(r) => r,
        other => panic!("expected SendResponse, got {other:?}"),
    }
}

fn body(m: &pb::Message) -> &str {
    match m.content.as_ref().and_then(|c| c.body.as_ref()) {
        Some(pb::content::Body::Text(t)) => &t.text,
        _ => "",
    }
}

async fn receipt(w: &World, c: &Caller, conv: &str, kind: pb::ReceiptKind, seq: u64) -> u64 {
    match w
        .call(
            c,
            pb::ReceiptRequest {
                conversation_id: conv.into(),
                kind: kind as i32,
                seq,
            },
        )
        .await
        .expect("receipt")
    {
        Packet::ReceiptResponse(r) => r.seq,
        other => panic!("expected ReceiptResponse, got {other:?}"),
    }
}

async fn conv_list(w: &World, c: &Caller) -> pb::ConversationListResponse {
    match w
        .call(
            c,
            pb::ConversationListRequest {
                limit: 0,
                after: String::new(),
            },
        )
        .await
        .expect("list")
    {
        Packet::ConversationListResponse(r) => r,
        other => panic!("expected list, got {other:?}"),
    }
}

async fn create_group(w: &World, owner: &Caller, members: &[&str]) -> String {
    match w
        .call(
            owner,
            pb::GroupCreateRequest {
                name: "team".into(),
                avatar: String::new(),
                member_ids: members.iter().map(|s| s.to_string()).collect(),
            },
        )
        .await
        .expect("create")
    {
        Packet::GroupCreateResponse(r) => r.group.expect("group").group_id,
        other => panic!("expected GroupCreateResponse, got {other:?}"),
    }
}

async fn history(w: &World, c: &Caller, conv: &str) -> Result<Vec<pb::Message>, Error> {
    match w
        .call(
            c,
            pb::HistoryRequest {
                conversation_id: conv.into(),
                from_seq: 0,
                backward: false,
                limit: 500,
            },
        )
        .await?
    {
        Packet::HistoryResponse(r) => Ok(r.messages),
        other => panic!("expected HistoryResponse, got {other:?}"),
    }
}
