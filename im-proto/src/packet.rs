//! Typed packets: one enum variant per packet type id.
//!
//! A [`Packet`] is the payload of a frame decoded according to the header's
//! type id. [`Packet::to_frame`] and [`Packet::from_frame`] convert between
//! the two, checking version and flags on the way in.

use bytes::{Bytes, BytesMut};
use prost::Message as _;

use crate::frame::{Flags, Frame, Header, PROTOCOL_VERSION, PacketId};
use crate::{ProtoError, pb};

/// Which side of a connection may send a packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Only clients send it (requests).
    Client,
    /// Only servers send it (responses and pushes).
    Server,
    /// Either side (typing and application signals).
    Both,
}

macro_rules! packets {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $id:literal, $ty:ty, response: $resp:literal, sender: $sender:ident;
    )*) => {
        /// Every packet type id of the protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum PacketKind {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl PacketKind {
            /// Every packet kind, in type-id order.
            pub const ALL: &'static [PacketKind] = &[ $( PacketKind::$variant, )* ];

            /// The kind for a type id, if it is one.
            pub fn from_u16(id: u16) -> Option<PacketKind> {
                match id {
                    $( $id => Some(PacketKind::$variant), )*
                    _ => None,
                }
            }

            /// The type id on the wire.
            pub const fn id(self) -> u16 {
                self as u16
            }

            /// The kind of an encoded frame (length prefix first), read from
            /// its header without decoding it; `None` if the frame is too
            /// short or its type id is not one of the protocol's.
            pub fn of_frame(frame: &[u8]) -> Option<PacketKind> {
                let id = frame.get(4..6)?;
                PacketKind::from_u16(u16::from_be_bytes([id[0], id[1]]))
            }

            /// Whether frames of this kind carry the response flag.
            pub const fn is_response(self) -> bool {
                match self {
                    $( PacketKind::$variant => $resp, )*
                }
            }

            /// Which side sends this kind.
            pub const fn sender(self) -> Sender {
                match self {
                    $( PacketKind::$variant => Sender::$sender, )*
                }
            }

            /// The protobuf message name of this kind's payload.
            pub fn message_name(self) -> &'static str {
                match self {
                    $( PacketKind::$variant => stringify!($ty), )*
                }
            }
        }

        /// A decoded packet: the protobuf payload of one frame, typed by kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Packet {
            $( $(#[$doc])* $variant($ty), )*
        }

        impl Packet {
            /// This packet's kind.
            pub fn kind(&self) -> PacketKind {
                match self {
                    $( Packet::$variant(_) => PacketKind::$variant, )*
                }
            }

            /// The protobuf encoding of the payload.
            pub fn encode_payload(&self) -> Bytes {
                let mut buf = BytesMut::new();
                match self {
                    $( Packet::$variant(m) => {
                        buf.reserve(m.encoded_len());
                        // Encoding into a buffer with enough capacity cannot fail.
                        m.encode_raw(&mut buf);
                    } )*
                }
                buf.freeze()
            }

            /// Decodes a payload of the given kind.
            pub fn decode_payload(kind: PacketKind, payload: Bytes) -> Result<Packet, ProtoError> {
                let id = kind.id();
                let bad = |source| ProtoError::BadPayload { kind: id, source };
                Ok(match kind {
                    $( PacketKind::$variant => Packet::$variant(<$ty>::decode(payload).map_err(bad)?), )*
                })
            }
        }

        $(
            impl From<$ty> for Packet {
                fn from(m: $ty) -> Packet {
                    Packet::$variant(m)
                }
            }
        )*
    };
}

