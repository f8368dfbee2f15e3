//! SQLite [`AccountStore`].

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{CachedExt, Db, db_err, i64_of};
use crate::Result;
use crate::model::*;
use crate::store::{Account, AccountStore};

/// Accounts and revoked tokens in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteAccounts(Arc<Db>);

impl SqliteAccounts {
    /// The account store of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqliteAccounts(db)
    }
}

fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        user: UserId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        disabled: r.get::<_, i64>(2)? != 0,
        created_ms: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

fn get_account(c: &Connection, user: &str) -> Result<Option<Account>> {
    c.row(
        "SELECT user, name, disabled, created_ms FROM accounts WHERE user = ?1",
        params![user],
        row_to_account,
    )
    .optional()
    .map_err(db_err)
}

#[async_trait]
impl AccountStore for SqliteAccounts {
    async fn create(&self, a: Account) -> Result<bool> {
        self.0
            .write(move |c| {
                c.exec(
                    "INSERT OR IGNORE INTO accounts (user, name, disabled, created_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        a.user.as_str(),
                        a.name,
                        i64::from(a.disabled),
                        i64_of(a.created_ms)
                    ],
                )
                .map(|n| n > 0)
                .map_err(db_err)
            })
            .await
    }

    async fn get(&self, user: &UserId) -> Result<Option<Account>> {
        let user = user.clone();
        self.0.read(move |c| get_account(c, user.as_str())).await
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>> {
        let user = user.clone();
        self.0
            .write(move |c| {
                c.exec(
                    "UPDATE accounts SET disabled = ?2 WHERE user = ?1",
                    params![user.as_str(), i64::from(disabled)],
                )
                .map_err(db_err)?;
                get_account(c, user.as_str())
            })
            .await
    }

    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()> {
        let token_id = token_id.to_owned();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.0
            .write(move |c| {
                c.exec(
                    "DELETE FROM revoked_tokens WHERE expires_at < ?1",
                    params![i64_of(now)],
                )
                .map_err(db_err)?;
                c.exec(
                    "INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (token_id) DO UPDATE SET expires_at = excluded.expires_at",
                    params![token_id, i64_of(expires_at)],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let token_id = token_id.to_owned();
        self.0
            .read(move |c| {
                c.row(
                    "SELECT 1 FROM revoked_tokens WHERE token_id = ?1",
                    params![token_id],
                    |_| Ok(()),
                )
                .optional()
                .map(|r| r.is_some())
                .map_err(db_err)
            })
            .await
    }
}
