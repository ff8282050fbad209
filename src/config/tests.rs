//! Config parsing and validation: every problem listed, secrets never printed.
use std::path::Path;

use super::*;

/// A valid config whose PIN is in a file beside `module` (the environment is never changed:
/// tests run in parallel threads).
fn valid(module: &Path) -> String {
    let pin = module.with_extension("pin");
    std::fs::write(&pin, "1234").expect("pin file");
    format!(
        r#"
[server]
listen = "127.0.0.1:8420"

[store]
url = "sqlite://signet.db"

[log]
origin = "signet.example/log"
key = "log-signing"

[[issuers]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"
audiences = ["signet"]

[backends.hsm]
type = "pkcs11"
module = "{}"
token_label = "signet"
pin_file = "{}"

[[keys]]
name = "model-signing"
backend = "hsm"
algorithm = "ES256"
rotation_period = "90d"
grace_period = "30d"

[[keys]]
name = "log-signing"
backend = "hsm"
algorithm = "EdDSA"

[[policies]]
name = "release-models"
issuer = "github"
claims = {{ repository = "acme/models", ref = "refs/heads/main" }}
keys = ["model-signing"]
max_ttl = "15m"
max_signatures = 100
"#,
        module.display(),
        pin.display()
    )
}

fn problems_of(text: &str) -> Vec<Problem> {
    match Config::from_toml(text, Path::new("test.toml")) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

fn module_file() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().expect("temp module file")
}

#[test]
fn accepts_the_api_md_shape() {
    let module = module_file();
    let config = Config::from_toml(&valid(module.path()), Path::new("t.toml")).expect("valid");
    assert_eq!(config.keys.len(), 2);
    assert_eq!(
        config.policies[0].max_ttl.get(),
        std::time::Duration::from_secs(900)
    );
    assert_eq!(config.backends["hsm"].kind(), "pkcs11");
}

#[test]
fn unknown_fields_are_refused_with_file_and_line() {
    let module = module_file();
    let text = valid(module.path()).replace("[server]\n", "[server]\nlisten_port = 1\n");
    let err = Config::from_toml(&text, Path::new("t.toml")).expect_err("unknown field");
    let message = err.to_string();
    assert!(message.starts_with("t.toml:"), "{message}");
    assert!(message.contains("listen_port"), "{message}");
}

#[test]
fn lists_every_problem_at_once() {
    let module = module_file();
    let text = valid(module.path())
        .replace(
            "backend = \"hsm\"\nalgorithm = \"ES256\"\nrotation_period",
            "backend = \"nope\"\nalgorithm = \"ES256\"\nrotation_period",
        )
        .replace("max_ttl = \"15m\"", "max_ttl = \"soon\"")
        .replace(
            "https://token.actions.githubusercontent.com",
            "http://token.example.com",
        )
        .replace(
            "keys = [\"model-signing\"]",
            "keys = [\"model-signing\", \"log-signing\", \"ghost\"]",
        );
    let fields: Vec<String> = problems_of(&text).into_iter().map(|p| p.field).collect();
    for expected in [
        "keys[0].backend",
        "policies[0].max_ttl",
        "issuers[0].issuer",
        "policies[0].keys[1]",
        "policies[0].keys[2]",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }
}

#[test]
fn plain_http_issuer_is_allowed_on_loopback_only() {
    let module = module_file();
    let text = valid(module.path()).replace(
        "https://token.actions.githubusercontent.com",
        "http://127.0.0.1:9999",
    );
    Config::from_toml(&text, Path::new("t.toml")).expect("loopback http is fine");
}

#[test]
fn policy_without_claims_is_refused() {
    let module = module_file();
    let text = valid(module.path()).replace(
        "claims = { repository = \"acme/models\", ref = \"refs/heads/main\" }",
        "claims = {}",
    );
    assert!(
        problems_of(&text)
            .iter()
            .any(|p| p.field == "policies[0].claims")
    );
    let text = valid(module.path()).replace(
        "claims = { repository = \"acme/models\", ref = \"refs/heads/main\" }",
        "claims = { repository = \"*\" }",
    );
    assert!(
        problems_of(&text)
            .iter()
            .any(|p| p.field == "policies[0].claims")
    );
}

#[test]
fn missing_pin_is_reported_without_a_value() {
    let module = module_file();
    let pin_line = format!(
        "pin_file = \"{}\"",
        module.path().with_extension("pin").display()
    );
    let text =
        valid(module.path()).replace(&pin_line, "pin_env = \"SIGNET_CONFIG_TEST_UNSET_PIN\"");
    assert!(text.contains("SIGNET_CONFIG_TEST_UNSET_PIN"));
    let problems = problems_of(&text);
    let pin = problems
        .iter()
        .find(|p| p.field == "backends.hsm.pin_env")
        .expect("pin problem");
    assert!(pin.message.contains("SIGNET_CONFIG_TEST_UNSET_PIN"));
}

#[test]
fn pin_in_config_is_not_a_field() {
    let module = module_file();
    let text = valid(module.path()).replace(
        "token_label = \"signet\"",
        "token_label = \"signet\"\npin = \"1234\"",
    );
    let err = Config::from_toml(&text, Path::new("t.toml")).expect_err("pin field refused");
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn tls_and_postgres_are_refused_until_built() {
    let module = module_file();
    let text = valid(module.path())
        .replace(
            "listen = \"127.0.0.1:8420\"",
            "listen = \"127.0.0.1:8420\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"",
        )
        .replace("sqlite://signet.db", "postgres://db/signet");
    let fields: Vec<String> = problems_of(&text).into_iter().map(|p| p.field).collect();
    assert!(fields.contains(&"server.tls_cert".to_string()));
    assert!(fields.contains(&"store.url".to_string()));
}

#[test]
fn non_loopback_plain_http_listen_needs_opt_in() {
    let module = module_file();
    let text = valid(module.path()).replace("127.0.0.1:8420", "0.0.0.0:8420");
    assert!(
        problems_of(&text)
            .iter()
            .any(|p| p.field == "server.listen")
    );
    let text = text.replace(
        "listen = \"0.0.0.0:8420\"",
        "listen = \"0.0.0.0:8420\"\nallow_plain_http = true",
    );
    Config::from_toml(&text, Path::new("t.toml")).expect("opted in");
}

#[test]
fn every_backend_type_parses() {
    let module = module_file();
    let text = valid(module.path())
        + r#"
[backends.vault]
type = "vault_transit"
address = "https://vault.example:8200"
mount = "transit"
token_env = "VAULT_TOKEN"

[backends.aws]
type = "aws_kms"
region = "us-east-1"
timeout = "5s"
max_retries = 3

[backends.gcp]
type = "gcp_kms"
key_ring = "projects/p/locations/global/keyRings/r"
"#;
    // They parse and validate; a binary built without one of them says so by name.
    let outcome = Config::from_toml(&text, Path::new("test.toml"));
    let fields: Vec<String> = match outcome {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| p.field).collect()
        }
        Err(other) => panic!("unexpected error {other}"),
    };
    let mut expected = Vec::new();
    if cfg!(not(feature = "aws")) {
        expected.push("backends.aws.type");
    }
    if cfg!(not(feature = "gcp")) {
        expected.push("backends.gcp.type");
    }
    if cfg!(not(feature = "vault")) {
        expected.push("backends.vault.type");
    }
    assert_eq!(fields, expected);
}