packets! {
    /// Client asks to log in. Answered by `LoginResponse` or `Error`.
    Login = 0x0001, pb::LoginRequest, response: false, sender: Client;
    /// Login succeeded.
    LoginResponse = 0x0002, pb::LoginResponse, response: true, sender: Server;
    /// Client ends the session.
    Logout = 0x0003, pb::LogoutRequest, response: false, sender: Client;
    /// Logout acknowledged; the server closes the connection.
    LogoutResponse = 0x0004, pb::LogoutResponse, response: true, sender: Server;
    /// Heartbeat.
    Ping = 0x0005, pb::Ping, response: false, sender: Client;
    /// Heartbeat answer.
    Pong = 0x0006, pb::Pong, response: true, sender: Server;
    /// The server ends the session; the connection closes after it.
    Kicked = 0x0007, pb::Kicked, response: false, sender: Server;
    /// A request failed.
    Error = 0x000F, pb::ErrorResponse, response: true, sender: Server;
    /// Send a message.
    Send = 0x0010, pb::SendRequest, response: false, sender: Client;
    /// SENT: the message is durably stored.
    SendResponse = 0x0011, pb::SendResponse, response: true, sender: Server;
    /// A message for this device.
    MessagePush = 0x0012, pb::MessagePush, response: false, sender: Server;
    /// Move a delivered or read cursor.
    Receipt = 0x0013, pb::ReceiptRequest, response: false, sender: Client;
    /// The cursor after a receipt.
    ReceiptResponse = 0x0014, pb::ReceiptResponse, response: true, sender: Server;
    /// Someone's cursor moved.
    ReceiptPush = 0x0015, pb::ReceiptPush, response: false, sender: Server;
    /// Recall a message.
    Recall = 0x0016, pb::RecallRequest, response: false, sender: Client;
    /// The stored recall event.
    RecallResponse = 0x0017, pb::RecallResponse, response: true, sender: Server;
    /// Ephemeral typing signal.
    Typing = 0x0018, pb::Typing, response: false, sender: Both;
    /// Business notification.
    Notification = 0x0019, pb::Notification, response: false, sender: Server;
    /// How many members read given group messages.
    ReadCount = 0x001A, pb::ReadCountRequest, response: false, sender: Client;
    /// Read counts.
    ReadCountResponse = 0x001B, pb::ReadCountResponse, response: true, sender: Server;
    /// Live-only application signal, relayed and never stored.
    Signal = 0x001C, pb::Signal, response: false, sender: Both;
    /// Fetch what this device missed.
    Sync = 0x0020, pb::SyncRequest, response: false, sender: Client;
    /// Missed messages per conversation.
    SyncResponse = 0x0021, pb::SyncResponse, response: true, sender: Server;
    /// A page of history.
    History = 0x0022, pb::HistoryRequest, response: false, sender: Client;
    /// History page.
    HistoryResponse = 0x0023, pb::HistoryResponse, response: true, sender: Server;
    /// The conversation list with unread counts.
    ConversationList = 0x0024, pb::ConversationListRequest, response: false, sender: Client;
    /// Conversation list.
    ConversationListResponse = 0x0025, pb::ConversationListResponse, response: true, sender: Server;
    /// Messages wait for this device: pull them with `Sync`.
    SyncNotice = 0x0026, pb::SyncNotice, response: false, sender: Server;
    /// Create a group.
    GroupCreate = 0x0030, pb::GroupCreateRequest, response: false, sender: Client;
    /// Group created.
    GroupCreateResponse = 0x0031, pb::GroupCreateResponse, response: true, sender: Server;
    /// Dismiss a group.
    GroupDismiss = 0x0032, pb::GroupDismissRequest, response: false, sender: Client;
    /// Group dismissed.
    GroupDismissResponse = 0x0033, pb::GroupDismissResponse, response: true, sender: Server;
    /// Add members.
    GroupAddMembers = 0x0034, pb::GroupAddMembersRequest, response: false, sender: Client;
    /// Members added.
    GroupAddMembersResponse = 0x0035, pb::GroupAddMembersResponse, response: true, sender: Server;
    /// Remove members (or leave).
    GroupRemoveMembers = 0x0036, pb::GroupRemoveMembersRequest, response: false, sender: Client;
    /// Members removed.
    GroupRemoveMembersResponse = 0x0037, pb::GroupRemoveMembersResponse, response: true, sender: Server;
    /// Change name or avatar.
    GroupUpdate = 0x0038, pb::GroupUpdateRequest, response: false, sender: Client;
    /// Group updated.
    GroupUpdateResponse = 0x0039, pb::GroupUpdateResponse, response: true, sender: Server;
    /// List a group's members.
    GroupMembers = 0x003A, pb::GroupMembersRequest, response: false, sender: Client;
    /// Group members.
    GroupMembersResponse = 0x003B, pb::GroupMembersResponse, response: true, sender: Server;
    /// List the caller's groups.
    GroupList = 0x003C, pb::GroupListRequest, response: false, sender: Client;
    /// The caller's groups.
    GroupListResponse = 0x003D, pb::GroupListResponse, response: true, sender: Server;
    /// Change a member's role.
    GroupSetRole = 0x003E, pb::GroupSetRoleRequest, response: false, sender: Client;
    /// Role changed.
    GroupSetRoleResponse = 0x003F, pb::GroupSetRoleResponse, response: true, sender: Server;
    /// Friends, requests and block list.
    FriendList = 0x0040, pb::FriendListRequest, response: false, sender: Client;
    /// Contacts.
    FriendListResponse = 0x0041, pb::FriendListResponse, response: true, sender: Server;
    /// Send a friend request.
    FriendAdd = 0x0042, pb::FriendAddRequest, response: false, sender: Client;
    /// Request sent (or accepted at once).
    FriendAddResponse = 0x0043, pb::FriendAddResponse, response: true, sender: Server;
    /// Accept a friend request.
    FriendAccept = 0x0044, pb::FriendAcceptRequest, response: false, sender: Client;
    /// Request accepted.
    FriendAcceptResponse = 0x0045, pb::FriendAcceptResponse, response: true, sender: Server;
    /// Remove a friend or a pending request.
    FriendRemove = 0x0046, pb::FriendRemoveRequest, response: false, sender: Client;
    /// Friend removed.
    FriendRemoveResponse = 0x0047, pb::FriendRemoveResponse, response: true, sender: Server;
    /// Block a user.
    Block = 0x0048, pb::BlockRequest, response: false, sender: Client;
    /// Blocked.
    BlockResponse = 0x0049, pb::BlockResponse, response: true, sender: Server;
    /// Unblock a user.
    Unblock = 0x004A, pb::UnblockRequest, response: false, sender: Client;
    /// Unblocked.
    UnblockResponse = 0x004B, pb::UnblockResponse, response: true, sender: Server;
    /// A contact relation changed.
    ContactEvent = 0x004C, pb::ContactEvent, response: false, sender: Server;
    /// Set the caller's privacy settings.
    PrivacySet = 0x004D, pb::PrivacySetRequest, response: false, sender: Client;
    /// Privacy settings set.
    PrivacySetResponse = 0x004E, pb::PrivacySetResponse, response: true, sender: Server;
    /// Register (or, with an empty token, remove) the device's push token.
    PushTokenSet = 0x004F, pb::PushTokenSetRequest, response: false, sender: Client;
    /// Push token set.
    PushTokenSetResponse = 0x0050, pb::PushTokenSetResponse, response: true, sender: Server;
    /// Set the caller's notification settings.
    PushSettings = 0x0051, pb::PushSettingsRequest, response: false, sender: Client;
    /// Notification settings set.
    PushSettingsResponse = 0x0052, pb::PushSettingsResponse, response: true, sender: Server;
}

