//! Standard JWT login tokens. A backend in any language mints them with an
//! ordinary JWT library: HS256 with the shared secret, or EdDSA / RS256
//! with its private key while imkit holds only the public key. Claims:
//! `sub` (the user id, required), `exp` (required), `nbf`, `iat`, `jti`,
//! and `aud` when the server is configured with one.
//!
//! Time claims are checked against the engine's [`Clock`](crate::Clock):
//! `exp` with no grace, `nbf` with [`NBF_LEEWAY_SECS`] for clock skew, and
//! `exp` at most the maximum lifetime ahead. Tokens in imkit's older
//! `v1.` HMAC format are still accepted when the server has the secret.

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{Authenticator, DEFAULT_MAX_TOKEN_LIFETIME_SECS, HmacAuthenticator, Identity};
use crate::model::UserId;
use crate::{Clock, Error, Result};

/// How far ahead of the server's clock `nbf` may be (60 s): backends'
/// clocks are rarely exact.
pub const NBF_LEEWAY_SECS: u64 = 60;

/// The algorithms a public key may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// Ed25519 signatures (`EdDSA`).
    EdDsa,
    /// RSA PKCS#1 v1.5 with SHA-256 (`RS256`).
    Rs256,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// Verifies (and, with a shared secret, mints) JWT login tokens.
#[derive(Clone)]
pub struct JwtAuthenticator {
    decoding: DecodingKey,
    /// Present with a shared secret: HS256 tokens can be minted here.
    encoding: Option<EncodingKey>,
    /// The older `v1.` format, accepted with a shared secret.
    legacy: Option<HmacAuthenticator>,
    validation: Validation,
    clock: Clock,
    max_lifetime_secs: u64,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .finish_non_exhaustive()
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    // Time claims are checked against the engine's clock, below.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

fn bad_key(e: jsonwebtoken::errors::Error) -> Error {
    Error::InvalidArgument(format!("bad JWT key: {e}"))
}

impl JwtAuthenticator {
    /// HS256 with a shared secret (its bytes as given: for the server's
    /// secret file, the hex text). Also accepts `v1.` tokens. The secret
    /// must not be empty.
    pub fn hs256(secret: impl Into<Vec<u8>>, clock: Clock) -> Result<Self> {
        let secret = secret.into();
        Ok(JwtAuthenticator {
            decoding: DecodingKey::from_secret(&secret).map_err(bad_key)?,
            encoding: Some(EncodingKey::from_secret(&secret).map_err(bad_key)?),
            legacy: Some(HmacAuthenticator::with_clock(secret, clock.clone())),
            validation: validation(Algorithm::HS256),
            clock,
            max_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        })
    }

    /// Verifies tokens signed with the private key whose public key `pem`
    /// holds (`-----BEGIN PUBLIC KEY-----`); this side cannot mint.
    pub fn public_key(alg: JwtAlgorithm, pem: &[u8], clock: Clock) -> Result<Self> {
        let (decoding, alg) = match alg {
            JwtAlgorithm::EdDsa => (DecodingKey::from_ed_pem(pem), Algorithm::EdDSA),
            JwtAlgorithm::Rs256 => (DecodingKey::from_rsa_pem(pem), Algorithm::RS256),
        };
        Ok(JwtAuthenticator {
            decoding: decoding.map_err(bad_key)?,
            encoding: None,
            legacy: None,
            validation: validation(alg),
            clock,
            max_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        })
    }

    /// Requires `aud` to name `audience` (by default `aud` is ignored).
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.validate_aud = true;
        self.validation.set_audience(&[audience]);
        self.validation
            .set_required_spec_claims(&["exp", "sub", "aud"]);
        self
    }

