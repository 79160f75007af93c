//! Authentication: JWTs (HS256 secret file, RS256/ES256 PEM, JWKS), static
//! tokens reloaded on SIGHUP, read-only access, expiry of open sockets.
//! Keys: HS256 secrets are made here; the RSA/EC test keys are fixed files
//! under tests/keys/ (see its README).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "test-secret-0123456789-0123456789-abcdef";

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn key(name: &str) -> String {
    keys().join(name).to_str().unwrap().to_string()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims of a user of namespace `ns`, valid for a minute.
fn claims(sub: &str, ns: &str) -> Value {
    json!({"sub": sub, "ns": ns, "exp": now() + 60, "iat": now()})
}

fn hs256(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn signed(alg: Algorithm, private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(key(private_pem)).unwrap();
    let k = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, claims, &k).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned token (`alg: none`).
fn unsigned(claims: &Value) -> String {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", b64url(claims.to_string().as_bytes()))
}

/// An HS256 token whose "secret" is the server's public key: the classic
/// algorithm-confusion attack on servers that let the token pick the algorithm.
fn confused(public_pem: &str, claims: &Value) -> String {
    let pem = std::fs::read(key(public_pem)).unwrap();
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&pem).unwrap(),
    )
    .unwrap()
}

fn secret_file(dir: &tempfile::TempDir, secret: &str) -> String {
    let p = dir.path().join("jwt-secret");
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    p.to_str().unwrap().to_string()
}

async fn push_one(s: &Server, token: &str, client: &str, id: &str) -> (u16, Value) {
    s.push(
        token,
        json!({"clientId": client, "mutations": [insert(1, "t", id, json!({"v": 1}))]}),
    )
    .await
}

async fn code_of(s: &Server, token: &str) -> (u16, Value) {
    let (st, b) = s.pull(token, "c", "0", 10).await;
    (st, b["error"]["code"].clone())
}

