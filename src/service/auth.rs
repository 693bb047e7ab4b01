//! Who is calling, and may they: the bearer credential of a request (an API key or a JWT)
//! becomes a [`Caller`] with a role, each caller's requests pass a token bucket of their own,
//! and a route refuses a role below the one it needs.
//!
//! 401 is for a missing or bad credential, 403 for a role that may not, 429 (with
//! `Retry-After`) for a caller over its rate.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use super::api::{Answer, answer};
use super::config::{self, RateLimit};
use super::keys::Role;
use super::state::Service;
use crate::{Error, Result};

/// The caller of a request: its id (the event log's actor), role and rate limit.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    pub role: Role,
    pub rate: Option<RateLimit>,
}

/// Checks JWT bearer tokens (HS256 and/or RS256).
pub struct JwtCheck {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    role: String,
}

impl JwtCheck {
    /// The check the settings describe.
    pub fn new(c: &config::Jwt) -> Result<JwtCheck> {
        let rs256 = match &c.rs256_public_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| Error::external(format!("reading {}", path.display()), e))?;
                Some(DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                    Error::config(
                        format!("jwt.rs256PublicKey {}", path.display()),
                        e.to_string(),
                    )
                })?)
            }
        };
        Ok(JwtCheck {
            hs256: c
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            rs256,
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
        })
    }

    /// The caller `token` names, if it is signed by a configured key, in date (`exp`, `nbf`)
    /// and carries a known role.
    pub fn check(&self, token: &str) -> Option<Caller> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref()?,
            Algorithm::RS256 => self.rs256.as_ref()?,
            _ => return None,
        };
        let mut v = Validation::new(header.alg);
        v.validate_nbf = true;
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
        }
        match &self.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v).ok()?.claims;
        Some(Caller {
            id: format!("jwt:{}", claims.sub),
            role: Role::parse(&claims.role).ok()?,
            rate: None,
        })
    }
}

/// One token bucket per caller.
pub struct Limits {
    default: RateLimit,
    buckets: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
}

impl Limits {
    pub fn new(default: RateLimit) -> Limits {
        Limits {
            default,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `caller` may make a request now, else how many seconds to wait.
    pub fn take(&self, caller: &Caller) -> std::result::Result<(), u64> {
        let known = self
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&caller.id)
            .cloned();
        let bucket = if let Some(b) = known {
            b
        } else {
            let mut all = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            all.entry(caller.id.clone())
                .or_insert_with(|| {
                    let r = caller.rate.unwrap_or(self.default);
                    let per_second = NonZeroU32::new(r.per_second).unwrap_or(NonZeroU32::MIN);
                    let burst = NonZeroU32::new(r.burst).unwrap_or(NonZeroU32::MIN);
                    Arc::new(RateLimiter::direct(
                        Quota::per_second(per_second).allow_burst(burst),
                    ))
                })
                .clone()
        };
        bucket.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The middleware of the `/v1` routes: finds the caller, applies its rate limit, and puts
/// it on the request for the handlers.
pub async fn authenticate(State(s): State<Arc<Service>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(caller) = token.and_then(|t| s.caller(t)) else {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "a valid credential is needed: Authorization: Bearer <API key or JWT>"}),
        )
        .into_response();
    };
    if let Err(wait) = s.limits.take(&caller) {
        let mut r = answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": format!("rate limit of {} exceeded: retry in {wait} s", caller.id)}),
        )
        .into_response();
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(wait.max(1)));
        return r;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Refuses the caller unless its role allows `needed`.
#[allow(clippy::result_large_err)] // a whole answer, as every handler's failure (see `api`)
pub fn allow(caller: &Caller, needed: Role) -> std::result::Result<(), Answer> {
    if caller.role.allows(needed) {
        Ok(())
    } else {
        Err(answer(
            StatusCode::FORBIDDEN,
            json!({"error": format!("this needs the {} role", needed.name())}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn tokens_are_checked_for_signature_dates_and_role() {
        let check = JwtCheck::new(&config::Jwt {
            hs256_secret: Some("top-secret".into()),
            ..Default::default()
        })
        .unwrap();
        let now = chrono::Utc::now().timestamp();
        let good = token(
            "top-secret",
            json!({"sub": "ana", "role": "operator", "exp": now + 60}),
        );
        let c = check.check(&good).unwrap();
        assert_eq!((c.id.as_str(), c.role), ("jwt:ana", Role::Operator));
        let expired = token(
            "top-secret",
            json!({"sub": "ana", "role": "admin", "exp": now - 60}),
        );
        assert!(check.check(&expired).is_none());
        let early = token(
            "top-secret",
            json!({"sub": "ana", "role": "admin", "exp": now + 60, "nbf": now + 30}),
        );
        assert!(check.check(&early).is_none());
        let forged = token(
            "other",
            json!({"sub": "ana", "role": "admin", "exp": now + 60}),
        );
        assert!(check.check(&forged).is_none());
        let bad_role = token(
            "top-secret",
            json!({"sub": "ana", "role": "root", "exp": now + 60}),
        );
        assert!(check.check(&bad_role).is_none());
        assert!(check.check("not.a.token").is_none());
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_how_long_to_wait() {
        let limits = Limits::new(RateLimit {
            per_second: 1,
            burst: 3,
        });
        let c = Caller {
            id: "k".into(),
            role: Role::Viewer,
            rate: None,
        };
        for _ in 0..3 {
            assert!(limits.take(&c).is_ok());
        }
        assert_eq!(limits.take(&c), Err(1));
        // Another caller has its own bucket, and its own limit.
        let other = Caller {
            id: "k2".into(),
            rate: Some(RateLimit {
                per_second: 1,
                burst: 1,
            }),
            ..c
        };
        assert!(limits.take(&other).is_ok());
        assert!(limits.take(&other).is_err());
    }
}
