//! PostgreSQL [`AccountStore`].

use std::sync::Arc;

use async_trait::async_trait;

use super::{PgDb, i64_of, pg_err, u64_of};
use crate::Result;
use crate::model::UserId;
use crate::store::{Account, AccountStore};

/// PostgreSQL [`AccountStore`].
#[derive(Debug, Clone)]
pub struct PostgresAccounts {
    db: Arc<PgDb>,
}

impl PostgresAccounts {
    /// The account store of a database.
    pub fn new(db: Arc<PgDb>) -> Self {
        PostgresAccounts { db }
    }
}

fn account_of(r: &tokio_postgres::Row) -> Result<Account> {
    Ok(Account {
        user: UserId::new(r.try_get::<_, String>(0).map_err(pg_err)?),
        name: r.try_get(1).map_err(pg_err)?,
        disabled: r.try_get(2).map_err(pg_err)?,
        created_ms: u64_of(r.try_get(3).map_err(pg_err)?),
    })
}

#[async_trait]
impl AccountStore for PostgresAccounts {
    async fn create(&self, account: Account) -> Result<bool> {
        let c = self.db.conn().await?;
        let n = c
            .execute(
                "INSERT INTO accounts (\"user\", name, disabled, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (\"user\") DO NOTHING",
                &[
                    &account.user.as_str(),
                    &account.name,
                    &account.disabled,
                    &i64_of(account.created_ms),
                ],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn get(&self, user: &UserId) -> Result<Option<Account>> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached(
                "SELECT \"user\", name, disabled, created_ms FROM accounts WHERE \"user\" = $1",
            )
            .await
            .map_err(pg_err)?;
        c.query_opt(&stmt, &[&user.as_str()])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(account_of)
            .transpose()
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>> {
        let c = self.db.conn().await?;
        c.query_opt(
            "UPDATE accounts SET disabled = $2 WHERE \"user\" = $1
             RETURNING \"user\", name, disabled, created_ms",
            &[&user.as_str(), &disabled],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(account_of)
        .transpose()
    }

    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let c = self.db.conn().await?;
        // Forget records of tokens that are worthless by now, a few at a time.
        c.execute(
            "DELETE FROM revoked_tokens WHERE token_id IN
                (SELECT token_id FROM revoked_tokens WHERE expires_at < $1 LIMIT 100)",
            &[&i64_of(now)],
        )
        .await
        .map_err(pg_err)?;
        c.execute(
            "INSERT INTO revoked_tokens (token_id, expires_at) VALUES ($1, $2)
             ON CONFLICT (token_id) DO UPDATE SET expires_at = GREATEST(revoked_tokens.expires_at, excluded.expires_at)",
            &[&token_id, &i64_of(expires_at)],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached("SELECT 1 FROM revoked_tokens WHERE token_id = $1")
            .await
            .map_err(pg_err)?;
        Ok(c.query_opt(&stmt, &[&token_id])
            .await
            .map_err(pg_err)?
            .is_some())
    }
}