#[tokio::test]
async fn hs256_tokens_valid_expired_not_yet_valid_wrong_key_none_and_wrong_claim() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(&dir, SECRET);
    let s = Server::start_args(&[
        "--jwt-alg",
        "HS256",
        "--jwt-key-file",
        &file,
        "--jwt-leeway-s",
        "5",
    ])
    .await;
    let t = now();
    let valid = hs256(SECRET, &claims("alice", "team-1"));
    let (st, b) = push_one(&s, &valid, "c-alice", "doc-1").await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = s.pull(&valid, "c-alice", "0", 10).await;
    assert_eq!(st, 200);
    assert_eq!(b["changes"][0]["id"], "doc-1");
    assert_eq!(b["lastMutationId"], 1);

    let unauthorized = json!("UNAUTHORIZED");
    for (why, token) in [
        (
            "expired",
            hs256(
                SECRET,
                &json!({"sub": "alice", "ns": "team-1", "exp": t - 60}),
            ),
        ),
        (
            "not yet valid",
            hs256(
                SECRET,
                &json!({"sub": "alice", "ns": "team-1", "exp": t + 600, "nbf": t + 60}),
            ),
        ),
        (
            "wrong key",
            hs256(
                "another-secret-0123456789-0123456789-x",
                &claims("alice", "team-1"),
            ),
        ),
        ("alg none", unsigned(&claims("alice", "team-1"))),
        (
            "namespace under another claim",
            hs256(
                SECRET,
                &json!({"sub": "alice", "namespace": "team-1", "exp": t + 60}),
            ),
        ),
        (
            "namespace not a string",
            hs256(
                SECRET,
                &json!({"sub": "alice", "ns": ["team-1"], "exp": t + 60}),
            ),
        ),
        (
            "no sub",
            hs256(SECRET, &json!({"ns": "team-1", "exp": t + 60})),
        ),
        (
            "no exp",
            hs256(SECRET, &json!({"sub": "alice", "ns": "team-1"})),
        ),
        ("garbage", "a.b.c".to_string()),
    ] {
        assert_eq!(
            code_of(&s, &token).await,
            (401, unauthorized.clone()),
            "{why}"
        );
        let (st, _) = push_one(&s, &token, "c-x", "doc-x").await;
        assert_eq!(st, 401, "{why}");
    }
    // Within the leeway, an expired token still works.
    let late = hs256(
        SECRET,
        &json!({"sub": "alice", "ns": "team-1", "exp": t - 1}),
    );
    assert_eq!(code_of(&s, &late).await.0, 200);

    // The namespace comes from the claim: another namespace sees nothing.
    let other = hs256(SECRET, &claims("bob", "team-2"));
    let (st, b) = s.pull(&other, "c-bob", "0", 10).await;
    assert_eq!(st, 200);
    assert_eq!(b["changes"], json!([]));
    // Nothing of the refused pushes was applied.
    let (changes, _, _) = s.pull_all(&valid, "c-alice", "0").await;
    assert_eq!(changes.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn client_ids_belong_to_the_jwt_user_not_to_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(&dir, SECRET);
    let s = Server::start_args(&["--jwt-alg", "HS256", "--jwt-key-file", &file]).await;
    let first = hs256(SECRET, &claims("alice", "team"));
    let (st, _) = push_one(&s, &first, "c-1", "a").await;
    assert_eq!(st, 200);
    // A refreshed token of the same user (another exp, another string).
    let refreshed = hs256(
        SECRET,
        &json!({"sub": "alice", "ns": "team", "exp": now() + 3600, "iat": now() + 1}),
    );
    assert_ne!(first, refreshed);
    let (st, b) = s
        .push(
            &refreshed,
            json!({"clientId": "c-1", "mutations": [insert(2, "t", "b", json!({}))]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    // Another user of the namespace cannot take the clientId over.
    let mallory = hs256(SECRET, &claims("mallory", "team"));
    let (st, b) = s
        .push(
            &mallory,
            json!({"clientId": "c-1", "mutations": [insert(3, "t", "c", json!({}))]}),
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (403, json!("CLIENT_ID_TAKEN"))
    );
    s.stop().await;
}

#[tokio::test]
async fn rs256_pem_refuses_other_keys_and_algorithm_confusion() {
    let s = Server::start_args(&[
        "--jwt-alg",
        "RS256",
        "--jwt-key-file",
        &key("rsa_public.pem"),
    ])
    .await;
    let c = claims("alice", "team");
    let ok = signed(Algorithm::RS256, "rsa_private.pem", None, &c);
    assert_eq!(code_of(&s, &ok).await.0, 200);
    for (why, token) in [
        (
            "wrong key",
            signed(Algorithm::RS256, "rsa_other_private.pem", None, &c),
        ),
        (
            "HS256 with the public key as secret",
            confused("rsa_public.pem", &c),
        ),
        (
            "HS256 with the configured secret of nobody",
            hs256(SECRET, &c),
        ),
        (
            "another algorithm of the same family",
            signed(Algorithm::RS512, "rsa_private.pem", None, &c),
        ),
        ("alg none", unsigned(&c)),
    ] {
        assert_eq!(code_of(&s, &token).await.0, 401, "{why}");
    }
    s.stop().await;
}

#[tokio::test]
async fn es256_pem() {
    let s = Server::start_args(&[
        "--jwt-alg",
        "ES256",
        "--jwt-key-file",
        &key("ec_public.pem"),
    ])
    .await;
    let c = claims("alice", "team");
    let ok = signed(Algorithm::ES256, "ec_private.pem", None, &c);
    assert_eq!(code_of(&s, &ok).await.0, 200);
    let rsa = signed(Algorithm::RS256, "rsa_private.pem", None, &c);
    assert_eq!(code_of(&s, &rsa).await.0, 401);
    assert_eq!(code_of(&s, &confused("ec_public.pem", &c)).await.0, 401);
    s.stop().await;
}

#[tokio::test]
async fn jwks_keys_are_picked_by_kid_and_pinned_to_their_algorithm() {
    let s = Server::start_args(&[
        "--jwks-file",
        &key("jwks.json"),
        "--jwt-namespace-claim",
        "https://syncstore.example/ns",
        "--jwt-audience",
        "syncstore",
        "--jwt-issuer",
        "https://idp.example/",
    ])
    .await;
    let c = json!({
        "sub": "auth0|alice", "https://syncstore.example/ns": "team",
        "aud": ["syncstore", "other-api"], "iss": "https://idp.example/",
        "exp": now() + 60,
    });
    let rsa = signed(Algorithm::RS256, "rsa_private.pem", Some("rsa-1"), &c);
    assert_eq!(code_of(&s, &rsa).await.0, 200);
    let ec = signed(Algorithm::ES256, "ec_private.pem", Some("ec-1"), &c);
    assert_eq!(code_of(&s, &ec).await.0, 200);
    let mut wrong_aud = c.clone();
    wrong_aud["aud"] = json!("other-api");
    let mut wrong_iss = c.clone();
    wrong_iss["iss"] = json!("https://evil.example/");
    let mut plain_ns = c.clone();
    plain_ns
        .as_object_mut()
        .unwrap()
        .remove("https://syncstore.example/ns");
    plain_ns["ns"] = json!("team");
    let oct = encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("oct-1".into());
            h
        },
        &c,
        &EncodingKey::from_secret(b"this symmetric key must be ignored!!").unwrap(),
    )
    .unwrap();
    for (why, token) in [
        (
            "unknown kid",
            signed(Algorithm::RS256, "rsa_private.pem", Some("rsa-9"), &c),
        ),
        (
            "no kid with several keys",
            signed(Algorithm::RS256, "rsa_private.pem", None, &c),
        ),
        (
            "a key of the set, but the other's kid",
            signed(Algorithm::RS256, "rsa_private.pem", Some("ec-1"), &c),
        ),
        (
            "wrong key under a good kid",
            signed(Algorithm::RS256, "rsa_other_private.pem", Some("rsa-1"), &c),
        ),
        ("symmetric key from the JWKS", oct),
        (
            "wrong audience",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("rsa-1"),
                &wrong_aud,
            ),
        ),
        (
            "wrong issuer",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("rsa-1"),
                &wrong_iss,
            ),
        ),
        (
            "namespace in the default claim, not the configured one",
            signed(
                Algorithm::RS256,
                "rsa_private.pem",
                Some("rsa-1"),
                &plain_ns,
            ),
        ),
    ] {
        assert_eq!(code_of(&s, &token).await.0, 401, "{why}");
    }
    s.stop().await;
}

