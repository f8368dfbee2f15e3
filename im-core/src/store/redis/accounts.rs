//! Redis [`AccountStore`].

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{RedisDb, err};
use crate::model::*;
use crate::store::{Account, AccountStore};
use std::collections::HashMap;

use crate::Result;

/// Redis [`AccountStore`]: a hash per account, a key per revoked token
/// that expires with the token.
#[derive(Clone, Debug)]
pub struct RedisAccounts(pub(super) RedisDb);

/// KEYS: acct:{user}; ARGV: name, disabled, created_ms. 1 if created.
const ACCOUNT_CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'disabled', ARGV[2], 'created_ms', ARGV[3])
return 1
";

/// KEYS: acct:{user}; ARGV: disabled. 1 if the account exists.
const ACCOUNT_DISABLE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'disabled', ARGV[1])
return 1
";

#[async_trait]
impl AccountStore for RedisAccounts {
    async fn create(&self, a: Account) -> Result<bool> {
        let mut c = self.0.connection();
        let n: i64 = Script::new(ACCOUNT_CREATE)
            .key(self.0.key(&["acct", a.user.as_str()]))
            .arg(a.name)
            .arg(u8::from(a.disabled))
            .arg(a.created_ms)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn get(&self, user: &UserId) -> Result<Option<Account>> {
        let mut c = self.0.connection();
        let fields: HashMap<String, String> = c
            .hgetall(self.0.key(&["acct", user.as_str()]))
            .await
            .map_err(err)?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(Account {
            user: user.clone(),
            name: fields.get("name").cloned().unwrap_or_default(),
            disabled: fields.get("disabled").is_some_and(|d| d == "1"),
            created_ms: fields
                .get("created_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>> {
        let mut c = self.0.connection();
        let n: i64 = Script::new(ACCOUNT_DISABLE)
            .key(self.0.key(&["acct", user.as_str()]))
            .arg(u8::from(disabled))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        if n == 0 {
            return Ok(None);
        }
        self.get(user).await
    }

    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()> {
        let mut c = self.0.connection();
        // EXAT: the record disappears when the token would have expired.
        // Redis refuses times past its range; a token minted elsewhere may
        // claim any expiry, so the record is kept until year 9999 at most.
        const LAST_EXAT: u64 = 253_402_300_799;
        let _: () = redis::cmd("SET")
            .arg(self.0.key(&["revoked", token_id]))
            .arg(1)
            .arg("EXAT")
            .arg(expires_at.clamp(1, LAST_EXAT))
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let mut c = self.0.connection();
        c.exists(self.0.key(&["revoked", token_id]))
            .await
            .map_err(err)
    }
}
