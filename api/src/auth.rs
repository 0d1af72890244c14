//! Bearer tokens: JWTs signed with HS256 (shared secret) or RS256 (public key), carrying the
//! caller's id in `sub` and its roles in `roles`.
//!
//! A token is verified only with the key of the algorithm its header names, and only if that
//! algorithm is configured: a token claiming `none`, or HS256 "signed" with the RSA public key,
//! never verifies.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::JwtConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Writes products and stock.
    CatalogAdmin,
    /// Places orders and reads its own.
    Customer,
    /// Reads every order, for support staff.
    Operator,
}

impl Role {
    /// The role's name in the `roles` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::CatalogAdmin => "catalog_admin",
            Role::Customer => "customer",
            Role::Operator => "operator",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Role::CatalogAdmin, Role::Customer, Role::Operator]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// The verified caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: a customer's id for customers.
    pub subject: String,
    /// Known roles of the token (unknown names are ignored).
    pub roles: BTreeSet<Role>,
}

impl Principal {
    /// True when the caller holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Ok when the caller holds one of `roles`, else 403.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.has(*r)) {
            return Ok(());
        }
        let names: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "this needs one of the roles {}",
            names.join(", ")
        )))
    }

    /// True when the caller may see what belongs to `customer_id`.
    pub fn may_read_customer(&self, customer_id: &str) -> bool {
        self.has(Role::Operator) || (self.has(Role::Customer) && self.subject == customer_id)
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Why the verifier could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The public key file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The public key is not an RSA public key in PEM.
    #[error("{path} is not an RSA public key in PEM: {source}")]
    BadKey {
        /// The file.
        path: String,
        /// Why.
        source: jsonwebtoken::errors::Error,
    },
    /// An HS256 secret that short can be brute-forced.
    #[error("the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes")]
    WeakSecret,
}

/// Verifies bearer tokens against the configured keys.
#[derive(Clone)]
pub struct Verifier {
    hs256: Option<Arc<DecodingKey>>,
    rs256: Option<Arc<DecodingKey>>,
    // Shared: the verifier is cloned with the state into every request.
    config: Arc<JwtConfig>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for the keys in `config`; with none, every token is refused.
    pub fn new(config: &JwtConfig) -> Result<Self, AuthConfigError> {
        let hs256 = match &config.hs256_secret {
            Some(secret) if secret.len() < MIN_HS256_SECRET_BYTES => {
                return Err(AuthConfigError::WeakSecret);
            }
            Some(secret) => Some(Arc::new(DecodingKey::from_secret(secret.as_bytes()))),
            None => None,
        };
        let rs256 = match &config.rs256_public_key_file {
            Some(path) => {
                let shown = path.display().to_string();
                let pem = std::fs::read(path).map_err(|source| AuthConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                let key =
                    DecodingKey::from_rsa_pem(&pem).map_err(|source| AuthConfigError::BadKey {
                        path: shown,
                        source,
                    })?;
                Some(Arc::new(key))
            }
            None => None,
        };
        if hs256.is_none() && rs256.is_none() {
            tracing::warn!(
                "no JWT key configured (api.jwt.hs256_secret or api.jwt.rs256_public_key_file): \
                 only public endpoints can be used"
            );
        }
        Ok(Self {
            hs256,
            rs256,
            config: Arc::new(config.clone()),
        })
    }

    /// The caller a token proves, or why it proves nothing.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let unauthorized = |why: &str| ApiError::Unauthorized(format!("invalid token: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| unauthorized("algorithm not accepted"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &self.config.issuer {
            validation.set_issuer(&[iss]);
        }
        match &self.config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => unauthorized("expired"),
                ErrorKind::ImmatureSignature => unauthorized("not yet valid"),
                ErrorKind::InvalidSignature => unauthorized("bad signature"),
                ErrorKind::InvalidIssuer => unauthorized("wrong issuer"),
                ErrorKind::InvalidAudience => unauthorized("wrong audience"),
                ErrorKind::MissingRequiredClaim(c) => unauthorized(&format!("missing claim {c}")),
                _ => unauthorized("rejected"),
            }
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > 64 {
            return Err(unauthorized("sub must be 1 to 64 characters"));
        }
        Ok(Principal {
            subject: claims.sub,
            roles: claims.roles.iter().filter_map(|r| Role::parse(r)).collect(),
        })
    }
}