#[tokio::test]
async fn jwt_over_websocket_hello_and_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(&dir, SECRET);
    let s = Server::start_args(&["--jwt-alg", "HS256", "--jwt-key-file", &file]).await;
    let token = hs256(SECRET, &claims("alice", "team"));
    let (mut ws, changes, _) = ws_hello(&s.ws_url, &token, "c-ws", None).await;
    assert!(changes.is_empty());
    ws_send(
        &mut ws,
        json!({"type": "push", "rid": "r1", "mutations": [insert(1, "t", "a", json!({}))]}),
    )
    .await;
    let mut got_result = false;
    for _ in 0..3 {
        let f = ws_next(&mut ws).await.unwrap();
        if f["type"] == "pushResult" {
            assert_eq!(f["results"][0]["status"], "applied", "{f}");
            got_result = true;
            break;
        }
    }
    assert!(got_result);
    // A bad JWT on the upgrade is refused before upgrading.
    let bad = hs256(
        "another-secret-0123456789-0123456789-x",
        &claims("a", "team"),
    );
    assert!(ws_connect(&s.ws_url, Some(&bad)).await.is_err());
    assert!(ws_connect(&s.ws_url, Some(&token)).await.is_ok());
    s.stop().await;
}

#[tokio::test]
async fn the_binary_reloads_the_tokens_file_and_jwt_keys_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "old-token team\n").unwrap();
    let secret = secret_file(&dir, SECRET);
    let bin = Bin::start(
        &[
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--jwt-alg",
            "HS256",
            "--jwt-key-file",
            &secret,
        ],
        &[],
    );
    let push = |token: &str, client: &str, mid: u64| {
        let body = json!({"clientId": client, "mutations": [insert(mid, "t", &format!("d{mid}"), json!({}))]});
        let (bin, token) = (&bin, token.to_string());
        async move { bin.push(&token, body).await.0 }
    };
    let jwt_old = hs256(SECRET, &claims("alice", "team"));
    let new_secret = "rotated-secret-0123456789-0123456789-abc";
    let jwt_new = hs256(new_secret, &claims("alice", "team"));
    assert_eq!(push("old-token", "c-old", 1).await, 200);
    assert_eq!(push("new-token", "c-new", 1).await, 401);
    assert_eq!(push(&jwt_old, "c-jwt", 1).await, 200);
    assert_eq!(push(&jwt_new, "c-jwt", 2).await, 401);

    std::fs::write(&tokens, "# rotated\nnew-token team\n").unwrap();
    std::fs::write(&secret, new_secret).unwrap();
    bin.signal("HUP");
    eventually("the new token works", || {
        let f = push("new-token", "c-new", 1);
        async move { f.await == 200 }
    })
    .await;
    assert_eq!(push("old-token", "c-old", 2).await, 401);
    assert_eq!(push(&jwt_new, "c-jwt", 2).await, 200);
    assert_eq!(push(&jwt_old, "c-jwt", 3).await, 401);

    // A broken file keeps the previous configuration.
    std::fs::write(&tokens, "only-a-token-no-namespace\n").unwrap();
    bin.signal("HUP");
    eventually("the failed reload is logged", || {
        let l = bin.logs();
        async move { l.contains("reload failed") }
    })
    .await;
    assert_eq!(push("new-token", "c-new", 2).await, 200);
    assert!(
        !bin.logs().contains("only-a-token-no-namespace"),
        "a bad token line is never logged"
    );
    // Still serving after the signals.
    let r = client().get(bin.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_open_socket_closes_with_4401_when_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(&dir, SECRET);
    let s = Server::start_args(&[
        "--jwt-alg",
        "HS256",
        "--jwt-key-file",
        &file,
        "--jwt-leeway-s",
        "0",
    ])
    .await;
    let exp = now() + 2;
    let short = hs256(SECRET, &json!({"sub": "alice", "ns": "team", "exp": exp}));
    let long = hs256(SECRET, &claims("alice", "team"));
    let opened = std::time::Instant::now();
    let (mut ws, _, _) = ws_hello(&s.ws_url, &short, "c-short", None).await;
    let (mut other, _, _) = ws_hello(&s.ws_url, &long, "c-long", None).await;
    // Still live before expiry: a change arrives.
    s.push_ok(&long, "c-long", json!([insert(1, "t", "a", json!({}))]))
        .await;
    assert_eq!(ws_collect(&mut ws, 1).await.len(), 1);
    let f = loop {
        match ws_next_or_close(&mut ws).await {
            Ok(f) if f["type"] == "error" => break f,
            Ok(_) => continue,
            Err(code) => panic!("closed without an error frame: {code:?}"),
        }
    };
    assert_eq!(f["code"], "UNAUTHORIZED", "{f}");
    assert_eq!(ws_next_or_close(&mut ws).await, Err(Some(4401)));
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        at >= exp as f64 - 0.05,
        "closed {:.2} s before exp",
        exp as f64 - at
    );
    assert!(
        at < exp as f64 + 2.0,
        "closed {:.2} s after exp",
        at - exp as f64
    );
    println!(
        "closed {:.2} s after opening",
        opened.elapsed().as_secs_f64()
    );
    // The other session (a longer token) is untouched.
    s.push_ok(&long, "c-long", json!([insert(2, "t", "b", json!({}))]))
        .await;
    let got = ws_collect(&mut other, 2).await;
    assert_eq!((&got[0]["id"], &got[1]["id"]), (&json!("a"), &json!("b")));
    // The expired token is refused on reconnect; a fresh one is accepted.
    let mut again = ws_connect(&s.ws_url, None).await.unwrap();
    ws_send(
        &mut again,
        json!({"type": "hello", "clientId": "c-short", "token": short}),
    )
    .await;
    let mut code = None;
    for _ in 0..3 {
        if let Err(c) = ws_next_or_close(&mut again).await {
            code = c;
            break;
        }
    }
    assert_eq!(code, Some(4401));
    s.stop().await;
}

