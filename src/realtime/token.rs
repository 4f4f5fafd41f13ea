//! The JWTs a bot joins Realtime channels with, and when to refresh them.
//!
//! With the project's JWT secret, chatctl mints a short-lived token per bot user (`role`
//! `authenticated`, `sub` the bot's user id), so Realtime applies the bot's own RLS and the
//! bot hears only the channels it may read; it is refreshed on the open channels before it
//! expires. Without the secret, every bot uses the service-role key (read through RLS's
//! bypass), which the server checks for expiry too: its `exp` is read to warn in time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Where tokens come from.
#[derive(Clone)]
pub enum Tokens {
    /// Minted per bot user with the project's JWT secret (HS256).
    Minted { secret: String, ttl: Duration },
    /// One key for every bot.
    Fixed(String),
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokens::Minted { ttl, .. } => {
                write!(f, "Tokens::Minted {{ ttl: {ttl:?}, secret: *** }}")
            }
            Tokens::Fixed(_) => f.write_str("Tokens::Fixed(***)"),
        }
    }
}

/// A token and when it must be replaced.
#[derive(Clone)]
pub struct Token {
    pub jwt: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// When to push a fresh one (None: never, it cannot be refreshed).
    pub refresh_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    aud: String,
    iss: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Deserialize)]
struct ExpiryOnly {
    exp: Option<i64>,
}

impl Tokens {
    /// A token for `user`, issued at `now`.
    pub fn issue(&self, user: Uuid, now: DateTime<Utc>) -> Result<Token> {
        match self {
            Tokens::Minted { secret, ttl } => {
                let ttl_s = ttl.as_secs().max(1) as i64;
                let claims = Claims {
                    sub: user.to_string(),
                    role: "authenticated".into(),
                    aud: "authenticated".into(),
                    iss: "chatctl".into(),
                    iat: now.timestamp(),
                    exp: now.timestamp() + ttl_s,
                };
                let jwt = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
                .map_err(|e| Error::failed(format!("cannot sign a Realtime token: {e}")))?;
                crate::error::register_secret(&jwt);
                let expires_at = DateTime::from_timestamp(claims.exp, 0);
                // Refresh with a fifth of the lifetime left.
                let refresh_at = DateTime::from_timestamp(claims.exp - (ttl_s / 5).max(1), 0);
                Ok(Token {
                    jwt,
                    expires_at,
                    refresh_at,
                })
            }
            Tokens::Fixed(key) => Ok(Token {
                jwt: key.clone(),
                expires_at: expiry_of(key),
                refresh_at: None,
            }),
        }
    }
}

/// The `exp` claim of a JWT, unverified (the server verifies; we only plan ahead).
pub fn expiry_of(jwt: &str) -> Option<DateTime<Utc>> {
    let mut v = jsonwebtoken::Validation::default();
    v.insecure_disable_signature_validation();
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<ExpiryOnly>(jwt, &jsonwebtoken::DecodingKey::from_secret(&[]), &v)
            .ok()?;
    data.claims.exp.and_then(|e| DateTime::from_timestamp(e, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_with_the_secret_and_refresh_before_expiry() {
        let tokens = Tokens::Minted {
            secret: "test-secret-with-enough-bytes-0123456789".into(),
            ttl: Duration::from_secs(3600),
        };
        let user = Uuid::new_v4();
        let now = Utc::now();
        let t = tokens.issue(user, now).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_audience(&["authenticated"]);
        let claims = jsonwebtoken::decode::<Claims>(
            &t.jwt,
            &jsonwebtoken::DecodingKey::from_secret(b"test-secret-with-enough-bytes-0123456789"),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(claims.role, "authenticated");
        let (exp, refresh) = (t.expires_at.unwrap(), t.refresh_at.unwrap());
        assert!(refresh < exp && refresh > now);
        assert_eq!(expiry_of(&t.jwt), Some(exp));
    }

    #[test]
    fn a_fixed_key_is_never_refreshed_and_a_non_jwt_key_has_no_expiry() {
        let t = Tokens::Fixed("sb_secret_abc".into())
            .issue(Uuid::nil(), Utc::now())
            .unwrap();
        assert!(t.refresh_at.is_none() && t.expires_at.is_none());
    }
}
