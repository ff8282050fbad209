//! Policies: an authenticated caller's claims to a decision (which keys, how long, how many
//! signatures). Deny by default; a denial says nothing about why, so it cannot guide a guesser.
use std::time::Duration;

use crate::config::{PolicyConfig, Role};
use crate::oidc::VerifiedClaims;

/// What a matching policy grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The policy that matched (recorded in the session and the log).
    pub policy: String,
    /// Keys granted: the requested ones, or all the policy names.
    pub keys: Vec<String>,
    /// Longest session allowed.
    pub max_ttl: Duration,
    /// Most signatures allowed.
    pub max_signatures: u64,
    /// Signer or admin.
    pub role: Role,
    /// The claim names the policy matched on (recorded in the log).
    pub matched_claims: Vec<String>,
}

/// Why no policy granted the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No policy of the caller's issuer matches the claims and covers every requested key.
    #[error("no policy allows this identity to use the requested keys")]
    Denied,
}

/// Picks the first policy, in config order, of the caller's issuer whose claims all match and
/// which covers every requested key (all its keys when none are requested).
pub fn decide(
    policies: &[PolicyConfig],
    caller: &VerifiedClaims,
    requested_keys: Option<&[String]>,
    required_role: Role,
) -> Result<Decision, PolicyError> {
    policies
        .iter()
        .filter(|p| p.issuer == caller.issuer)
        .filter(|p| required_role == Role::Signer || p.role == Role::Admin)
        .filter(|p| claims_match(p, caller))
        .find_map(|p| {
            let keys = match requested_keys {
                None => p.keys.clone(),
                Some(requested)
                    if !requested.is_empty() && requested.iter().all(|k| p.keys.contains(k)) =>
                {
                    let mut keys = requested.to_vec();
                    keys.dedup();
                    keys
                }
                Some(_) => return None,
            };
            Some(Decision {
                policy: p.name.clone(),
                keys,
                max_ttl: p.max_ttl.get(),
                max_signatures: p.max_signatures,
                role: p.role,
                matched_claims: p.claims.keys().cloned().collect(),
            })
        })
        .ok_or(PolicyError::Denied)
}

fn claims_match(policy: &PolicyConfig, caller: &VerifiedClaims) -> bool {
    policy.claims.iter().all(|(name, pattern)| {
        match caller.claims.get(name) {
            Some(serde_json::Value::String(value)) => glob_match(pattern, value),
            // Numbers and booleans compare by their JSON text; arrays and objects never match.
            Some(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                glob_match(pattern, &value.to_string())
            }
            _ => false,
        }
    })
}

/// Matches `value` against `pattern`, where `*` stands for any run of characters (including
/// `/` and the empty run) and every other character stands for itself.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let value: Vec<char> = value.chars().collect();
    let (mut p, mut v) = (0, 0);
    // Where the last `*` was, and the value position it is currently assumed to cover up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((star, covered)) = backtrack {
            p = star + 1;
            v = covered + 1;
            backtrack = Some((star, covered + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    #[test]
    fn globs_match_as_documented() {
        assert!(glob_match("refs/heads/main", "refs/heads/main"));
        assert!(!glob_match("refs/heads/main", "refs/heads/main2"));
        assert!(glob_match("refs/heads/*", "refs/heads/release/1.0"));
        assert!(glob_match("acme/*-models", "acme/vision-models"));
        assert!(!glob_match("acme/*-models", "acme/vision-model"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("**", "anything"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("é*", "été"));
    }

    fn policy(name: &str, claims: &[(&str, &str)], keys: &[&str], role: Role) -> PolicyConfig {
        PolicyConfig {
            name: name.into(),
            issuer: "github".into(),
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            max_ttl: HumanDuration::from_duration(Duration::from_secs(600)),
            max_signatures: 10,
            role,
        }
    }

    fn caller(claims: serde_json::Value) -> VerifiedClaims {
        VerifiedClaims {
            issuer: "github".into(),
            iss: "https://issuer".into(),
            subject: "repo:acme/models".into(),
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn denies_by_default_and_picks_first_match() {
        let policies = vec![
            policy(
                "main",
                &[("repository", "acme/models"), ("ref", "refs/heads/main")],
                &["a"],
                Role::Signer,
            ),
            policy(
                "any-branch",
                &[("repository", "acme/*")],
                &["a", "b"],
                Role::Signer,
            ),
        ];
        let on_main =
            caller(serde_json::json!({"repository": "acme/models", "ref": "refs/heads/main"}));
        let d = decide(&policies, &on_main, None, Role::Signer).expect("allowed");
        assert_eq!(d.policy, "main");
        assert_eq!(d.keys, vec!["a".to_string()]);
        let wants_b = ["b".to_string()];
        let d = decide(&policies, &on_main, Some(&wants_b), Role::Signer).expect("allowed");
        assert_eq!(d.policy, "any-branch");
        let stranger =
            caller(serde_json::json!({"repository": "evil/models", "ref": "refs/heads/main"}));
        assert_eq!(
            decide(&policies, &stranger, None, Role::Signer),
            Err(PolicyError::Denied)
        );
        let missing_claim = caller(serde_json::json!({}));
        assert_eq!(
            decide(&policies, &missing_claim, None, Role::Signer),
            Err(PolicyError::Denied)
        );
        let wants_c = ["c".to_string()];
        assert_eq!(
            decide(&policies, &on_main, Some(&wants_c), Role::Signer),
            Err(PolicyError::Denied)
        );
    }

    #[test]
    fn admin_role_is_required_for_admin_actions() {
        let policies = vec![policy(
            "signers",
            &[("repository", "acme/*")],
            &["a"],
            Role::Signer,
        )];
        let c = caller(serde_json::json!({"repository": "acme/models"}));
        assert_eq!(
            decide(&policies, &c, None, Role::Admin),
            Err(PolicyError::Denied)
        );
    }
}
