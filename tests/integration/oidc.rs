//! One test per ID token rejection reason, each asserting the status, the `code` and which
//! check fired (the problem's `detail`).
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::harness::{Harness, TestIssuer, problem};

async fn refused(h: &Harness, token: &str) -> (u16, String) {
    problem(h.open_session(token, None).await).await
}

/// Asserts that `token` is refused with 401 `invalid_token` and a detail naming `reason`.
async fn rejected(h: &Harness, token: &str, reason: &str) {
    let response = h.open_session(token, None).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(reason),
        "expected {reason:?}, got {detail:?}"
    );
}

#[tokio::test]
async fn accepts_a_valid_token() {
    let h = Harness::start().await;
    let response = h.open_session(&h.issuer.mint_default(), None).await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["keys"], json!(["model-signing"]));
    assert_eq!(body["issuer"], json!(h.issuer.url));
    assert_eq!(body["subject"], "repo:acme/models:ref:refs/heads/main");
    assert_eq!(body["max_signatures"], 100);
    let token = body["session_token"].as_str().expect("token");
    assert!(
        token.starts_with("sgt_") && token.len() >= 4 + 43,
        "256-bit token: {token}"
    );
}

#[tokio::test]
async fn rejects_alg_none() {
    let h = Harness::start().await;
    let token = TestIssuer::unsigned_with(
        &json!({"alg": "none", "typ": "JWT", "kid": h.issuer.kid}),
        &h.issuer.default_claims(),
        b"",
    );
    rejected(&h, &token, "the token's algorithm is not accepted").await;
}

#[tokio::test]
async fn rejects_hs256_with_the_public_key_as_secret() {
    let h = Harness::start().await;
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": h.issuer.kid});
    let claims = h.issuer.default_claims();
    let input = TestIssuer::unsigned_with(&header, &claims, b"");
    let input = input.trim_end_matches('.');
    // The classic key-confusion attack: HMAC keyed with the issuer's public key material.
    let public_jwk = TestIssuer::jwk(&h.issuer.key, &h.issuer.kid).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(public_jwk.as_bytes()).expect("hmac key");
    mac.update(input.as_bytes());
    let token = TestIssuer::unsigned_with(&header, &claims, &mac.finalize().into_bytes());
    rejected(&h, &token, "the token's algorithm is not accepted").await;
}

#[tokio::test]
async fn rejects_an_unknown_kid() {
    let h = Harness::start().await;
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let token = h.issuer.mint_with(
        &json!({"alg": "ES256", "typ": "JWT", "kid": "not-in-jwks"}),
        &h.issuer.default_claims(),
        &other,
    );
    rejected(&h, &token, "signing key is not in the issuer's JWKS").await;
}

#[tokio::test]
async fn rejects_a_signature_by_another_key() {
    let h = Harness::start().await;
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let token = h.issuer.mint_with(
        &json!({"alg": "ES256", "typ": "JWT", "kid": h.issuer.kid}),
        &h.issuer.default_claims(),
        &other,
    );
    rejected(&h, &token, "the token's signature is invalid").await;
}

#[tokio::test]
async fn rejects_an_alg_that_differs_from_the_jwk() {
    let h = Harness::start().await;
    let token = h.issuer.mint_with(
        &json!({"alg": "ES384", "typ": "JWT", "kid": h.issuer.kid}),
        &h.issuer.default_claims(),
        &h.issuer.key,
    );
    rejected(&h, &token, "does not match the issuer's key").await;
}

#[tokio::test]
async fn rejects_a_wrong_issuer() {
    let h = Harness::start().await;
    let token = h.issuer.mint_edited(|c| {
        c.insert("iss".into(), json!("https://evil.example"));
    });
    rejected(&h, &token, "the token's issuer is not trusted").await;
    // Near misses of the exact string are wrong too.
    let token = h.issuer.mint_edited(|c| {
        let iss = format!("{}/", c["iss"].as_str().expect("iss"));
        c.insert("iss".into(), json!(iss));
    });
    rejected(&h, &token, "the token's issuer is not trusted").await;
}

