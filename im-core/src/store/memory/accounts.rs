//! In-memory [`AccountStore`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::Result;
use crate::model::*;
use crate::store::{Account, AccountStore};

/// Accounts and revoked tokens in memory.
#[derive(Default)]
pub struct MemoryAccounts {
    accounts: Mutex<HashMap<UserId, Account>>,
    revoked: Mutex<HashMap<String, u64>>,
}

#[async_trait]
impl AccountStore for MemoryAccounts {
    async fn create(&self, account: Account) -> Result<bool> {
        match self.accounts.lock().entry(account.user.clone()) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(v) => {
                v.insert(account);
                Ok(true)
            }
        }
    }

    async fn get(&self, user: &UserId) -> Result<Option<Account>> {
        Ok(self.accounts.lock().get(user).cloned())
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>> {
        let mut accounts = self.accounts.lock();
        Ok(accounts.get_mut(user).map(|a| {
            a.disabled = disabled;
            a.clone()
        }))
    }

    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut revoked = self.revoked.lock();
        // Forget records of tokens that have expired on their own.
        revoked.retain(|_, exp| *exp >= now);
        revoked.insert(token_id.to_owned(), expires_at);
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        Ok(self.revoked.lock().contains_key(token_id))
    }
}