/// Shortest HS256 secret the edge accepts, in bytes: a shorter one can be brute-forced.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Why a token could not be minted; all are mistakes of the caller, none is retried.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The secret is shorter than the edge would accept.
    #[error("the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes")]
    WeakSecret,
    /// A role the edge does not know (it would ignore it, leaving the token without it).
    #[error("unknown role {0:?}; known roles: catalog_admin, customer, operator")]
    UnknownRole(String),
    /// Signing failed.
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Signs an HS256 token for `subject` with `roles`, valid for `ttl_seconds`: for development
/// and tests against an edge configured with the same secret. Refuses what the edge would
/// refuse or ignore: a secret it would not start with, and unknown roles.
pub fn mint_hs256(
    secret: &str,
    subject: &str,
    roles: &[String],
    ttl_seconds: u64,
) -> Result<String, MintError> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(MintError::WeakSecret);
    }
    if let Some(unknown) = roles.iter().find(|r| Role::parse(r).is_none()) {
        return Err(MintError::UnknownRole(unknown.clone()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "sub": subject,
        "roles": roles,
        "iat": now,
        "exp": now + ttl_seconds,
    });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("expected `Authorization: Bearer <jwt>`".into())
            })?;
        state.verifier.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> Verifier {
        Verifier::new(&JwtConfig {
            hs256_secret: Some(SECRET.into()),
            ..JwtConfig::default()
        })
        .expect("verifier")
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    #[test]
    fn minting_refuses_unknown_roles_and_weak_secrets() {
        let roles = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(matches!(
            mint_hs256(SECRET, "c-1", &roles(&["customer", "astronaut"]), 60),
            Err(MintError::UnknownRole(r)) if r == "astronaut"
        ));
        assert!(matches!(
            mint_hs256("short-secret", "c-1", &roles(&["customer"]), 60),
            Err(MintError::WeakSecret)
        ));
        let secret_31 = "x".repeat(MIN_HS256_SECRET_BYTES - 1);
        assert!(matches!(
            mint_hs256(&secret_31, "c-1", &roles(&["customer"]), 60),
            Err(MintError::WeakSecret)
        ));
        let secret_32 = "x".repeat(MIN_HS256_SECRET_BYTES);
        assert!(
            mint_hs256(
                &secret_32,
                "c-1",
                &roles(&["catalog_admin", "operator"]),
                60
            )
            .is_ok()
        );
    }

    #[test]
    fn minted_tokens_verify() {
        let t = mint_hs256(SECRET, "ops-1", &["operator".to_owned()], 60).expect("mint");
        let p = verifier().verify(&t).expect("valid");
        assert_eq!(p.subject, "ops-1");
        assert!(p.has(Role::Operator));
    }

    #[test]
    fn a_valid_token_gives_subject_and_known_roles() {
        let t = token(
            json!({"sub": "c-1", "roles": ["customer", "astronaut"], "exp": now() + 60}),
            SECRET,
        );
        let p = verifier().verify(&t).expect("valid");
        assert_eq!(p.subject, "c-1");
        assert_eq!(p.roles, BTreeSet::from([Role::Customer]));
        assert!(p.may_read_customer("c-1"));
        assert!(!p.may_read_customer("c-2"));
        assert!(p.require_any(&[Role::CatalogAdmin]).is_err());
    }

    #[test]
    fn expired_forged_unsigned_and_claimless_tokens_are_refused() {
        let v = verifier();
        let expired = token(json!({"sub": "c", "exp": now() - 120}), SECRET);
        let forged = token(
            json!({"sub": "c", "exp": now() + 60}),
            "another-secret-of-32-bytes-or-more!!",
        );
        let no_exp = token(json!({"sub": "c"}), SECRET);
        // alg "none": header and claims with an empty signature.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let unsigned = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(r#"{{"sub":"c","exp":{}}}"#, now() + 60))
        );
        for bad in [expired, forged, no_exp, unsigned, "garbage".to_owned()] {
            let err = v.verify(&bad).expect_err("must be refused");
            assert!(matches!(err, ApiError::Unauthorized(_)), "{err:?}");
        }
    }

    #[test]
    fn short_secrets_are_refused_and_no_key_refuses_every_token() {
        assert!(matches!(
            Verifier::new(&JwtConfig {
                hs256_secret: Some("short".into()),
                ..JwtConfig::default()
            }),
            Err(AuthConfigError::WeakSecret)
        ));
        let keyless = Verifier::new(&JwtConfig::default()).expect("keyless verifier");
        let t = token(json!({"sub": "c", "exp": now() + 60}), SECRET);
        assert!(matches!(keyless.verify(&t), Err(ApiError::Unauthorized(_))));
    }
}
