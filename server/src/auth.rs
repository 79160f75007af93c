//! Who a request is: static bearer tokens (development, service accounts)
//! and JWTs from an identity provider.
//!
//! A JWT is verified with keys the operator configured (an HS256 secret, an
//! RS256/ES256 PEM public key, or a JWKS file), never with a key the token
//! names or carries (`jwk`, `jku` headers are ignored). Every key is pinned
//! to one algorithm: a token whose header names another is refused, so an
//! RSA public key can never be used as an HMAC secret, and `alg: none` is
//! refused for every key. `exp` is required, `exp` and `nbf` are checked
//! with a small leeway, the namespace comes from a configurable claim, the
//! user from `sub`.
//!
//! The whole table (static tokens and JWT keys) is swapped at once on
//! reload (SIGHUP), so a request sees either the old or the new one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

/// What a static token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The namespace.
    pub namespace: String,
    /// Pull and WebSocket only; pushes answer `403 FORBIDDEN`.
    pub read_only: bool,
}

impl From<&str> for TokenGrant {
    fn from(namespace: &str) -> Self {
        TokenGrant {
            namespace: namespace.to_string(),
            read_only: false,
        }
    }
}

impl PartialEq<&str> for TokenGrant {
    fn eq(&self, other: &&str) -> bool {
        self.namespace == *other && !self.read_only
    }
}

/// Who a bearer token is.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The namespace the token grants.
    pub namespace: String,
    /// A stable, non-secret id of the user: stored as the owner of the
    /// clientIds it first pushes with, and the key of its rate limit. For a
    /// static token a hash of the token; for a JWT a hash of its `sub`.
    pub owner: Arc<str>,
    /// Pushes are refused (`403 FORBIDDEN`).
    pub read_only: bool,
    /// Unix time (s) after which the token is refused (a JWT's `exp` plus
    /// the leeway); `None` for static tokens. Open WebSockets close with
    /// 4401 then.
    pub expires_at: Option<u64>,
}

/// The owner id of a static token.
pub fn owner_id(token: &str) -> String {
    hash16(&format!("syncstore-owner:{token}"))
}

/// The owner id of a JWT user (its `sub`). Never equal to a static
/// token's (another prefix).
pub fn user_owner_id(sub: &str) -> String {
    hash16(&format!("syncstore-user:{sub}"))
}

