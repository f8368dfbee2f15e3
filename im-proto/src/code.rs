//! Numeric error codes carried by [`crate::pb::ErrorResponse`].

/// The error codes of the protocol. The numbers are part of the wire format
/// (see docs/protocol.md) and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// A code this side does not know (a newer peer); treat as internal.
    Unknown = 0,
    // 1xxx: the frame or packet itself.
    /// The frame could not be parsed; the connection is closed.
    MalformedFrame = 1001,
    /// The header's version is not spoken.
    UnsupportedVersion = 1002,
    /// The type id is unknown.
    UnknownType = 1003,
    /// The payload does not decode as the type's message.
    BadPayload = 1004,
    /// The frame exceeds the maximum length; the connection is closed.
    FrameTooLarge = 1005,
    /// Reserved flag bits, an unknown encoding, or a wrong response flag.
    BadFlags = 1006,
    /// A packet type that only the server sends was sent by a client.
    UnexpectedPacket = 1007,
    // 2xxx: the session.
    /// Any packet but Login before login.
    NotLoggedIn = 2001,
    /// The token is malformed or its signature is wrong.
    InvalidToken = 2002,
    /// The token has expired.
    TokenExpired = 2003,
    /// Login sent twice on one connection.
    AlreadyLoggedIn = 2004,
    /// No login within the login deadline; the connection is closed.
    LoginTimeout = 2005,
    /// The per-connection message rate was exceeded; the request was not processed.
    RateLimited = 2006,
    /// The user is disabled.
    UserDisabled = 2007,
    /// The token was revoked.
    TokenRevoked = 2008,
    /// The user already has the most devices allowed; remove one first.
    TooManyDevices = 2009,
    // 3xxx: the request.
    /// A field is missing, empty, too long or otherwise invalid.
    InvalidArgument = 3001,
    /// The caller may not do this.
    Forbidden = 3002,
    /// The conversation, message, group or user does not exist.
    NotFound = 3003,
    /// The recipient has blocked the sender.
    Blocked = 3004,
    /// The caller is not a member of the group.
    NotMember = 3005,
    /// The recall window has passed.
    RecallWindowExpired = 3006,
    /// The thing already exists or the request conflicts with current state.
    Conflict = 3007,
    /// A server-side hook (moderation, policy) refused the message; the
    /// message says why. Nothing was stored.
    Rejected = 3008,
    // 5xxx: the server.
    /// An unexpected server error; the request may be retried.
    Internal = 5001,
    /// A store is unreachable; retry later.
    Unavailable = 5002,
    /// The server is overloaded or shutting down; retry later, elsewhere.
    Overloaded = 5003,
}

impl ErrorCode {
    /// Every defined code, for documentation and tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::MalformedFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownType,
        ErrorCode::BadPayload,
        ErrorCode::FrameTooLarge,
        ErrorCode::BadFlags,
        ErrorCode::UnexpectedPacket,
        ErrorCode::NotLoggedIn,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::AlreadyLoggedIn,
        ErrorCode::LoginTimeout,
        ErrorCode::RateLimited,
        ErrorCode::UserDisabled,
        ErrorCode::TokenRevoked,
        ErrorCode::TooManyDevices,
        ErrorCode::InvalidArgument,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Blocked,
        ErrorCode::NotMember,
        ErrorCode::RecallWindowExpired,
        ErrorCode::Conflict,
        ErrorCode::Rejected,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::Overloaded,
    ];

    /// The code's number on the wire.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code for a number, or [`ErrorCode::Unknown`].
    pub fn from_u32(n: u32) -> ErrorCode {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.as_u32() == n)
            .unwrap_or(ErrorCode::Unknown)
    }

    /// True when retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Internal
                | ErrorCode::Unavailable
                | ErrorCode::Overloaded
                | ErrorCode::RateLimited
        )
    }
}
