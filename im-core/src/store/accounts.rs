use async_trait::async_trait;

use crate::Result;
use crate::model::UserId;

/// A registered user: what the HTTP admin API creates and disables.
///
/// Accounts are optional for the live protocol: a token minted by your own
/// backend for a user with no account still logs in. A *disabled* account
/// cannot log in, and a revoked token cannot either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user.
    pub user: UserId,
    /// A display name (may be empty).
    pub name: String,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
    /// When the account was created, Unix milliseconds.
    pub created_ms: u64,
}

/// Accounts and revoked login tokens.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Creates an account; returns false (and changes nothing) if the user
    /// already has one.
    async fn create(&self, account: Account) -> Result<bool>;

    /// One account.
    async fn get(&self, user: &UserId) -> Result<Option<Account>>;

    /// Disables or re-enables an account; returns the updated account, or
    /// `None` if there is none.
    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>>;

    /// Records that the token with this id is revoked. The record may be
    /// forgotten after `expires_at` (Unix seconds), when the token is
    /// worthless anyway.
    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()>;

    /// Whether the token with this id has been revoked.
    async fn is_revoked(&self, token_id: &str) -> Result<bool>;
}