#[test]
fn the_log_key_is_a_fixed_ed25519_role() {
    let module = module_file();
    let valid = valid(module.path());
    let log_key = "name = \"log-signing\"\nbackend = \"hsm\"\nalgorithm = \"EdDSA\"";
    assert!(valid.contains(log_key));
    let cases = [
        // Checkpoints are Ed25519 notes.
        (
            valid.replace(log_key, &log_key.replace("EdDSA", "ES256")),
            "keys[1].algorithm",
        ),
        // EdDSA is the log key's alone.
        (
            valid.replace(
                "name = \"model-signing\"\nbackend = \"hsm\"\nalgorithm = \"ES256\"",
                "name = \"model-signing\"\nbackend = \"hsm\"\nalgorithm = \"EdDSA\"",
            ),
            "keys[0].algorithm",
        ),
        // Never rotated.
        (
            valid.replace(log_key, &format!("{log_key}\nrotation_period = \"90d\"")),
            "keys[1].rotation_period",
        ),
        // No other key on the same backend key.
        (
            valid.replace(
                "name = \"model-signing\"\nbackend = \"hsm\"",
                "name = \"model-signing\"\nbackend = \"hsm\"\nbackend_key = \"log-signing\"",
            ),
            "keys[0].backend_key",
        ),
        // Not in AWS KMS (LocalStack cannot make Ed25519 keys to test it).
        (
            valid.replace(log_key, &log_key.replace("\"hsm\"", "\"aws\""))
                + "\n[backends.aws]\ntype = \"aws_kms\"\nregion = \"us-east-1\"\n",
            "keys[1].backend",
        ),
    ];
    for (text, field) in cases {
        let fields: Vec<String> = problems_of(&text).into_iter().map(|p| p.field).collect();
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing from {fields:?}"
        );
    }
}
