//! Login authentication: the [`Authenticator`] hook, standard JWTs
//! ([`JwtAuthenticator`], feature `jwt`: what the server issues and
//! accepts by default) and imkit's older HMAC-SHA256 token format
//! ([`HmacAuthenticator`], still accepted), both documented in
//! docs/protocol.md ("Tokens").

#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
pub use jwt::{JwtAlgorithm, JwtAuthenticator, NBF_LEEWAY_SECS};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use std::sync::Arc;

use crate::model::UserId;
use crate::store::AccountStore;
use crate::{Error, Result};

/// Who a login token names, and until when it is good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// When the token expires, Unix seconds; a session it opened is closed
    /// then (`Kicked { TOKEN_EXPIRED }`). `None`: it does not expire.
    pub expires_at: Option<u64>,
    /// The token's own id (a JWT's `jti`), when it has one: the token can
    /// then be revoked by it, without the token in hand.
    pub jti: Option<String>,
}

impl Identity {
    /// The id revocation and session bookkeeping know `token` by: derived
    /// from its `jti` when it has one ([`jti_token_id`]), else from the
    /// token itself ([`token_id`]).
    pub fn token_id(&self, token: &str) -> String {
        match &self.jti {
            Some(jti) => jti_token_id(jti),
            None => token_id(token),
        }
    }
}

/// Turns a login token into a user id. Plug in your own to accept your
/// application's sessions.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The user the token belongs to, or `InvalidToken` / `TokenExpired`.
    async fn authenticate(&self, token: &str) -> Result<UserId>;

    /// The user and the token's expiry. The default knows no expiry;
    /// override it so sessions end when their tokens do.
    async fn identify(&self, token: &str) -> Result<Identity> {
        Ok(Identity {
            user: self.authenticate(token).await?,
            expires_at: None,
            jti: None,
        })
    }
}

/// The longest a built-in token may still have to live when it is used
/// (30 days): one minted further ahead is refused.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 30 * 86_400;

/// Tokens of the form `v1.<b64 user>.<expiry>.<b64 hmac>`, signed with a
/// shared secret. Any backend that knows the secret can mint them.
#[derive(Clone)]
pub struct HmacAuthenticator {
    secret: Vec<u8>,
    clock: crate::Clock,
    max_lifetime_secs: u64,
}

impl std::fmt::Debug for HmacAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacAuthenticator { secret: <redacted> }")
    }
}

impl HmacAuthenticator {
    /// An authenticator with the given secret and the system clock.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self::with_clock(secret, crate::Clock::system())
    }

    /// An authenticator with a custom clock (for tests).
    pub fn with_clock(secret: impl Into<Vec<u8>>, clock: crate::Clock) -> Self {
        HmacAuthenticator {
            secret: secret.into(),
            clock,
            max_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        }
    }

    /// Refuses tokens that expire more than `secs` from now (default
    /// [`DEFAULT_MAX_TOKEN_LIFETIME_SECS`]), so a leaked token is worth at
    /// most that long.
    pub fn with_max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime_secs = secs;
        self
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
        mac.update(body.as_bytes());
        mac
    }

    /// A token for `user` valid for `ttl_secs` seconds from now.
    pub fn mint(&self, user: &UserId, ttl_secs: u64) -> String {
        let expiry = self.clock.now_ms() / 1000 + ttl_secs;
        self.mint_until(user, expiry)
    }

    /// A token for `user` that expires at `expiry` (Unix seconds).
    pub fn mint_until(&self, user: &UserId, expiry: u64) -> String {
        let body = format!("v1.{}.{expiry}", B64.encode(user.as_str()));
        let sig = self.mac(&body).finalize().into_bytes();
        format!("{body}.{}", B64.encode(sig))
    }

    /// Checks a token's signature and expiry.
    pub fn verify(&self, token: &str) -> Result<UserId> {
        self.inspect(token).map(|(user, _)| user)
    }

    /// Checks a token's signature and expiry; returns its user and its
    /// expiry (Unix seconds).
    pub fn inspect(&self, token: &str) -> Result<(UserId, u64)> {
        let (body, sig) = token
            .rsplit_once('.')
            .ok_or(Error::InvalidToken("missing signature"))?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(user), Some(expiry), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::InvalidToken(
                "expected v1.<user>.<expiry>.<signature>",
            ));
        };
        let sig = B64
            .decode(sig)
            .map_err(|_| Error::InvalidToken("signature is not base64url"))?;
        self.mac(body)
            .verify_slice(&sig)
            .map_err(|_| Error::InvalidToken("bad signature"))?;
        let expiry: u64 = expiry
            .parse()
            .map_err(|_| Error::InvalidToken("expiry is not a number"))?;
        let now = self.clock.now_ms() / 1000;
        if expiry <= now {
            return Err(Error::TokenExpired {
                expired_at: expiry,
                now,
            });
        }
        if expiry - now > self.max_lifetime_secs {
            return Err(Error::InvalidToken(
                "the token expires further ahead than the maximum lifetime",
            ));
        }
        let user = B64
            .decode(user)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or(Error::InvalidToken("user is not base64url UTF-8"))?;
        let user = UserId::parse(&user).map_err(|_| Error::InvalidToken("user id is not valid"))?;
        Ok((user, expiry))
    }
}