    /// Refuses tokens whose `exp` is more than `secs` ahead (default
    /// [`DEFAULT_MAX_TOKEN_LIFETIME_SECS`]).
    pub fn with_max_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime_secs = secs;
        if let Some(legacy) = self.legacy.take() {
            self.legacy = Some(legacy.with_max_lifetime(secs));
        }
        self
    }

    /// Whether this side can mint tokens (it has the shared secret).
    pub fn can_mint(&self) -> bool {
        self.encoding.is_some()
    }

    /// An HS256 token for `user` (a user id, or a `&str` that must be one)
    /// valid for `ttl_secs` from now.
    pub fn mint(&self, user: impl AsRef<str>, ttl_secs: u64) -> Result<String> {
        self.mint_until(user, self.clock.now_ms() / 1000 + ttl_secs)
    }

    /// An HS256 token for `user` that expires at `exp` (Unix seconds), with
    /// `nbf` and `iat` now and a random `jti`.
    pub fn mint_until(&self, user: impl AsRef<str>, exp: u64) -> Result<String> {
        let user = UserId::parse(user.as_ref())?;
        let key = self.encoding.as_ref().ok_or_else(|| {
            Error::Forbidden("tokens are minted with the private key, not here".into())
        })?;
        let now = self.clock.now_ms() / 1000;
        let claims = Claims {
            sub: user.to_string(),
            exp,
            nbf: Some(now),
            iat: Some(now),
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| Error::store("jwt", e))
    }

    /// Checks a token; returns its user and its expiry (Unix seconds).
    pub fn inspect(&self, token: &str) -> Result<(UserId, u64)> {
        self.verify(token)
            .map(|i| (i.user, i.expires_at.unwrap_or_default()))
    }

    /// Checks `token` like [`JwtAuthenticator::inspect`] and returns
    /// everything it says: user, expiry and `jti`.
    pub fn verify(&self, token: &str) -> Result<Identity> {
        if token.starts_with("v1.")
            && let Some(legacy) = &self.legacy
        {
            let (user, expiry) = legacy.inspect(token)?;
            return Ok(Identity {
                user,
                expires_at: Some(expiry),
                jti: None,
            });
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "JWT refused");
                Error::InvalidToken(
                    "not a valid JWT for this server (signature, algorithm, claims)",
                )
            })?
            .claims;
        let now = self.clock.now_ms() / 1000;
        if claims.exp <= now {
            return Err(Error::TokenExpired {
                expired_at: claims.exp,
                now,
            });
        }
        if claims.exp - now > self.max_lifetime_secs {
            return Err(Error::InvalidToken(
                "the token expires further ahead than the maximum lifetime",
            ));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + NBF_LEEWAY_SECS) {
            return Err(Error::InvalidToken("the token is not valid yet (nbf)"));
        }
        let user = UserId::parse(&claims.sub)
            .map_err(|_| Error::InvalidToken("sub is not a valid user id"))?;
        Ok(Identity {
            user,
            expires_at: Some(claims.exp),
            jti: claims.jti,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<UserId> {
        self.inspect(token).map(|(user, _)| user)
    }

    async fn identify(&self, token: &str) -> Result<Identity> {
        self.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ed25519 key pair made with `openssl genpkey -algorithm ed25519`
    /// for these tests only.
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKOnDN+cuhetJGDi+k0Lbq3gA2+UpuT6xnnkJat4zxBh
-----END PRIVATE KEY-----
";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJoVx/QGhU1L89v0v7S7iK0eFklcrkeDtbhXQUu6grXg=
-----END PUBLIC KEY-----
";
    const NOW: u64 = 1_800_000_000;

    fn clock() -> Clock {
        Clock::manual(NOW * 1000)
    }

    /// A token as another team's backend would mint it.
    fn foreign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("encode")
    }

    #[test]
    fn hs256_tokens_minted_here_or_elsewhere_log_in() {
        let clock = clock();
        let auth = JwtAuthenticator::hs256("s3cret", clock.clone()).expect("key");
        let alice = UserId::from("alice");
        let token = auth.mint(&alice, 60).expect("mint");
        assert_eq!(
            auth.inspect(&token).expect("valid"),
            (alice.clone(), NOW + 60)
        );
        let key = EncodingKey::from_secret(b"s3cret").expect("key");
        let other = foreign(
            Algorithm::HS256,
            &key,
            serde_json::json!({"sub": "bob", "exp": NOW + 600}),
        );
        assert_eq!(auth.inspect(&other).expect("valid").0, UserId::from("bob"));
        // Another secret, a tampered token, a missing claim, junk.
        let wrong = JwtAuthenticator::hs256("other", clock.clone()).expect("key");
        assert!(matches!(wrong.inspect(&token), Err(Error::InvalidToken(_))));
        let no_exp = foreign(Algorithm::HS256, &key, serde_json::json!({"sub": "bob"}));
        assert!(matches!(auth.inspect(&no_exp), Err(Error::InvalidToken(_))));
        for junk in ["", "a.b.c", "eyJ.eyJ.x"] {
            assert!(auth.inspect(junk).is_err(), "{junk:?}");
        }
        // The older format still logs in.
        let legacy = HmacAuthenticator::with_clock("s3cret", clock.clone()).mint(&alice, 60);
        assert_eq!(auth.inspect(&legacy).expect("v1").0, alice);
        // Expiry, with no grace.
        clock.advance_ms(60_000);
        assert!(matches!(
            auth.inspect(&token),
            Err(Error::TokenExpired { .. })
        ));
    }

    #[test]
    fn time_claims_and_audience_are_enforced() {
        let auth = JwtAuthenticator::hs256("k", clock()).expect("key");
        let key = EncodingKey::from_secret(b"k").expect("key");
        let claims = |v: serde_json::Value| foreign(Algorithm::HS256, &key, v);
        let too_long = claims(serde_json::json!({"sub": "a", "exp": NOW + 31 * 86_400}));
        assert!(matches!(
            auth.inspect(&too_long),
            Err(Error::InvalidToken(_))
        ));
        let early = claims(serde_json::json!({"sub": "a", "exp": NOW + 600, "nbf": NOW + 300}));
        assert!(matches!(auth.inspect(&early), Err(Error::InvalidToken(_))));
        let skewed = claims(serde_json::json!({"sub": "a", "exp": NOW + 600, "nbf": NOW + 30}));
        assert!(auth.inspect(&skewed).is_ok(), "within the nbf leeway");
        let bad_sub = claims(serde_json::json!({"sub": "no spaces", "exp": NOW + 600}));
        assert!(auth.inspect(&bad_sub).is_err());
        let aud = auth.clone().with_audience("chat");
        let for_chat = claims(serde_json::json!({"sub": "a", "exp": NOW + 600, "aud": "chat"}));
        let for_other = claims(serde_json::json!({"sub": "a", "exp": NOW + 600, "aud": "shop"}));
        let for_none = claims(serde_json::json!({"sub": "a", "exp": NOW + 600}));
        assert!(aud.inspect(&for_chat).is_ok());
        assert!(aud.inspect(&for_other).is_err());
        assert!(
            aud.inspect(&for_none).is_err(),
            "aud is required once configured"
        );
    }

    #[test]
    fn eddsa_tokens_are_checked_with_the_public_key_alone() {
        let auth = JwtAuthenticator::public_key(JwtAlgorithm::EdDsa, ED_PUBLIC.as_bytes(), clock())
            .expect("public key");
        assert!(!auth.can_mint());
        assert!(auth.mint(UserId::from("a"), 60).is_err());
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("private key");
        let token = foreign(
            Algorithm::EdDSA,
            &key,
            serde_json::json!({"sub": "carol", "exp": NOW + 600, "jti": "x1"}),
        );
        assert_eq!(
            auth.inspect(&token).expect("valid").0,
            UserId::from("carol")
        );
        // An HS256 token (for instance signed with the public key's bytes
        // as a secret) is refused: the algorithm is fixed.
        let confused = foreign(
            Algorithm::HS256,
            &EncodingKey::from_secret(ED_PUBLIC.as_bytes()).expect("key"),
            serde_json::json!({"sub": "carol", "exp": NOW + 600}),
        );
        assert!(auth.inspect(&confused).is_err());
        assert!(
            auth.inspect("v1.YQ.1.x").is_err(),
            "no legacy tokens without the secret"
        );
        assert!(JwtAuthenticator::public_key(JwtAlgorithm::Rs256, b"not a key", clock()).is_err());
    }
}
