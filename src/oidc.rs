//! OIDC ID token verification: pick the issuer by the token's exact `iss`, take the verification
//! key and its algorithm from that issuer's JWKS (never from the token alone), then check the
//! signature, `iss`, `aud`, `exp`, `nbf` and `iat` with a small leeway.
pub mod keystore;
pub mod unverified;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm as JwtAlgorithm, Validation};
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::config::IssuerConfig;
use keystore::IssuerKeys;

/// Clock skew tolerated on `exp`, `nbf` and `iat`: CI runners' clocks drift a little, and a
/// minute is what GitHub's and crates.io's verifiers allow.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// A token whose signature and registered claims have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedClaims {
    /// The config name of the issuer.
    pub issuer: String,
    /// The token's `iss`.
    pub iss: String,
    /// The token's `sub`.
    pub subject: String,
    /// Every claim, for policy matching and the log.
    pub claims: Map<String, Value>,
}

/// Why a token was refused. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Not three base64url parts, or the header or payload is not JSON.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// Longer than any ID token signet accepts.
    #[error("the token is longer than {0} bytes")]
    TooLong(usize),
    /// `alg` is `none`, HMAC or otherwise not an asymmetric algorithm we accept.
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// `iss` is missing or not a single string.
    #[error("the token's iss must be a single string")]
    BadIssuerClaim,
    /// No configured issuer has this exact `iss`.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// The header has no `kid`, or the issuer's JWKS has no such key.
    #[error("the token's signing key is not in the issuer's JWKS")]
    UnknownKey,
    /// The header's `alg` differs from the issuer's key's algorithm.
    #[error("the token's algorithm does not match the issuer's key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// No `aud` value is one of the issuer's configured audiences.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A required claim (`exp`, `iat`, `sub`, `aud`) is missing or has the wrong type.
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
    /// The issuer's discovery document announces a development issuer, outside `signet dev`.
    #[error("issuer {0} is a development issuer and is refused outside `signet dev`")]
    DevelopmentIssuer(String),
    /// The issuer's discovery or JWKS endpoint cannot be reached.
    #[error("issuer {issuer} is unavailable: {reason}")]
    IssuerUnavailable {
        /// The issuer's config name.
        issuer: String,
        /// What failed.
        reason: String,
    },
}

/// Verifies ID tokens against the configured issuers.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuers: Arc<HashMap<String, Arc<IssuerKeys>>>,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// Builds a verifier; `allow_development_issuers` is true only under `signet dev`. Token
    /// lifetimes and JWKS ages are read from `clock`.
    pub fn new(
        configs: &[IssuerConfig],
        allow_development_issuers: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OidcError> {
        let http = keystore::http_client().map_err(|reason| OidcError::IssuerUnavailable {
            issuer: "*".into(),
            reason,
        })?;
        let issuers = configs
            .iter()
            .map(|c| {
                (
                    c.issuer.clone(),
                    Arc::new(IssuerKeys::new(
                        c.clone(),
                        http.clone(),
                        allow_development_issuers,
                        Arc::clone(&clock),
                    )),
                )
            })
            .collect();
        Ok(Verifier {
            issuers: Arc::new(issuers),
            clock,
        })
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<VerifiedClaims, OidcError> {
        let unverified = unverified::UnverifiedToken::parse(token)?;
        let issuer = self
            .issuers
            .get(&unverified.iss)
            .ok_or(OidcError::UnknownIssuer)?;
        let kid = unverified.kid.as_deref().ok_or(OidcError::UnknownKey)?;
        let key = issuer.key(kid).await?;
        if key.algorithm != unverified.alg {
            return Err(OidcError::AlgorithmMismatch);
        }

        let config = issuer.config();
        let mut validation = Validation::new(key.algorithm);
        // Times are checked below against the injected clock, not jsonwebtoken's system time.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = true;
        validation.set_audience(&config.audiences);
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding_key, &validation)
                .map_err(map_jwt_error)?;
        let claims = data.claims;

        check_times(&claims, self.clock.now_unix())?;
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(OidcError::MissingClaim("sub".into())),
        };
        Ok(VerifiedClaims {
            issuer: config.name.clone(),
            iss: config.issuer.clone(),
            subject,
            claims,
        })
    }
}