#[async_trait]
impl Authenticator for HmacAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<UserId> {
        self.verify(token)
    }

    async fn identify(&self, token: &str) -> Result<Identity> {
        let (user, expiry) = self.inspect(token)?;
        Ok(Identity {
            user,
            expires_at: Some(expiry),
            jti: None,
        })
    }
}

/// A token's id: the first 16 bytes of its SHA-256, in hex. Revocation
/// and session bookkeeping use it, so the token itself is never stored.
pub fn token_id(token: &str) -> String {
    hex16(token.as_bytes())
}

/// The id of a token that carries `jti`: the first 16 bytes of the SHA-256
/// of `jti:` and the jti, in hex. A backend that minted the token can
/// revoke it by its jti alone.
pub fn jti_token_id(jti: &str) -> String {
    hex16(format!("jti:{jti}").as_bytes())
}

fn hex16(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(bytes);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Wraps an [`Authenticator`] with the account rules: a revoked token, a
/// disabled account and the reserved system user cannot log in. Users
/// without an account are let through (a backend may mint tokens for users
/// imkit has never seen).
pub struct AccountGuard {
    inner: Arc<dyn Authenticator>,
    accounts: Arc<dyn AccountStore>,
}

impl std::fmt::Debug for AccountGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountGuard").finish_non_exhaustive()
    }
}

impl AccountGuard {
    /// Guards `inner` with `accounts`.
    pub fn new(inner: Arc<dyn Authenticator>, accounts: Arc<dyn AccountStore>) -> Self {
        AccountGuard { inner, accounts }
    }
}

#[async_trait]
impl Authenticator for AccountGuard {
    async fn authenticate(&self, token: &str) -> Result<UserId> {
        self.identify(token).await.map(|i| i.user)
    }

    async fn identify(&self, token: &str) -> Result<Identity> {
        let identity = self.inner.identify(token).await?;
        let user = &identity.user;
        if user.is_system() {
            return Err(Error::Forbidden(format!(
                "{user} is reserved for server-side messages"
            )));
        }
        if self.accounts.is_revoked(&identity.token_id(token)).await? {
            return Err(Error::TokenRevoked);
        }
        if let Some(account) = self.accounts.get(user).await?
            && account.disabled
        {
            return Err(Error::UserDisabled(user.to_string()));
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Clock;

    #[test]
    fn mint_and_verify() {
        let clock = Clock::manual(1_000_000);
        let auth = HmacAuthenticator::with_clock("s3cret", clock.clone());
        let alice = UserId::from("alice");
        let token = auth.mint(&alice, 60);
        assert_eq!(auth.verify(&token).expect("valid"), alice);
        // Another secret rejects it.
        let other = HmacAuthenticator::with_clock("other", clock.clone());
        assert!(matches!(
            other.verify(&token),
            Err(Error::InvalidToken("bad signature"))
        ));
        // Tampering with the user breaks the signature.
        let forged = token.replacen(&B64.encode("alice"), &B64.encode("mallory"), 1);
        assert!(matches!(auth.verify(&forged), Err(Error::InvalidToken(_))));
        // Expiry.
        clock.advance_ms(61_000);
        assert!(matches!(
            auth.verify(&token),
            Err(Error::TokenExpired { .. })
        ));
        // A token that still has more than the maximum lifetime to live.
        let long = auth.mint(&alice, DEFAULT_MAX_TOKEN_LIFETIME_SECS + 60);
        assert!(matches!(auth.verify(&long), Err(Error::InvalidToken(_))));
        let short = auth.clone().with_max_lifetime(30).mint(&alice, 60);
        assert!(auth.clone().with_max_lifetime(30).verify(&short).is_err());
        assert!(auth.verify(&short).is_ok(), "within the default");
        for junk in ["", "v1", "v1.a.b", "v2.YQ.1.x", "v1.YQ.notanumber.AAAA"] {
            assert!(auth.verify(junk).is_err(), "{junk:?} rejected");
        }
    }

    /// The Python snippet in docs/protocol.md computes this exact token.
    #[test]
    fn documented_format() {
        let auth = HmacAuthenticator::new("secret");
        let token = auth.mint_until(&UserId::from("alice"), 2_000_000_000);
        assert_eq!(
            token,
            "v1.YWxpY2U.2000000000.TEjB8aR3gX7SK1Aq-yivkJfh7EMxBXnDR_O-MlDo1og"
        );
    }
}
