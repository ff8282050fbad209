//! Signing algorithms by JOSE name and the `sha256:<hex>` digests they sign.
use serde::{Deserialize, Serialize};

/// A signature algorithm, named as in JOSE (RFC 7518).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256; signatures are ASN.1 DER.
    ES256,
    /// ECDSA on P-384 with SHA-384; signatures are ASN.1 DER.
    ES384,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    PS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// Ed25519 (RFC 8032), over the whole message: the log key's algorithm, for C2SP signed
    /// notes. It signs no caller's digest.
    EdDSA,
}

impl Algorithm {
    /// The digest this algorithm signs; `None` for EdDSA, which signs whole messages.
    pub fn digest_algorithm(self) -> Option<DigestAlgorithm> {
        match self {
            Algorithm::ES384 => Some(DigestAlgorithm::Sha384),
            Algorithm::ES256 | Algorithm::PS256 | Algorithm::RS256 => Some(DigestAlgorithm::Sha256),
            Algorithm::EdDSA => None,
        }
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::PS256 => "PS256",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether this is an RSA algorithm (and so needs an RSA key).
    pub fn is_rsa(self) -> bool {
        matches!(self, Algorithm::PS256 | Algorithm::RS256)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Algorithm::ES256),
            "ES384" => Ok(Algorithm::ES384),
            "PS256" => Ok(Algorithm::PS256),
            "RS256" => Ok(Algorithm::RS256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            _ => Err(DigestError::UnknownAlgorithm),
        }
    }
}

/// A hash function whose output signet signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256, 32 bytes.
    Sha256,
    /// SHA-384, 48 bytes.
    Sha384,
}

impl DigestAlgorithm {
    /// The prefix used in `name:<hex>` digests.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha384 => 48,
        }
    }
}

/// Why a digest string was refused. Messages never echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("a digest must look like sha256:<64 hex digits>")]
    Malformed,
    /// A prefix other than sha256 / sha384.
    #[error("unsupported digest algorithm (sha256 and sha384 are supported)")]
    UnsupportedAlgorithm,
    /// Hex of the wrong length or with non-hex characters.
    #[error("{algorithm} digest must be {hex_len} hex digits")]
    BadHex {
        /// The digest algorithm named.
        algorithm: &'static str,
        /// The number of hex digits it needs.
        hex_len: usize,
    },
    /// Not one of ES256, ES384, PS256, RS256, EdDSA.
    #[error("unknown algorithm (expected ES256, ES384, PS256, RS256 or EdDSA)")]
    UnknownAlgorithm,
}

/// A parsed digest: its algorithm and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The hash function that made it.
    pub algorithm: DigestAlgorithm,
    /// The raw hash output, of `algorithm.output_len()` bytes.
    pub bytes: Vec<u8>,
}

impl Digest {
    /// Parses `sha256:<64 hex>` or `sha384:<96 hex>` (hex in either case).
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let (name, hex_part) = text.split_once(':').ok_or(DigestError::Malformed)?;
        let algorithm = match name {
            "sha256" => DigestAlgorithm::Sha256,
            "sha384" => DigestAlgorithm::Sha384,
            _ => return Err(DigestError::UnsupportedAlgorithm),
        };
        let bad_hex = DigestError::BadHex {
            algorithm: algorithm.name(),
            hex_len: algorithm.output_len() * 2,
        };
        if hex_part.len() != algorithm.output_len() * 2 {
            return Err(bad_hex);
        }
        let bytes = hex::decode(hex_part).map_err(|_| bad_hex)?;
        Ok(Digest { algorithm, bytes })
    }

    /// The canonical text form, lower-case hex.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.algorithm.name(), hex::encode(&self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sha256_and_sha384() {
        let d = Digest::parse(&format!("sha256:{}", "AB".repeat(32))).expect("valid");
        assert_eq!(d.algorithm, DigestAlgorithm::Sha256);
        assert_eq!(d.to_text(), format!("sha256:{}", "ab".repeat(32)));
        let d = Digest::parse(&format!("sha384:{}", "01".repeat(48))).expect("valid");
        assert_eq!(d.bytes.len(), 48);
    }

    #[test]
    fn refuses_malformed_digests() {
        assert_eq!(Digest::parse("abc"), Err(DigestError::Malformed));
        assert_eq!(
            Digest::parse(&format!("md5:{}", "00".repeat(16))),
            Err(DigestError::UnsupportedAlgorithm)
        );
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", "00".repeat(31))),
            Err(DigestError::BadHex { .. })
        ));
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", "zz".repeat(32))),
            Err(DigestError::BadHex { .. })
        ));
        // Multi-byte UTF-8 of the right byte length must not panic on slicing.
        assert!(Digest::parse(&format!("sha256:{}", "é".repeat(32))).is_err());
    }
}
