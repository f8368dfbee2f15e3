//! Redis [`ContactStore`].

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{RedisDb, err};
use crate::Result;
use crate::model::*;
use crate::store::ContactStore;

/// Redis [`ContactStore`].
#[derive(Clone, Debug)]
pub struct RedisContacts(pub(super) RedisDb);

/// KEYS: fr:{from}, fi:{from}, fo:{from}, fr:{to}, fi:{to}, fo:{to}; ARGV: from, to.
/// Returns 0 pending, 1 became friends, 2 already friends.
const FRIEND_REQUEST: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 1 then return 2 end
if redis.call('SREM', KEYS[2], ARGV[2]) == 1 then
  redis.call('SREM', KEYS[6], ARGV[1])
  redis.call('SADD', KEYS[1], ARGV[2])
  redis.call('SADD', KEYS[4], ARGV[1])
  return 1
end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[1])
return 0
";

/// KEYS: fr:{user}, fi:{user}, fr:{from}, fo:{from}; ARGV: user, from.
const FRIEND_ACCEPT: &str = r"
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
";

/// KEYS: fr, fi, fo of user, then of other; ARGV: user, other.
const FRIEND_REMOVE: &str = r"
local n = 0
n = n + redis.call('SREM', KEYS[1], ARGV[2]) + redis.call('SREM', KEYS[2], ARGV[2]) + redis.call('SREM', KEYS[3], ARGV[2])
n = n + redis.call('SREM', KEYS[4], ARGV[1]) + redis.call('SREM', KEYS[5], ARGV[1]) + redis.call('SREM', KEYS[6], ARGV[1])
return n
";

impl RedisContacts {
    fn sets(&self, u: &UserId) -> [String; 3] {
        [
            self.0.key(&["fr", u.as_str()]),
            self.0.key(&["fi", u.as_str()]),
            self.0.key(&["fo", u.as_str()]),
        ]
    }

    async fn sorted(&self, key: String) -> Result<Vec<UserId>> {
        let mut c = self.0.connection();
        let mut v: Vec<String> = c.smembers(key).await.map_err(err)?;
        v.sort();
        Ok(v.into_iter().map(UserId::new).collect())
    }
}

#[async_trait]
impl ContactStore for RedisContacts {
    async fn request(&self, from: &UserId, to: &UserId) -> Result<FriendRequestOutcome> {
        let [ffr, ffi, ffo] = self.sets(from);
        let [tfr, tfi, tfo] = self.sets(to);
        let mut c = self.0.connection();
        let n: i64 = Script::new(FRIEND_REQUEST)
            .key(ffr)
            .key(ffi)
            .key(ffo)
            .key(tfr)
            .key(tfi)
            .key(tfo)
            .arg(from.as_str())
            .arg(to.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(match n {
            1 => FriendRequestOutcome::BecameFriends,
            2 => FriendRequestOutcome::AlreadyFriends,
            _ => FriendRequestOutcome::Pending,
        })
    }

    async fn accept(&self, user: &UserId, from: &UserId) -> Result<bool> {
        let [ufr, ufi, _] = self.sets(user);
        let [ffr, _, ffo] = self.sets(from);
        let mut c = self.0.connection();
        let n: i64 = Script::new(FRIEND_ACCEPT)
            .key(ufr)
            .key(ufi)
            .key(ffr)
            .key(ffo)
            .arg(user.as_str())
            .arg(from.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn remove(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let [a, b, cc] = self.sets(user);
        let [d, e, f] = self.sets(other);
        let mut c = self.0.connection();
        let n: i64 = Script::new(FRIEND_REMOVE)
            .key(a)
            .key(b)
            .key(cc)
            .key(d)
            .key(e)
            .key(f)
            .arg(user.as_str())
            .arg(other.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn list(&self, user: &UserId) -> Result<ContactList> {
        let [fr, fi, fo] = self.sets(user);
        Ok(ContactList {
            friends: self.sorted(fr).await?,
            incoming: self.sorted(fi).await?,
            outgoing: self.sorted(fo).await?,
            blocked: self.sorted(self.0.key(&["bl", user.as_str()])).await?,
        })
    }

    async fn block(&self, user: &UserId, other: &UserId) -> Result<()> {
        let mut c = self.0.connection();
        c.sadd::<_, _, ()>(self.0.key(&["bl", user.as_str()]), other.as_str())
            .await
            .map_err(err)
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let mut c = self.0.connection();
        let n: i64 = c
            .srem(self.0.key(&["bl", user.as_str()]), other.as_str())
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let mut c = self.0.connection();
        c.sismember(self.0.key(&["bl", user.as_str()]), other.as_str())
            .await
            .map_err(err)
    }

    async fn group_adds(&self, user: &UserId) -> Result<GroupAdds> {
        let mut c = self.0.connection();
        let v: Option<String> = c
            .get(self.0.key(&["privacy", "group_adds", user.as_str()]))
            .await
            .map_err(err)?;
        Ok(match v.as_deref() {
            Some("friends") => GroupAdds::FriendsOnly,
            _ => GroupAdds::Anyone,
        })
    }

    async fn set_group_adds(&self, user: &UserId, policy: GroupAdds) -> Result<()> {
        let mut c = self.0.connection();
        let key = self.0.key(&["privacy", "group_adds", user.as_str()]);
        match policy {
            GroupAdds::Anyone => c.del::<_, ()>(key).await,
            GroupAdds::FriendsOnly => c.set::<_, _, ()>(key, "friends").await,
        }
        .map_err(err)
    }
}