fn hash16(s: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(s.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// How JWT claims map to a user, besides the keys.
#[derive(Debug, Clone)]
pub struct JwtRules {
    /// Claim holding the namespace (a top-level claim; the name may contain
    /// dots or slashes, e.g. `https://example.com/ns`).
    pub namespace_claim: String,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Accepted `aud` values (any of them); empty = `aud` not checked.
    pub audience: Vec<String>,
    /// Accepted `iss` values; empty = `iss` not checked.
    pub issuer: Vec<String>,
    /// If set, a token may push only if its `scope` (space-separated),
    /// `scp` or `permissions` claim contains this value; otherwise it is
    /// read-only. `ro: true` makes a token read-only in any case.
    pub write_scope: Option<String>,
}

impl Default for JwtRules {
    fn default() -> Self {
        JwtRules {
            namespace_claim: "ns".into(),
            leeway_s: 30,
            audience: Vec::new(),
            issuer: Vec::new(),
            write_scope: None,
        }
    }
}

/// A verification key, pinned to one algorithm.
struct JwtKey {
    /// The JWKS `kid`; `None` for a key from a file (matches any token).
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Why a JWT key configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key or JWKS could not be parsed.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> KeyError {
    KeyError::Invalid(msg.into())
}

/// The algorithms a key file may be pinned to.
pub const FILE_ALGORITHMS: [&str; 3] = ["HS256", "RS256", "ES256"];

/// Smallest HS256 secret accepted (RFC 7518 3.2: at least the hash size).
pub const MIN_HS256_SECRET: usize = 32;

/// JWT verification: keys and rules.
pub struct Jwt {
    keys: Vec<JwtKey>,
    rules: JwtRules,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("keys", &self.keys.len())
            .field("rules", &self.rules)
            .finish()
    }
}

/// Why a JWT was refused (logged at debug level; the client only gets 401).
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Signature, algorithm, format, `exp`, `nbf`, `aud`, `iss`.
    #[error("{0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// No configured key has the token's `kid` (or the token has none and
    /// several keys are configured).
    #[error("no key for kid {0:?}")]
    UnknownKey(Option<String>),
    /// A claim is missing or malformed.
    #[error("claim {0}: {1}")]
    Claim(String, &'static str),
}

fn install_crypto() {
    // Exactly one backend is compiled in, so this is what jsonwebtoken
    // would infer; installing it makes the choice explicit.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

impl Jwt {
    /// Verification with one key from a file, pinned to `alg`: HS256 reads
    /// the file as the secret (one trailing newline ignored, at least 32
    /// bytes), RS256/ES256 as a PEM public key.
    pub fn from_key_file(alg: &str, bytes: &[u8], rules: JwtRules) -> Result<Jwt, KeyError> {
        install_crypto();
        let alg: Algorithm = match alg.to_ascii_uppercase().as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(invalid(format!(
                    "--jwt-alg {other}: expected one of {}",
                    FILE_ALGORITHMS.join(", ")
                )))
            }
        };
        let key = match alg {
            Algorithm::HS256 => {
                let secret = bytes
                    .strip_suffix(b"\n")
                    .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
                    .unwrap_or(bytes);
                if secret.len() < MIN_HS256_SECRET {
                    return Err(invalid(format!(
                        "the HS256 secret must be at least {MIN_HS256_SECRET} bytes"
                    )));
                }
                DecodingKey::from_secret(secret)
            }
            Algorithm::RS256 => DecodingKey::from_rsa_pem(bytes),
            _ => DecodingKey::from_ec_pem(bytes),
        }
        .map_err(|e| invalid(format!("cannot read the {alg:?} key: {e}")))?;
        Ok(Jwt {
            keys: vec![JwtKey {
                kid: None,
                alg,
                key,
            }],
            rules,
        })
    }

    /// Verification with the public keys of a JWKS document. Each key is
    /// pinned to its `alg`, or (without one) to the usual algorithm of its
    /// type: RSA -> RS256, EC P-256 -> ES256, P-384 -> ES384, Ed25519 ->
    /// EdDSA. Symmetric (`oct`) keys and keys for encryption are skipped.
    pub fn from_jwks(json: &[u8], rules: JwtRules) -> Result<Jwt, KeyError> {
        install_crypto();
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| invalid(format!("not a JWKS: {e}")))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone();
            let skip = |why: &str| {
                tracing::warn!(kid = ?kid, "JWKS: skipping a key: {why}");
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                skip("use is enc");
                continue;
            }
            let default_alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => Some(Algorithm::ES256),
                    EllipticCurve::P384 => Some(Algorithm::ES384),
                    _ => None,
                },
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    Some(Algorithm::EdDSA)
                }
                AlgorithmParameters::OctetKey(_) => {
                    skip("symmetric keys are not accepted from a JWKS");
                    continue;
                }
                _ => None,
            };
            let alg = match jwk.common.key_algorithm {
                Some(a) => a.to_string().parse::<Algorithm>().ok(),
                None => default_alg,
            };
            let Some(alg) = alg else {
                skip("unsupported algorithm or curve");
                continue;
            };
            if alg.family() == AlgorithmFamily::Hmac {
                skip("symmetric keys are not accepted from a JWKS");
                continue;
            }
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(k) => k,
                Err(e) => {
                    skip(&e.to_string());
                    continue;
                }
            };
            if key.family() != alg.family() {
                skip("its alg does not match its key type");
                continue;
            }
            keys.push(JwtKey { kid, alg, key });
        }
        if keys.is_empty() {
            return Err(invalid("the JWKS has no usable signing key"));
        }
        Ok(Jwt { keys, rules })
    }

    /// Keys configured.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies a token and maps its claims to a user.
    pub fn verify(&self, token: &str) -> Result<Auth, JwtError> {
        let header = jsonwebtoken::decode_header(token)?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .or_else(|| match self.keys.as_slice() {
                    [only] if only.kid.is_none() => Some(only),
                    _ => None,
                }),
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
        .ok_or_else(|| JwtError::UnknownKey(header.kid.clone()))?;
        // Pinned: a token naming another algorithm than the key's fails here.
        let mut v = Validation::new(key.alg);
        v.leeway = self.rules.leeway_s;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        if self.rules.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.rules.audience);
        }
        if !self.rules.issuer.is_empty() {
            v.set_issuer(&self.rules.issuer);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)?;
        let claims = data.claims;
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(JwtError::Claim("sub".into(), "must be a non-empty string")),
        };
        let ns_claim = &self.rules.namespace_claim;
        let namespace = match claims.get(ns_claim) {
            Some(Value::String(s)) => s,
            None => return Err(JwtError::Claim(ns_claim.clone(), "missing")),
            Some(_) => return Err(JwtError::Claim(ns_claim.clone(), "must be a string")),
        };
        if crate::validate::short_id(ns_claim, namespace).is_err() {
            return Err(JwtError::Claim(
                ns_claim.clone(),
                "must be 1-256 bytes without control characters",
            ));
        }
        // RFC 7519: not accepted *on or after* exp (jsonwebtoken still
        // accepts during the second of exp; open sockets close at exp).
        // A NumericDate may have a fraction (jsonwebtoken accepted it).
        let exp = claims.get("exp").map_or(0, |v| {
            v.as_u64()
                .unwrap_or_else(|| v.as_f64().map_or(0, |f| f.max(0.0) as u64))
        });
        let expires_at = exp.saturating_add(self.rules.leeway_s);
        if jsonwebtoken::get_current_timestamp() >= expires_at {
            return Err(JwtError::Claim("exp".into(), "expired"));
        }
        Ok(Auth {
            namespace: namespace.clone(),
            owner: user_owner_id(sub).into(),
            read_only: self.read_only(&claims),
            expires_at: Some(expires_at),
        })
    }

    fn read_only(&self, claims: &Map<String, Value>) -> bool {
        if claims.get("ro") == Some(&Value::Bool(true)) {
            return true;
        }
        let Some(scope) = &self.rules.write_scope else {
            return false;
        };
        let has = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.split_whitespace().any(|x| x == scope),
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(scope)),
            _ => false,
        };
        !(has(claims.get("scope")) || has(claims.get("scp")) || has(claims.get("permissions")))
    }
}

