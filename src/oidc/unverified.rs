//! A peek at a token before its signature is checked: only `alg`, `kid` and `iss`, to choose the
//! issuer and key. Nothing here is trusted; the names say so.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm as JwtAlgorithm;
use serde_json::Value;

use super::{OidcError, is_accepted_algorithm};

/// Longest token accepted; real ID tokens are 1-3 KB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The unverified routing facts of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedToken {
    /// Header `alg`, already limited to accepted asymmetric algorithms.
    pub alg: JwtAlgorithm,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Payload `iss`, a single string.
    pub iss: String,
}

impl UnverifiedToken {
    /// Parses the header and payload without checking the signature.
    pub fn parse(token: &str) -> Result<Self, OidcError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(OidcError::TooLong(MAX_TOKEN_LEN));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OidcError::Malformed);
        };
        let header = decode_json(header)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => name
                .parse::<JwtAlgorithm>()
                .map_err(|_| OidcError::UnsupportedAlgorithm)?,
            _ => return Err(OidcError::UnsupportedAlgorithm),
        };
        if !is_accepted_algorithm(alg) {
            return Err(OidcError::UnsupportedAlgorithm);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(OidcError::Malformed),
        };
        let payload = decode_json(payload)?;
        let iss = match payload.get("iss") {
            Some(Value::String(iss)) => iss.clone(),
            _ => return Err(OidcError::BadIssuerClaim),
        };
        Ok(UnverifiedToken { alg, kid, iss })
    }
}

fn decode_json(part: &str) -> Result<serde_json::Map<String, Value>, OidcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| OidcError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(OidcError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn refuses_none_hmac_and_array_iss() {
        let none = token(r#"{"alg":"none"}"#, r#"{"iss":"https://i"}"#);
        assert_eq!(
            UnverifiedToken::parse(&none),
            Err(OidcError::UnsupportedAlgorithm)
        );
        let hmac = token(r#"{"alg":"HS256","kid":"k"}"#, r#"{"iss":"https://i"}"#);
        assert_eq!(
            UnverifiedToken::parse(&hmac),
            Err(OidcError::UnsupportedAlgorithm)
        );
        let array = token(r#"{"alg":"RS256","kid":"k"}"#, r#"{"iss":["https://i"]}"#);
        assert_eq!(
            UnverifiedToken::parse(&array),
            Err(OidcError::BadIssuerClaim)
        );
        let ok = token(r#"{"alg":"ES256","kid":"k"}"#, r#"{"iss":"https://i"}"#);
        assert_eq!(
            UnverifiedToken::parse(&ok).expect("parses").iss,
            "https://i"
        );
        assert_eq!(UnverifiedToken::parse("a.b"), Err(OidcError::Malformed));
        assert_eq!(
            UnverifiedToken::parse("!!.!!.!!"),
            Err(OidcError::Malformed)
        );
    }
}