#[tokio::test]
async fn rejects_an_array_iss() {
    let h = Harness::start().await;
    let url = h.issuer.url.clone();
    let token = h.issuer.mint_edited(|c| {
        c.insert("iss".into(), json!([url]));
    });
    rejected(&h, &token, "iss must be a single string").await;
}

#[tokio::test]
async fn rejects_a_wrong_audience() {
    let h = Harness::start().await;
    let token = h.issuer.mint_edited(|c| {
        c.insert("aud".into(), json!("someone-else"));
    });
    rejected(&h, &token, "the token's audience is not accepted").await;
    let token = h.issuer.mint_edited(|c| {
        c.remove("aud");
    });
    rejected(&h, &token, "the token lacks the aud claim").await;
}

#[tokio::test]
async fn accepts_an_audience_array_containing_ours() {
    let h = Harness::start().await;
    let token = h.issuer.mint_edited(|c| {
        c.insert("aud".into(), json!(["other", "signet"]));
    });
    assert_eq!(h.open_session(&token, None).await.status().as_u16(), 201);
}

#[tokio::test]
async fn rejects_an_expired_token() {
    let h = Harness::start().await;
    let now = crate::harness::issuer::now();
    // Past the documented 60 s leeway.
    let token = h.issuer.mint_edited(|c| {
        c.insert("iat".into(), json!(now - 900));
        c.insert("nbf".into(), json!(now - 900));
        c.insert("exp".into(), json!(now - 120));
    });
    rejected(&h, &token, "the token has expired").await;
}

#[tokio::test]
async fn tolerates_clock_skew_within_the_leeway() {
    let h = Harness::start().await;
    let now = crate::harness::issuer::now();
    let token = h.issuer.mint_edited(|c| {
        c.insert("iat".into(), json!(now - 300));
        c.insert("exp".into(), json!(now - 20));
    });
    assert_eq!(h.open_session(&token, None).await.status().as_u16(), 201);
}

#[tokio::test]
async fn rejects_a_token_before_nbf() {
    let h = Harness::start().await;
    let now = crate::harness::issuer::now();
    let token = h.issuer.mint_edited(|c| {
        c.insert("nbf".into(), json!(now + 600));
        c.insert("exp".into(), json!(now + 900));
    });
    rejected(&h, &token, "the token is not valid yet").await;
}

#[tokio::test]
async fn rejects_iat_in_the_future() {
    let h = Harness::start().await;
    let now = crate::harness::issuer::now();
    let token = h.issuer.mint_edited(|c| {
        c.insert("iat".into(), json!(now + 600));
        c.insert("exp".into(), json!(now + 900));
    });
    rejected(&h, &token, "the token was issued in the future").await;
}

#[tokio::test]
async fn rejects_missing_exp_and_sub() {
    let h = Harness::start().await;
    for claim in ["exp", "sub", "iat"] {
        let token = h.issuer.mint_edited(|c| {
            c.remove(claim);
        });
        rejected(&h, &token, &format!("the token lacks the {claim} claim")).await;
    }
}

#[tokio::test]
async fn rejects_garbage_tokens() {
    let h = Harness::start().await;
    for token in ["x", "a.b", "a.b.c", "....", "eyJ.eyJ.x"] {
        rejected(&h, token, "the token is not a well-formed JWT").await;
    }
    rejected(
        &h,
        &"A".repeat(20_000),
        "the token is longer than 16384 bytes",
    )
    .await;
}

