//! The core crate's error type.

use imkit_proto::ErrorCode;

/// Everything the engine, the stores and the authenticator can fail with.
/// Each variant maps to one protocol [`ErrorCode`] through [`Error::code`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A field is missing, empty, too long or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The recipient has blocked the sender.
    #[error("{recipient} has blocked {sender}")]
    Blocked {
        /// Who sent.
        sender: String,
        /// Who blocked them.
        recipient: String,
    },
    /// The caller is not a member of the group.
    #[error("{user} is not a member of group {group}")]
    NotMember {
        /// The caller.
        user: String,
        /// The group.
        group: String,
    },
    /// The sender's recall window has passed.
    #[error("the recall window of {window_ms} ms has passed (message is {age_ms} ms old)")]
    RecallWindowExpired {
        /// Age of the message.
        age_ms: u64,
        /// The configured window.
        window_ms: u64,
    },
    /// The request conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A hook refused the message ([`crate::hooks`]); nothing was stored.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The login token is malformed or its signature is wrong.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The login token has expired.
    #[error("token expired at {expired_at} (now {now})")]
    TokenExpired {
        /// Expiry in the token, Unix seconds.
        expired_at: u64,
        /// Current time, Unix seconds.
        now: u64,
    },
    /// The login token was revoked.
    #[error("the token was revoked")]
    TokenRevoked,
    /// The user's account is disabled.
    #[error("user {0} is disabled")]
    UserDisabled(String),
    /// A new device would take the user past the device cap.
    #[error(
        "{user} already has the most devices allowed ({max}); remove one to log in with another"
    )]
    TooManyDevices {
        /// The user.
        user: String,
        /// The cap.
        max: usize,
    },
    /// A store backend failed; the operation may be retried.
    #[error("{backend} store error: {message}")]
    Store {
        /// Which backend ("memory", "sqlite", "redis").
        backend: &'static str,
        /// What it reported.
        message: String,
    },
    /// The engine or a store is shutting down or overloaded.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// The protocol error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Blocked { .. } => ErrorCode::Blocked,
            Error::NotMember { .. } => ErrorCode::NotMember,
            Error::RecallWindowExpired { .. } => ErrorCode::RecallWindowExpired,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::InvalidToken(_) => ErrorCode::InvalidToken,
            Error::TokenExpired { .. } => ErrorCode::TokenExpired,
            Error::TokenRevoked => ErrorCode::TokenRevoked,
            Error::UserDisabled(_) => ErrorCode::UserDisabled,
            Error::TooManyDevices { .. } => ErrorCode::TooManyDevices,
            Error::Store { .. } => ErrorCode::Unavailable,
            Error::Unavailable(_) => ErrorCode::Overloaded,
            Error::Rejected(_) => ErrorCode::Rejected,
        }
    }

    /// A store error from a backend.
    pub fn store(backend: &'static str, err: impl std::fmt::Display) -> Error {
        Error::Store {
            backend,
            message: err.to_string(),
        }
    }
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