/// Reads a JWT key or JWKS file into [`Jwt`].
pub fn load_jwt(
    alg: Option<&str>,
    key_file: Option<&Path>,
    jwks_file: Option<&Path>,
    rules: JwtRules,
) -> Result<Option<Jwt>, KeyError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| invalid(format!("cannot read {}: {e}", p.display())))
    };
    match (alg, key_file, jwks_file) {
        (None, None, None) => Ok(None),
        (Some(alg), Some(file), None) => Jwt::from_key_file(alg, &read(file)?, rules)
            .map(Some)
            .map_err(|e| invalid(format!("{}: {e}", file.display()))),
        (None, None, Some(file)) => Jwt::from_jwks(&read(file)?, rules)
            .map(Some)
            .map_err(|e| invalid(format!("{}: {e}", file.display()))),
        (_, Some(_), Some(_)) => Err(invalid("give --jwt-key-file or --jwks-file, not both")),
        (None, Some(_), None) => Err(invalid("--jwt-key-file needs --jwt-alg")),
        (Some(_), None, _) => Err(invalid(
            "--jwt-alg goes with --jwt-key-file (a JWKS names each key's algorithm)",
        )),
    }
}

/// What authenticates: static tokens and JWT verification (read at start
/// and on SIGHUP, see [`crate::config::Cli::auth`]).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Static bearer token -> what it grants.
    pub tokens: HashMap<String, TokenGrant>,
    /// JWT verification, if configured.
    pub jwt: Option<Arc<Jwt>>,
}

/// Static tokens and JWT verification, swapped whole on reload.
#[derive(Debug, Default)]
pub struct AuthTable {
    tokens: HashMap<String, Auth>,
    jwt: Option<Arc<Jwt>>,
}

impl AuthTable {
    /// A table of `tokens` and optionally JWT verification.
    pub fn new(tokens: &HashMap<String, TokenGrant>, jwt: Option<Arc<Jwt>>) -> Self {
        let tokens = tokens
            .iter()
            .map(|(t, g)| {
                let auth = Auth {
                    namespace: g.namespace.clone(),
                    owner: owner_id(t).into(),
                    read_only: g.read_only,
                    expires_at: None,
                };
                (t.clone(), auth)
            })
            .collect();
        AuthTable { tokens, jwt }
    }

    /// True if nothing can authenticate.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }
}

/// The current [`AuthTable`].
#[derive(Debug, Default)]
pub struct Authenticator {
    table: RwLock<Arc<AuthTable>>,
}

impl Authenticator {
    /// Starts with `table`.
    pub fn new(table: AuthTable) -> Self {
        Authenticator {
            table: RwLock::new(Arc::new(table)),
        }
    }

    fn current(&self) -> Arc<AuthTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table (reload).
    pub fn replace(&self, table: AuthTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// Who `token` is: a static token, else a valid JWT; `None` otherwise.
    pub fn authenticate(&self, token: &str) -> Option<Auth> {
        let table = self.current();
        if let Some(a) = table.tokens.get(token) {
            return Some(a.clone());
        }
        let jwt = table.jwt.as_ref()?;
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return None;
        }
        match jwt.verify(token) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::debug!(reason = %e, "JWT refused");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    }

    fn jwt() -> Jwt {
        Jwt::from_key_file("HS256", SECRET, JwtRules::default()).unwrap()
    }

