//! Tokens: short-lived JWT access tokens and opaque, rotating refresh tokens.
//!
//! An access token (HS256, key derived from the master key) names the user, their role
//! and their session; it is checked against the session on every request, so logging
//! out takes effect at once rather than when the token expires.
//!
//! A refresh token is `rt1.<session>.<generation>.<secret>`: the store keeps only a hash
//! of the secret and which generation is current (see `store::sessions`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Role, StoreError};

const ISSUER: &str = "burnbox";
const REFRESH_PREFIX: &str = "rt1";
/// Random bytes in a refresh token's secret: 256 bits, unguessable.
const SECRET_BYTES: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id (JWT wants a string).
    sub: String,
    role: RoleClaim,
    /// The session (refresh-token family) the token was issued for.
    sid: u64,
    iat: i64,
    exp: i64,
    iss: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RoleClaim {
    Admin,
    User,
    Guest,
}

impl From<Role> for RoleClaim {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::User => Self::User,
            Role::Guest => Self::Guest,
        }
    }
}

impl From<RoleClaim> for Role {
    fn from(role: RoleClaim) -> Self {
        match role {
            RoleClaim::Admin => Self::Admin,
            RoleClaim::User => Self::User,
            RoleClaim::Guest => Self::Guest,
        }
    }
}

/// What a valid access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: u64,
    pub role: Role,
    pub session_id: u64,
}

/// Signs and checks access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    /// `secret` is a 256-bit key derived from the master key for this purpose only.
    pub fn new(secret: &[u8; 32]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Our own server issues and checks; clocks agree, so no grace period.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(
        &self,
        claims: AccessClaims,
        now_unix: i64,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let claims = Claims {
            sub: claims.user_id.to_string(),
            role: claims.role.into(),
            sid: claims.session_id,
            iat: now_unix,
            exp: now_unix.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| StoreError::Crypto(format!("cannot sign an access token: {e}")))
    }

    /// The claims of a token this server signed and that has not expired; `None` for
    /// anything else (forged, altered, expired, another algorithm, garbage).
    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        Some(AccessClaims {
            user_id: data.claims.sub.parse().ok()?,
            role: data.claims.role.into(),
            session_id: data.claims.sid,
        })
    }
}

/// A refresh token's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub session_id: u64,
    pub generation: u64,
    secret: [u8; SECRET_BYTES],
}

impl RefreshToken {
    /// A fresh token for `generation` of `session_id`.
    pub fn generate(session_id: u64, generation: u64) -> Result<Self, StoreError> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|_| StoreError::Crypto("no randomness".into()))?;
        Ok(Self {
            session_id,
            generation,
            secret,
        })
    }

    /// The hash the store keeps instead of the secret. A plain SHA-256 suffices: the
    /// secret is 256 random bits, so there is nothing to brute-force.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }

    pub fn encode(&self) -> String {
        format!(
            "{REFRESH_PREFIX}.{}.{}.{}",
            self.session_id,
            self.generation,
            URL_SAFE_NO_PAD.encode(self.secret)
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        if parts.next()? != REFRESH_PREFIX {
            return None;
        }
        let session_id = parts.next()?.parse().ok()?;
        let generation = parts.next()?.parse().ok()?;
        let secret = URL_SAFE_NO_PAD
            .decode(parts.next()?)
            .ok()?
            .try_into()
            .ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            session_id,
            generation,
            secret,
        })
    }

    /// The same secret, for the session it turned out to belong to (a first token is
    /// generated before its session exists, so the session can store its hash).
    pub fn for_session(self, session_id: u64) -> Self {
        Self { session_id, ..self }
    }

    /// This token's session with the next generation and a new secret; `None` for a
    /// generation no session reaches (only a forged token names it).
    pub fn next(&self) -> Option<Result<Self, StoreError>> {
        let generation = self.generation.checked_add(1)?;
        Some(Self::generate(self.session_id, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMS: AccessClaims = AccessClaims {
        user_id: 42,
        role: Role::User,
        session_id: 7,
    };

    #[test]
    fn access_tokens_verify_only_when_ours_and_fresh() {
        let keys = TokenKeys::new(&[1; 32]);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = keys.issue(CLAIMS, now, Duration::from_secs(900)).unwrap();
        assert_eq!(keys.verify(&token), Some(CLAIMS));
        assert_eq!(TokenKeys::new(&[2; 32]).verify(&token), None, "another key");
        let expired = keys
            .issue(CLAIMS, now - 1000, Duration::from_secs(900))
            .unwrap();
        assert_eq!(keys.verify(&expired), None);
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'A');
        assert_eq!(keys.verify(&tampered), None);
        assert_eq!(keys.verify("not.a.jwt"), None);
        assert_eq!(keys.verify(""), None);
        // "alg": "none" with the same claims is refused.
        let payload = token.split('.').nth(1).unwrap();
        let unsigned = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(keys.verify(&unsigned), None);
    }

    #[test]
    fn refresh_tokens_round_trip_and_reject_garbage() {
        let token = RefreshToken::generate(5, 1).unwrap();
        let text = token.encode();
        assert!(text.starts_with("rt1.5.1."));
        assert_eq!(RefreshToken::parse(&text), Some(token.clone()));
        let next = token.next().unwrap().unwrap();
        assert_ne!(next.secret_hash(), token.secret_hash());
        assert_eq!(next.generation, 2);
        let last = RefreshToken::generate(5, u64::MAX).unwrap();
        assert!(last.next().is_none(), "no generation after the last");
        for bad in [
            "",
            "rt1",
            "rt2.5.1.AAAA",
            "rt1.x.1.AAAA",
            "rt1.5.1.short",
            &format!("{text}.extra"),
        ] {
            assert_eq!(RefreshToken::parse(bad), None, "{bad}");
        }
    }
}
