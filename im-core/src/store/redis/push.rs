//! Redis [`PushStore`]: a hash `pt:{user}` of device to
//! `"{provider}\n{platform}\n{token}"`, and a flag `ph:{user}` set while
//! the user hides content.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisDb, err};
use crate::Result;
use crate::model::{DeviceId, UserId};
use crate::store::{DeviceToken, PushProfile, PushStore, PushToken};

/// Removes a device's token, only if it is the given one when that is set.
/// KEYS: pt. ARGV: device, token or "".
const REMOVE: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if ARGV[2] ~= '' then
  local last = string.match(cur, '[^\n]*$')
  if last ~= ARGV[2] then return 0 end
end
return redis.call('HDEL', KEYS[1], ARGV[1])
";

static REMOVE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(REMOVE));

/// Redis [`PushStore`].
#[derive(Clone, Debug)]
pub struct RedisPush(pub(super) RedisDb);

fn encode(t: &PushToken) -> String {
    format!("{}\n{}\n{}", t.provider, t.platform, t.token)
}

fn decode(s: &str) -> Result<PushToken> {
    let mut parts = s.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(provider), Some(platform), Some(token)) => Ok(PushToken {
            provider: provider.to_owned(),
            platform: platform.to_owned(),
            token: token.to_owned(),
        }),
        _ => Err(err("malformed push token")),
    }
}

#[async_trait]
impl PushStore for RedisPush {
    async fn set_token(&self, user: &UserId, device: &DeviceId, token: PushToken) -> Result<()> {
        let mut c = self.0.connection();
        c.hset::<_, _, _, ()>(
            self.0.key(&["pt", user.as_str()]),
            device.as_str(),
            encode(&token),
        )
        .await
        .map_err(err)
    }

    async fn remove_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        only: Option<&str>,
    ) -> Result<bool> {
        let mut c = self.0.connection();
        let n: i64 = REMOVE_SCRIPT
            .key(self.0.key(&["pt", user.as_str()]))
            .arg(device.as_str())
            .arg(only.unwrap_or(""))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn set_hide_content(&self, user: &UserId, hide: bool) -> Result<()> {
        let mut c = self.0.connection();
        let key = self.0.key(&["ph", user.as_str()]);
        if hide {
            c.set::<_, _, ()>(key, 1).await.map_err(err)
        } else {
            c.del::<_, ()>(key).await.map_err(err)
        }
    }

    async fn profiles(&self, users: &[UserId]) -> Result<Vec<PushProfile>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.hgetall(self.0.key(&["pt", u.as_str()]));
            pipe.exists(self.0.key(&["ph", u.as_str()]));
        }
        let mut c = self.0.connection();
        let answers: Vec<redis::Value> = pipe.query_async(&mut c).await.map_err(err)?;
        let mut out = Vec::new();
        for (user, pair) in users.iter().zip(answers.chunks(2)) {
            let [tokens, hide] = pair else {
                return Err(err("push profile answer cut short"));
            };
            let tokens: std::collections::BTreeMap<String, String> =
                redis::from_redis_value(tokens).map_err(err)?;
            if tokens.is_empty() {
                continue;
            }
            let hide: bool = redis::from_redis_value(hide).map_err(err)?;
            out.push(PushProfile {
                user: user.clone(),
                hide_content: hide,
                tokens: tokens
                    .iter()
                    .map(|(d, t)| {
                        Ok(DeviceToken {
                            device: DeviceId::new(d.as_str()),
                            token: decode(t)?,
                        })
                    })
                    .collect::<Result<_>>()?,
            });
        }
        Ok(out)
    }
}