impl Packet {
    /// Builds the frame for this packet with the given packet id. The
    /// response flag follows the packet's kind.
    pub fn to_frame(&self, packet_id: PacketId) -> Frame {
        let kind = self.kind();
        Frame {
            header: Header {
                kind: kind.id(),
                version: PROTOCOL_VERSION,
                flags: Flags::new(kind.is_response()),
                packet_id,
            },
            payload: self.encode_payload(),
        }
    }

    /// Validates a frame's header and decodes its payload.
    ///
    /// Errors here concern one well-delimited frame: the connection can
    /// answer with an error packet (same packet id) and carry on.
    pub fn from_frame(frame: &Frame) -> Result<Packet, ProtoError> {
        let h = &frame.header;
        if h.version != PROTOCOL_VERSION {
            return Err(ProtoError::UnsupportedVersion {
                version: h.version,
                supported: PROTOCOL_VERSION,
            });
        }
        h.flags.validate()?;
        let kind = PacketKind::from_u16(h.kind).ok_or(ProtoError::UnknownType { kind: h.kind })?;
        if kind.is_response() != h.flags.is_response() {
            return Err(ProtoError::ResponseFlagMismatch {
                kind: h.kind,
                is_response: kind.is_response(),
            });
        }
        Packet::decode_payload(kind, frame.payload.clone())
    }

    /// An error response.
    pub fn error(code: crate::ErrorCode, message: impl Into<String>) -> Packet {
        Packet::Error(pb::ErrorResponse {
            code: code.as_u32(),
            message: message.into(),
        })
    }
}