#[tokio::test]
async fn read_only_tokens_pull_and_listen_but_pushes_are_403_forbidden() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(&dir, SECRET);
    let s = Server::start_args(&[
        "--token",
        "writer:team",
        "--token",
        "reader:team:ro",
        "--jwt-alg",
        "HS256",
        "--jwt-key-file",
        &file,
    ])
    .await;
    let mut ro_claims = claims("viewer", "team");
    ro_claims["ro"] = json!(true);
    let ro_jwt = hs256(SECRET, &ro_claims);
    let (mut live, _, _) = ws_hello(&s.ws_url, "reader", "c-reader-ws", None).await;
    s.push_ok(
        "writer",
        "c-writer",
        json!([insert(1, "t", "a", json!({"v": 1}))]),
    )
    .await;
    for token in ["reader", ro_jwt.as_str()] {
        let (st, b) = push_one(&s, token, "c-reader", "x").await;
        assert_eq!(st, 403, "{b}");
        assert_eq!(b["error"]["code"], "FORBIDDEN");
        let (changes, _, _) = s.pull_all(token, "c-reader", "0").await;
        assert_eq!(changes.len(), 1, "pull works");
        assert_eq!(changes[0]["id"], "a");
    }
    // Over the socket: live changes arrive, a push answers FORBIDDEN.
    assert_eq!(ws_collect(&mut live, 1).await[0]["id"], "a");
    ws_send(
        &mut live,
        json!({"type": "push", "rid": "r1", "mutations": [insert(1, "t", "y", json!({}))]}),
    )
    .await;
    let f = ws_next(&mut live).await.unwrap();
    assert_eq!(
        (f["type"].clone(), f["code"].clone(), f["rid"].clone()),
        (json!("error"), json!("FORBIDDEN"), json!("r1")),
        "{f}"
    );
    // Non-fatal: the session stays and keeps receiving.
    s.push_ok(
        "writer",
        "c-writer",
        json!([insert(2, "t", "b", json!({}))]),
    )
    .await;
    assert_eq!(ws_collect(&mut live, 1).await[0]["id"], "b");
    let (changes, _, _) = s.pull_all("writer", "c-writer", "0").await;
    assert_eq!(changes.len(), 2, "nothing of the refused pushes applied");
    s.stop().await;
}
