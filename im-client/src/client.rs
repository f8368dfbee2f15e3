//! The [`Client`] handle: the application's calls, each a command to the
//! connection actor ([`crate::actor`]) that owns the connection.

use imkit_proto::{Packet, pb};
use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::Actor;
use crate::command::{Command, ConnectionState, Reply, unexpected};
use crate::transport::{self, ServerAddr};
use crate::{ClientError, ClientOptions, Event};

/// Who a message or typing signal is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A user (1:1).
    User(String),
    /// A group.
    Group(String),
}

impl Peer {
    /// A user.
    pub fn user(id: impl Into<String>) -> Peer {
        Peer::User(id.into())
    }

    /// A group.
    pub fn group(id: impl Into<String>) -> Peer {
        Peer::Group(id.into())
    }
}

/// A handle to a connection. Cheap to clone; the connection closes when
/// the last handle is dropped or [`Client::close`] is called.
#[derive(Clone, Debug)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
}

/// The stream of [`Event`]s from the server.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures::Stream for Events {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Client {
    /// Connects to a server (`host:port`, `tcp://host:port` or
    /// `ws://host:port/`). Log in next with [`Client::login`].
    pub async fn connect(
        addr: &str,
        options: ClientOptions,
    ) -> Result<(Client, Events), ClientError> {
        let endpoint = transport::Endpoint::new(ServerAddr::parse(addr)?, &options)?;
        let (reader, writer) = transport::connect(&endpoint).await?;
        let (tx, rx) = mpsc::channel(256);
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connected);
        let actor = Actor::new(endpoint, options, reader, writer, events_tx, state_tx);
        tokio::spawn(actor.run(rx));
        Ok((
            Client {
                tx,
                state: state_rx,
            },
            Events { rx: events_rx },
        ))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Logs in. After a reconnect the client logs in again by itself with
    /// the same token and device.
    pub async fn login(&self, token: &str, device: &str) -> Result<pb::LoginResponse, ClientError> {
        self.login_as(token, device, pb::Platform::Unspecified)
            .await
    }

    /// Logs in, naming the platform.
    pub async fn login_as(
        &self,
        token: &str,
        device: &str,
        platform: pb::Platform,
    ) -> Result<pb::LoginResponse, ClientError> {
        let (token, device) = (token.to_owned(), device.to_owned());
        self.call(|reply| Command::Login {
            token,
            device,
            platform,
            reply,
        })
        .await
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// A receiver that changes with the connection state.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Sends any request packet and returns the server's answer (an error
    /// answer becomes [`ClientError::Server`]).
    pub async fn request(&self, packet: impl Into<Packet>) -> Result<Packet, ClientError> {
        let packet = packet.into();
        self.call(|reply| Command::Request { packet, reply }).await
    }

    /// Sends a message and resolves when it is stored (SENT). The send
    /// survives reconnects: it stays in the outbox and is resent with the
    /// same client message id until the server acknowledges it.
    pub async fn send(
        &self,
        to: Peer,
        content: pb::Content,
    ) -> Result<pb::SendResponse, ClientError> {
        self.send_with_id(to, content, uuid::Uuid::now_v7().to_string())
            .await
    }

    /// [`Client::send`] with a client message id of your choosing (it must
    /// be unique per sender; a repeat returns the original acknowledgement).
    pub async fn send_with_id(
        &self,
        to: Peer,
        content: pb::Content,
        client_msg_id: String,
    ) -> Result<pb::SendResponse, ClientError> {
        use pb::send_request::To;
        let to = match to {
            Peer::User(u) => To::UserId(u),
            Peer::Group(g) => To::GroupId(g),
        };
        let req = pb::SendRequest {
            client_msg_id,
            to: Some(to),
            content: Some(content),
        };
        self.call(|reply| Command::Send { req, reply }).await
    }

    /// Sends text (`send(to, Content::text(text))`).
    pub async fn send_text(
        &self,
        to: Peer,
        text: impl Into<String>,
    ) -> Result<pb::SendResponse, ClientError> {
        self.send(to, pb::Content::text(text)).await
    }

    /// Sends a file message (metadata; the bytes live at a URL or blob id).
    pub async fn send_file(
        &self,
        to: Peer,
        file: pb::File,
    ) -> Result<pb::SendResponse, ClientError> {
        self.send(to, pb::Content::file(file)).await
    }

    /// Sends a message to a group.
    pub async fn send_to_group(
        &self,
        group: &str,
        text: impl Into<String>,
    ) -> Result<pb::SendResponse, ClientError> {
        self.send_text(Peer::group(group), text).await
    }

    /// Marks a conversation read up to `seq`; returns the read cursor.
    pub async fn mark_read(&self, conversation: &str, seq: u64) -> Result<u64, ClientError> {
        let req = pb::ReceiptRequest {
            conversation_id: conversation.to_owned(),
            kind: pb::ReceiptKind::Read as i32,
            seq,
        };
        match self.request(req).await? {
            Packet::ReceiptResponse(r) => Ok(r.seq),
            other => Err(unexpected(&other)),
        }
    }

    /// A page of history: older than `from_seq` when `backward` (0 = the
    /// newest), newer otherwise.
    pub async fn history(
        &self,
        conversation: &str,
        from_seq: u64,
        backward: bool,
        limit: u32,
    ) -> Result<pb::HistoryResponse, ClientError> {
        let req = pb::HistoryRequest {
            conversation_id: conversation.to_owned(),
            from_seq,
            backward,
            limit,
        };
        match self.request(req).await? {
            Packet::HistoryResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// The whole conversation list with unread counts, newest first (every
    /// page; see [`Client::conversations_page`]).
    pub async fn conversations(&self) -> Result<pb::ConversationListResponse, ClientError> {
        let mut all = self.conversations_page(0, "").await?;
        while !all.next.is_empty() {
            let page = self.conversations_page(0, &all.next).await?;
            all.conversations.extend(page.conversations);
            all.next = page.next;
        }
        Ok(all)
    }

    /// One page of the conversation list: at most `limit` (0: as many as
    /// fit in a reply) after `after`, the previous page's `next` ("" for
    /// the first page).
    pub async fn conversations_page(
        &self,
        limit: u32,
        after: &str,
    ) -> Result<pb::ConversationListResponse, ClientError> {
        let req = pb::ConversationListRequest {
            limit,
            after: after.to_owned(),
        };
        match self.request(req).await? {
            Packet::ConversationListResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Recalls a message; returns the recall event.
    pub async fn recall(
        &self,
        conversation: &str,
        message_id: &str,
    ) -> Result<pb::Message, ClientError> {
        let req = pb::RecallRequest {
            conversation_id: conversation.to_owned(),
            message_id: message_id.to_owned(),
        };
        match self.request(req).await? {
            Packet::RecallResponse(pb::RecallResponse { event: Some(e) }) => Ok(e),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells the peer or group that you are (or stopped) typing.
    pub async fn typing(&self, to: Peer, active: bool) -> Result<(), ClientError> {
        use pb::typing::To;
        let to = match to {
            Peer::User(u) => To::ToUserId(u),
            Peer::Group(g) => To::ToGroupId(g),
        };
        let packet = Packet::Typing(pb::Typing {
            to: Some(to),
            active,
            ..Default::default()
        });
        self.tx
            .send(Command::Fire { packet })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends an application signal (call invitations, live reactions,
    /// shared cursors: data whose worth is now) to the peer or group. The
    /// server relays it to their connected devices and stores nothing; it
    /// does not answer, and a device that is offline never gets it. The
    /// receivers see [`crate::Event::Signal`].
    pub async fn signal(
        &self,
        to: Peer,
        kind: impl Into<String>,
        data: impl Into<bytes::Bytes>,
    ) -> Result<(), ClientError> {
        use pb::signal::To;
        let to = match to {
            Peer::User(u) => To::ToUserId(u),
            Peer::Group(g) => To::ToGroupId(g),
        };
        let packet = Packet::Signal(pb::Signal {
            to: Some(to),
            kind: kind.into(),
            data: data.into(),
            ..Default::default()
        });
        self.tx
            .send(Command::Fire { packet })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// How many members have read each message of a group conversation.
    pub async fn read_counts(
        &self,
        conversation: &str,
        seqs: Vec<u64>,
    ) -> Result<pb::ReadCountResponse, ClientError> {
        let req = pb::ReadCountRequest {
            conversation_id: conversation.to_owned(),
            seqs,
        };
        match self.request(req).await? {
            Packet::ReadCountResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a group; returns its profile.
    pub async fn create_group(
        &self,
        name: &str,
        members: &[&str],
    ) -> Result<pb::GroupInfo, ClientError> {
        let req = pb::GroupCreateRequest {
            name: name.to_owned(),
            avatar: String::new(),
            member_ids: members.iter().map(|m| m.to_string()).collect(),
        };
        match self.request(req).await? {
            Packet::GroupCreateResponse(pb::GroupCreateResponse { group: Some(g) }) => Ok(g),
            other => Err(unexpected(&other)),
        }
    }

    /// The caller's groups (every page).
    pub async fn groups(&self) -> Result<Vec<pb::GroupInfo>, ClientError> {
        let mut groups = Vec::new();
        let mut after = String::new();
        loop {
            let req = pb::GroupListRequest { after };
            match self.request(req).await? {
                Packet::GroupListResponse(r) => {
                    groups.extend(r.groups);
                    if r.next.is_empty() {
                        return Ok(groups);
                    }
                    after = r.next;
                }
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// A group's profile and all its members (every page; see
    /// [`Client::group_members_page`]).
    pub async fn group_members(
        &self,
        group: &str,
    ) -> Result<pb::GroupMembersResponse, ClientError> {
        let mut all = self.group_members_page(group, "").await?;
        while !all.next.is_empty() {
            let page = self.group_members_page(group, &all.next).await?;
            all.members.extend(page.members);
            all.next = page.next;
        }
        Ok(all)
    }

    /// One page of a group's members, after `after` (the previous page's
    /// `next`; "" for the first page).
    pub async fn group_members_page(
        &self,
        group: &str,
        after: &str,
    ) -> Result<pb::GroupMembersResponse, ClientError> {
        let req = pb::GroupMembersRequest {
            group_id: group.to_owned(),
            after: after.to_owned(),
        };
        match self.request(req).await? {
            Packet::GroupMembersResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Adds members to a group; returns those added.
    pub async fn add_members(
        &self,
        group: &str,
        users: &[&str],
    ) -> Result<Vec<String>, ClientError> {
        let req = pb::GroupAddMembersRequest {
            group_id: group.to_owned(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        };
        match self.request(req).await? {
            Packet::GroupAddMembersResponse(r) => Ok(r.added),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes members from a group (or leaves it); returns those removed.
    pub async fn remove_members(
        &self,
        group: &str,
        users: &[&str],
    ) -> Result<Vec<String>, ClientError> {
        let req = pb::GroupRemoveMembersRequest {
            group_id: group.to_owned(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        };
        match self.request(req).await? {
            Packet::GroupRemoveMembersResponse(r) => Ok(r.removed),
            other => Err(unexpected(&other)),
        }
    }

    /// Dismisses a group.
    pub async fn dismiss_group(&self, group: &str) -> Result<(), ClientError> {
        self.request(pb::GroupDismissRequest {
            group_id: group.to_owned(),
        })
        .await
        .map(drop)
    }

    /// The caller's friends, requests and block list.
    pub async fn friends(&self) -> Result<pb::FriendListResponse, ClientError> {
        match self.request(pb::FriendListRequest {}).await? {
            Packet::FriendListResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a friend request; true if you are now friends.
    pub async fn add_friend(&self, user: &str, message: &str) -> Result<bool, ClientError> {
        let req = pb::FriendAddRequest {
            user_id: user.to_owned(),
            message: message.to_owned(),
        };
        match self.request(req).await? {
            Packet::FriendAddResponse(r) => Ok(r.accepted),
            other => Err(unexpected(&other)),
        }
    }

    /// Accepts a friend request.
    pub async fn accept_friend(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::FriendAcceptRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Removes a friend or a pending request.
    pub async fn remove_friend(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::FriendRemoveRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Blocks a user.
    pub async fn block(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::BlockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Unblocks a user.
    pub async fn unblock(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::UnblockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Registers this device for push notifications with the provider's
    /// token (`provider`: `apns`, `fcm`, or a name the server's notifier
    /// knows; `platform`: `ios`, `android`, ...). The server notifies the
    /// user while none of their devices is connected.
    pub async fn set_push_token(
        &self,
        provider: &str,
        platform: &str,
        token: &str,
    ) -> Result<(), ClientError> {
        self.request(pb::PushTokenSetRequest {
            provider: provider.to_owned(),
            platform: platform.to_owned(),
            token: token.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Stops push notifications to this device.
    pub async fn remove_push_token(&self) -> Result<(), ClientError> {
        self.request(pb::PushTokenSetRequest::default())
            .await
            .map(drop)
    }

    /// Whether notifications to this user show the sender and content
    /// (`false`) or only that a message arrived (`true`).
    pub async fn hide_push_content(&self, hide: bool) -> Result<(), ClientError> {
        let preview = if hide {
            pb::PushPreview::Hide
        } else {
            pb::PushPreview::Show
        };
        self.request(pb::PushSettingsRequest {
            preview: preview as i32,
        })
        .await
        .map(drop)
    }

    /// Tells the client the highest seq you already hold for a
    /// conversation (from your own storage), so it fetches only what is
    /// newer and drops what you have.
    pub async fn set_cursor(&self, conversation: &str, seq: u64) -> Result<(), ClientError> {
        let cmd = Command::SetCursor {
            conversation: conversation.to_owned(),
            seq,
        };
        self.tx.send(cmd).await.map_err(|_| ClientError::Closed)
    }

    /// Logs out and closes the connection.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let r = self.request(pb::LogoutRequest {}).await.map(drop);
        self.close().await;
        r
    }

    /// Closes the connection without logging out.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}
