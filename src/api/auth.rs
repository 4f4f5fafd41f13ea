//! Who a request comes from: a Supabase access token, verified as Supabase Auth signs it.
//!
//! A project signs with its JWT secret (HS256, the legacy default) or with asymmetric signing
//! keys (ES256 or RS256) whose public halves it publishes as a JWKS at
//! `/auth/v1/.well-known/jwks.json`. [`Verifier`] takes either: the secret, and the JWKS
//! fetched on first use, cached, fetched again every [`JWKS_MAX_AGE`] and whenever a token
//! names a key it does not know (a rotation), at most once per [`JWKS_MIN_REFETCH`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::Result;

/// How long fetched keys are trusted before they are fetched again.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// How soon an unknown key id may fetch the keys again (so garbage tokens cannot hammer the
/// project).
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(5);

/// A verified signed-in user: their id and the token's claims, as PostgREST hands them to
/// the database (`request.jwt.claims`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub claims: serde_json::Value,
}

/// Why a token was refused (the 401's message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The claims every token must have; the rest is passed on as it is.
#[derive(Debug, Deserialize)]
struct Required {
    sub: Uuid,
    role: String,
}

/// Verifies access tokens with the project's secret and/or its published keys.
pub struct Verifier {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
}

struct Jwks {
    url: url::Url,
    client: reqwest::Client,
    keys: tokio::sync::RwLock<Keys>,
    /// Held while fetching, so concurrent misses fetch once.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

impl Verifier {
    /// A verifier of tokens signed with `secret` (HS256) or by the keys published at `jwks`.
    pub fn new(secret: Option<&str>, jwks: Option<url::Url>) -> Verifier {
        Verifier {
            secret: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks: jwks.map(|url| Jwks {
                url,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("a reqwest client builds"),
                keys: Default::default(),
                fetching: Default::default(),
            }),
        }
    }

    /// The signed-in user `token` belongs to, or why it is refused.
    pub async fn verify(&self, token: &str) -> std::result::Result<Caller, Refused> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refused(format!("the access token is not a JWT: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.clone().ok_or_else(|| {
                Refused(
                    "HS256 tokens are not accepted: the project's JWT secret is not configured"
                        .into(),
                )
            })?,
            Algorithm::ES256 | Algorithm::RS256 | Algorithm::EdDSA => {
                let jwks = self.jwks.as_ref().ok_or_else(|| {
                    Refused(format!(
                        "{:?} tokens are not accepted: no JWKS is configured",
                        header.alg
                    ))
                })?;
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| Refused("the access token names no key (kid)".into()))?;
                let (key, alg) = jwks.key(kid).await?;
                if alg != header.alg {
                    return Err(Refused(format!(
                        "key {kid} is a {alg:?} key, the token says {:?}",
                        header.alg
                    )));
                }
                key
            }
            other => return Err(Refused(format!("{other:?} tokens are not accepted"))),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&["authenticated"]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| Refused(format!("the access token is not valid: {e}")))?
            .claims;
        let required = Required::deserialize(&claims)
            .map_err(|e| Refused(format!("the access token is not a user's: {e}")))?;
        if required.role != "authenticated" {
            return Err(Refused("the access token is not a signed-in user's".into()));
        }
        Ok(Caller {
            user_id: required.sub,
            claims,
        })
    }
}

impl Jwks {
    /// The key `kid`: from the cache while it is fresh, else fetched again.
    async fn key(&self, kid: &str) -> std::result::Result<(DecodingKey, Algorithm), Refused> {
        {
            let keys = self.keys.read().await;
            let fresh = keys.fetched.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE);
            if let (true, Some(k)) = (fresh, keys.by_kid.get(kid)) {
                return Ok(k.clone());
            }
        }
        let _one = self.fetching.lock().await;
        let recently = {
            let keys = self.keys.read().await;
            if let Some(k) = keys.by_kid.get(kid)
                && keys.fetched.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE)
            {
                return Ok(k.clone());
            }
            keys.fetched.is_some_and(|t| t.elapsed() < JWKS_MIN_REFETCH)
        };
        if !recently {
            match self.fetch().await {
                Ok(by_kid) => {
                    *self.keys.write().await = Keys {
                        by_kid,
                        fetched: Some(Instant::now()),
                    };
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %format!("{e:#}"), "cannot fetch the project's signing keys");
                }
            }
        }
        self.keys
            .read()
            .await
            .by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| {
                Refused(format!(
                    "the access token is signed by an unknown key ({kid})"
                ))
            })
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let set: jsonwebtoken::jwk::JwkSet = self
            .client
            .get(self.url.clone())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            use jsonwebtoken::jwk::{AlgorithmParameters as P, KeyAlgorithm as K};
            // The key's declared algorithm, else the one its type implies.
            let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(K::ES256), _) | (None, P::EllipticCurve(_)) => Algorithm::ES256,
                (Some(K::RS256), _) | (None, P::RSA(_)) => Algorithm::RS256,
                (Some(K::EdDSA), _) | (None, P::OctetKeyPair(_)) => Algorithm::EdDSA,
                _ => continue,
            };
            by_kid.insert(kid.clone(), (key, alg));
        }
        Ok(by_kid)
    }
}

/// The project's JWT secret: `supabase.jwt_secret` (SUPABASE_JWT_SECRET), else, on the
/// embedded default, the local cluster's own (`jwt-secret` in the data directory, made on
/// first use), so `chatctl dev token` and `chatctl serve` agree without any setting.
pub fn project_secret(config: &crate::config::Config) -> Result<Option<String>> {
    if let Some(s) = config.supabase_jwt_secret() {
        return Ok(Some(s.to_owned()));
    }
    if config.database_url().is_some() {
        return Ok(None);
    }
    let path = config.data_dir().join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(Some(s.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!("cannot read {}", path.display())));
        }
    }
    use rand::Rng as _;
    let secret: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    crate::owner_only::create_dir_all(&config.data_dir())?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{secret}")?;
        f.sync_all()?;
    }
    // Two first uses at once: the first link wins (a link never replaces a file), and both
    // read the winner's.
    let _ = std::fs::hard_link(&tmp, &path);
    std::fs::remove_file(&tmp)?;
    Ok(Some(std::fs::read_to_string(&path)?.trim().to_owned()))
}

/// A token for `user` signed with `secret`, as Supabase Auth mints one (for `chatctl dev
/// token` and tests): HS256, `aud` and `role` `authenticated`, valid for `ttl`.
pub fn mint(secret: &str, user: Uuid, email: Option<&str>, ttl: Duration) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "chatctl",
        "sub": user,
        "aud": "authenticated",
        "role": "authenticated",
        "email": email,
        "aal": "aal1",
        "iat": now,
        "exp": now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        "session_id": Uuid::new_v4(),
        "is_anonymous": false,
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// A minted token and whose it is.
#[derive(Debug, serde::Serialize)]
pub struct Minted {
    pub token: String,
    pub user_id: Uuid,
    pub username: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A token for the user `who` (e-mail address, username or id), signed with `secret`.
pub async fn mint_for(
    pool: &sqlx::PgPool,
    secret: &str,
    who: &str,
    ttl: Duration,
) -> Result<Minted> {
    let (user_id, username) = crate::search::find_user(pool, who).await?;
    let email: Option<String> = sqlx::query_scalar("select email from public.users where id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await?;
    Ok(Minted {
        token: mint(secret, user_id, email.as_deref(), ttl)?,
        user_id,
        username,
        expires_at: chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
    })
}
