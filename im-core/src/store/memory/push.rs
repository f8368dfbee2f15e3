//! In-memory [`PushStore`].

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::Sharded;
use crate::Result;
use crate::model::{DeviceId, UserId};
use crate::store::{DeviceToken, PushProfile, PushStore, PushToken};

#[derive(Default)]
struct UserPush {
    hide_content: bool,
    tokens: BTreeMap<DeviceId, PushToken>,
}

/// In-memory [`PushStore`].
#[derive(Default)]
pub struct MemoryPush {
    users: Sharded<UserId, UserPush>,
}

#[async_trait]
impl PushStore for MemoryPush {
    async fn set_token(&self, user: &UserId, device: &DeviceId, token: PushToken) -> Result<()> {
        let mut shard = self.users.shard(user).lock();
        shard
            .entry(user.clone())
            .or_default()
            .tokens
            .insert(device.clone(), token);
        Ok(())
    }

    async fn remove_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        only: Option<&str>,
    ) -> Result<bool> {
        let mut shard = self.users.shard(user).lock();
        let Some(u) = shard.get_mut(user) else {
            return Ok(false);
        };
        match u.tokens.get(device) {
            Some(t) if only.is_none_or(|o| o == t.token) => {
                u.tokens.remove(device);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_hide_content(&self, user: &UserId, hide: bool) -> Result<()> {
        let mut shard = self.users.shard(user).lock();
        shard.entry(user.clone()).or_default().hide_content = hide;
        Ok(())
    }

    async fn profiles(&self, users: &[UserId]) -> Result<Vec<PushProfile>> {
        let mut out = Vec::new();
        for user in users {
            let shard = self.users.shard(user).lock();
            let Some(u) = shard.get(user).filter(|u| !u.tokens.is_empty()) else {
                continue;
            };
            out.push(PushProfile {
                user: user.clone(),
                hide_content: u.hide_content,
                tokens: u
                    .tokens
                    .iter()
                    .map(|(d, t)| DeviceToken {
                        device: d.clone(),
                        token: t.clone(),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}