#[tokio::test]
async fn rejects_a_missing_bearer() {
    let h = Harness::start().await;
    let response = h
        .http
        .post(h.daemon.url("/v1/sessions"))
        .send()
        .await
        .expect("post");
    assert_eq!(problem(response).await, (401, "invalid_token".into()));
    let response = h
        .http
        .post(h.daemon.url("/v1/sessions"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("post");
    assert_eq!(problem(response).await, (401, "invalid_token".into()));
}

#[tokio::test]
async fn issuer_down_gives_503_not_401() {
    let h = Harness::start().await;
    h.issuer.set_down(true);
    assert_eq!(
        refused(&h, &h.issuer.mint_default()).await,
        (503, "issuer_unavailable".into())
    );
    h.issuer.set_down(false);
    // Recovers by itself once the issuer is back (failed fetches retry after a few seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status = h
            .open_session(&h.issuer.mint_default(), None)
            .await
            .status()
            .as_u16();
        if status == 201 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status} after the issuer came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn keys_already_fetched_survive_an_issuer_outage() {
    let h = Harness::start_with(|c| c.refetch_cooldown = "0s".into()).await;
    let _ = h.session().await;
    h.issuer.set_down(true);
    // The JWKS is cached: a token signed by a known key still opens a session.
    let _ = h.session().await;
}

/// While one request refreshes an expired JWKS from a hung issuer (up to its HTTP timeout), the
/// others are served the key already held instead of queueing behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_refresh_does_not_hold_up_other_callers() {
    let h = Harness::in_process_with(|c| {
        c.refetch_cooldown = "0s".into();
        c.jwks_max_age = "1m".into();
    })
    .await;
    let _ = h.session().await;
    h.issuer.set_hung(true);
    h.clock().advance(std::time::Duration::from_secs(61));
    // The first caller after expiry refreshes, and waits on the hung issuer.
    let refreshing = {
        let http = h.http.clone();
        let url = h.daemon.url("/v1/sessions");
        let token = h.issuer.mint_default();
        tokio::spawn(async move { http.post(url).bearer_auth(token).send().await })
    };
    h.issuer.hung_request_arrived().await;
    assert!(!refreshing.is_finished(), "the refresh should be waiting");
    // Others get the key already held: their sessions open while the refresh still hangs.
    for _ in 0..3 {
        let status = h
            .open_session(&h.issuer.mint_default(), None)
            .await
            .status()
            .as_u16();
        assert_eq!(status, 201);
    }
    assert!(
        !refreshing.is_finished(),
        "the refresh ended before the other callers were answered; the test proves nothing"
    );
    h.issuer.set_hung(false);
    let refreshed = refreshing.await.expect("task").expect("response");
    // The issuer's HTTP timeout ends the hung refresh; the key held is served to it as well.
    assert_eq!(refreshed.status().as_u16(), 201);
}

#[tokio::test]
async fn unknown_kids_cannot_make_signet_hammer_the_issuer() {
    let h = Harness::start().await;
    let _ = h.session().await;
    let before = h.issuer.jwks_fetches();
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    for i in 0..20 {
        let token = h.issuer.mint_with(
            &json!({"alg": "ES256", "typ": "JWT", "kid": format!("made-up-{i}")}),
            &h.issuer.default_claims(),
            &other,
        );
        assert_eq!(refused(&h, &token).await, (401, "invalid_token".into()));
    }
    let refetches = h.issuer.jwks_fetches() - before;
    assert!(
        refetches <= 1,
        "{refetches} JWKS fetches for 20 unknown kids within the cooldown"
    );
}

#[tokio::test]
async fn a_new_issuer_key_is_picked_up_by_refetch() {
    let h = Harness::start_with(|c| c.refetch_cooldown = "0s".into()).await;
    let _ = h.session().await;
    let rotated = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    h.issuer.add_jwk(TestIssuer::jwk(&rotated, "test-key-2"));
    let token = h.issuer.mint_with(
        &json!({"alg": "ES256", "typ": "JWT", "kid": "test-key-2"}),
        &h.issuer.default_claims(),
        &rotated,
    );
    assert_eq!(h.open_session(&token, None).await.status().as_u16(), 201);
}

#[tokio::test]
async fn a_development_issuer_is_refused_by_serve() {
    let h = Harness::start().await;
    h.issuer.set_development_only(true);
    assert_eq!(
        refused(&h, &h.issuer.mint_default()).await,
        (401, "invalid_token".into())
    );
}

#[tokio::test]
async fn a_session_token_cannot_open_a_session() {
    let h = Harness::start().await;
    let session = h.session().await;
    assert_eq!(refused(&h, &session).await, (401, "invalid_token".into()));
}