    #[test]
    fn valid_token_maps_claims() {
        let a = jwt()
            .verify(&hs(json!({"sub": "u1", "ns": "team", "exp": now() + 60})))
            .unwrap();
        assert_eq!(a.namespace, "team");
        assert_eq!(&*a.owner, user_owner_id("u1"));
        assert!(!a.read_only);
        assert_eq!(a.expires_at, Some(now() + 60 + 30));
        let a = jwt()
            .verify(&hs(
                json!({"sub": "u1", "ns": "team", "exp": now() + 60, "ro": true}),
            ))
            .unwrap();
        assert!(a.read_only);
        // A NumericDate with a fraction.
        let exp = now() as f64 + 60.5;
        let a = jwt()
            .verify(&hs(json!({"sub": "u1", "ns": "team", "exp": exp})))
            .unwrap();
        assert_eq!(a.expires_at, Some(exp as u64 + 30));
    }

    #[test]
    fn refusals() {
        let j = jwt();
        let t = now();
        for (claims, why) in [
            (json!({"sub": "u", "ns": "n"}), "no exp"),
            (json!({"sub": "u", "ns": "n", "exp": t - 100}), "expired"),
            (
                json!({"sub": "u", "ns": "n", "exp": t - 30}),
                "at exp + leeway",
            ),
            (
                json!({"sub": "u", "ns": "n", "exp": t + 100, "nbf": t + 100}),
                "not yet valid",
            ),
            (json!({"ns": "n", "exp": t + 100}), "no sub"),
            (json!({"sub": "u", "exp": t + 100}), "no ns"),
            (
                json!({"sub": "u", "ns": 5, "exp": t + 100}),
                "ns not a string",
            ),
            (json!({"sub": "u", "ns": "", "exp": t + 100}), "ns empty"),
        ] {
            assert!(j.verify(&hs(claims)).is_err(), "{why}");
        }
        // Within the leeway.
        assert!(j
            .verify(&hs(json!({"sub": "u", "ns": "n", "exp": t - 5})))
            .is_ok());
    }

    #[test]
    fn write_scope() {
        let rules = JwtRules {
            write_scope: Some("sync:write".into()),
            ..JwtRules::default()
        };
        let j = Jwt::from_key_file("HS256", SECRET, rules).unwrap();
        let exp = now() + 60;
        let ro = |c: Value| j.verify(&hs(c)).unwrap().read_only;
        assert!(ro(json!({"sub": "u", "ns": "n", "exp": exp})));
        assert!(ro(
            json!({"sub": "u", "ns": "n", "exp": exp, "scope": "openid sync:read"})
        ));
        assert!(!ro(
            json!({"sub": "u", "ns": "n", "exp": exp, "scope": "openid sync:write"})
        ));
        assert!(!ro(
            json!({"sub": "u", "ns": "n", "exp": exp, "permissions": ["sync:write"]})
        ));
        assert!(ro(
            json!({"sub": "u", "ns": "n", "exp": exp, "scope": "sync:write", "ro": true})
        ));
    }

    #[test]
    fn short_secrets_and_unknown_algorithms_are_refused() {
        assert!(Jwt::from_key_file("HS256", b"short\n", JwtRules::default()).is_err());
        assert!(Jwt::from_key_file("none", SECRET, JwtRules::default()).is_err());
        assert!(Jwt::from_key_file("HS512", SECRET, JwtRules::default()).is_err());
        // A trailing newline is not part of the secret.
        let mut with_nl = SECRET.to_vec();
        with_nl.push(b'\n');
        let j = Jwt::from_key_file("HS256", &with_nl, JwtRules::default()).unwrap();
        assert!(j
            .verify(&hs(json!({"sub": "u", "ns": "n", "exp": now() + 9})))
            .is_ok());
    }

    #[test]
    fn jwks_without_usable_keys_is_refused() {
        let oct =
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "a"}]});
        assert!(Jwt::from_jwks(oct.to_string().as_bytes(), JwtRules::default()).is_err());
        assert!(Jwt::from_jwks(b"{}", JwtRules::default()).is_err());
    }

    #[test]
    fn static_tokens_come_first_and_jwts_need_the_shape() {
        let mut tokens = HashMap::new();
        tokens.insert(
            "static".to_string(),
            TokenGrant {
                namespace: "n".into(),
                read_only: true,
            },
        );
        let a = Authenticator::new(AuthTable::new(&tokens, Some(Arc::new(jwt()))));
        let s = a.authenticate("static").unwrap();
        assert!(s.read_only && s.expires_at.is_none());
        assert_eq!(&*s.owner, owner_id("static"));
        assert!(a.authenticate("nope").is_none());
        let t = hs(json!({"sub": "u", "ns": "n", "exp": now() + 60}));
        assert!(a.authenticate(&t).is_some());
        a.replace(AuthTable::new(&HashMap::new(), None));
        assert!(a.authenticate(&t).is_none());
        assert!(a.authenticate("static").is_none());
    }
}