/// `exp` has not passed, `nbf` (if present) has, and `iat` is not in the future (a token
/// "issued" later than now is forged or badly clocked), each with [`LEEWAY`].
fn check_times(claims: &Map<String, Value>, now: i64) -> Result<(), OidcError> {
    let leeway = i64::try_from(LEEWAY.as_secs()).unwrap_or(0);
    let time = |name: &str| -> Result<Option<i64>, OidcError> {
        match claims.get(name) {
            None => Ok(None),
            // Fractional NumericDates are allowed (RFC 7519 §2); whole seconds are enough here.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| OidcError::MissingClaim(name.into())),
            Some(_) => Err(OidcError::MissingClaim(name.into())),
        }
    };
    let exp = time("exp")?.ok_or_else(|| OidcError::MissingClaim("exp".into()))?;
    if exp.saturating_add(leeway) <= now {
        return Err(OidcError::Expired);
    }
    if let Some(nbf) = time("nbf")?
        && nbf.saturating_sub(leeway) > now
    {
        return Err(OidcError::NotYetValid);
    }
    let iat = time("iat")?.ok_or_else(|| OidcError::MissingClaim("iat".into()))?;
    if iat.saturating_sub(leeway) > now {
        return Err(OidcError::IssuedInFuture);
    }
    Ok(())
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> OidcError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => OidcError::Expired,
        ErrorKind::ImmatureSignature => OidcError::NotYetValid,
        ErrorKind::InvalidAudience => OidcError::WrongAudience,
        ErrorKind::InvalidIssuer => OidcError::UnknownIssuer,
        ErrorKind::InvalidSignature => OidcError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            OidcError::AlgorithmMismatch
        }
        ErrorKind::MissingRequiredClaim(claim) => OidcError::MissingClaim(claim.clone()),
        _ => OidcError::Malformed,
    }
}

/// The asymmetric algorithms accepted in ID tokens.
pub fn is_accepted_algorithm(algorithm: JwtAlgorithm) -> bool {
    matches!(
        algorithm,
        JwtAlgorithm::RS256
            | JwtAlgorithm::RS384
            | JwtAlgorithm::RS512
            | JwtAlgorithm::PS256
            | JwtAlgorithm::PS384
            | JwtAlgorithm::PS512
            | JwtAlgorithm::ES256
            | JwtAlgorithm::ES384
            | JwtAlgorithm::EdDSA
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn times_are_checked_against_the_given_clock_with_the_leeway() {
        let ok = claims(json!({"exp": NOW + 300, "iat": NOW, "nbf": NOW}));
        assert_eq!(check_times(&ok, NOW), Ok(()));
        // Within the leeway either side.
        let skewed = claims(json!({"exp": NOW - 59, "iat": NOW + 59, "nbf": NOW + 59}));
        assert_eq!(check_times(&skewed, NOW), Ok(()));
        assert_eq!(
            check_times(&claims(json!({"exp": NOW - 60, "iat": NOW - 600})), NOW),
            Err(OidcError::Expired)
        );
        assert_eq!(
            check_times(
                &claims(json!({"exp": NOW + 600, "iat": NOW, "nbf": NOW + 61})),
                NOW
            ),
            Err(OidcError::NotYetValid)
        );
        assert_eq!(
            check_times(&claims(json!({"exp": NOW + 600, "iat": NOW + 61})), NOW),
            Err(OidcError::IssuedInFuture)
        );
    }

    #[test]
    fn missing_or_mistyped_times_are_refused() {
        assert_eq!(
            check_times(&claims(json!({"iat": NOW})), NOW),
            Err(OidcError::MissingClaim("exp".into()))
        );
        assert_eq!(
            check_times(&claims(json!({"exp": NOW + 60})), NOW),
            Err(OidcError::MissingClaim("iat".into()))
        );
        assert_eq!(
            check_times(&claims(json!({"exp": "never", "iat": NOW})), NOW),
            Err(OidcError::MissingClaim("exp".into()))
        );
        // A fractional NumericDate counts by its whole seconds.
        assert_eq!(
            check_times(
                &claims(json!({"exp": (NOW + 30) as f64 + 0.5, "iat": NOW})),
                NOW
            ),
            Ok(())
        );
    }
}
