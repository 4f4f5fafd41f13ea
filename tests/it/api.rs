//! `chatctl serve` (issue 19, the part built): real HTTP requests against the running server
//! on the real database. Who may ask what is decided by row level security, as the caller.

use std::sync::Arc;

use chatctl::api::{Api, serve};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::bots::{BOT, prepared, say};
use crate::support::TestDb;

const SECRET: &str = "test-jwt-secret-with-at-least-32-characters";

/// An access token as Supabase Auth signs it, for `user`, expiring in `ttl` seconds (negative:
/// already expired).
fn token(user: Uuid, secret: &str, aud: &str, ttl: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user, "aud": aud, "role": "authenticated", "exp": now + ttl, "iat": now }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The id of the row of `table` whose `column` is `value`.
async fn id_of(c: &mut PgConnection, table: &str, column: &str, value: &str) -> Uuid {
    sqlx::query_scalar(&format!(
        "select id from public.{table} where {column} = $1"
    ))
    .bind(value)
    .fetch_one(c)
    .await
    .unwrap()
}

async fn user_id(c: &mut PgConnection, email: &str) -> Uuid {
    id_of(c, "users", "email", email).await
}

async fn channel_id(c: &mut PgConnection, name: &str) -> Uuid {
    id_of(c, "channels", "name", name).await
}

/// The server on a free port, serving `db`; its base URL.
async fn server(db: &TestDb) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let api = Arc::new(Api {
        pool: db.pool().await,
        jwt_secret: SECRET.into(),
        engine: Arc::new(chatctl::ai::offline::OfflineEngine),
        daily_token_budget: None,
        index: chatctl::search::IndexDir::new(tempfile::tempdir().unwrap().keep()),
    });
    tokio::spawn(serve(listener, api, std::future::pending()));
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// POSTs `body` to the reply endpoint with `bearer`: the status and the JSON answer.
async fn ask(base: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = client()
        .post(format!("{base}/api/chat/generate-response"))
        .json(&body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The example workspace served: the database, a connection, Ada's id, #general's id, and
/// the server's base URL.
async fn served() -> (TestDb, PgConnection, Uuid, Uuid, String) {
    let db = TestDb::new().await;
    let _ = prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let ada = user_id(&mut c, "ada@example.com").await;
    let general = channel_id(&mut c, "general").await;
    let base = server(&db).await;
    (db, c, ada, general, base)
}

#[tokio::test]
async fn a_reply_is_suggested_to_a_member_and_refused_to_everyone_else_in_json() {
    let (_db, mut c, ada, general, base) = served().await;
    let linus = user_id(&mut c, "linus@example.com").await;
    let support = channel_id(&mut c, "support").await;
    let earlier = say(
        &mut c,
        "ken",
        "general",
        "The deploy script lives in ops/deploy.sh",
    )
    .await;
    // Enough talk since that the answer is not in the recent context: it is cited from before.
    sqlx::raw_sql(
        "insert into chat (channel_id, user_id, message)
         select c.id, u.id, jsonb_build_object('text', 'lunch at noon, table ' || g)
           from channels c, users u, generate_series(1, 60) g
          where c.name = 'general' and u.email = 'ken@example.com'",
    )
    .execute(&mut c)
    .await
    .unwrap();
    say(
        &mut c,
        "margaret",
        "support",
        "Customer 4711 reports the deploy broke billing",
    )
    .await;

    // A member of #general: the suggestion, with the earlier message it draws on.
    let body = json!({ "channel_id": general, "user_id": ada, "last_message": "where is the deploy script?" });
    let (status, answer) = ask(
        &base,
        Some(&token(ada, SECRET, "authenticated", 600)),
        body.clone(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["engine"], "offline");
    assert!(!answer["ai_response"].as_str().unwrap().is_empty());
    assert_eq!(answer["cited_message_ids"], json!([earlier.to_string()]));

    // #support is private and Linus is not in it: it is not there for him, and nothing of it
    // comes back.
    let (status, answer) = ask(
        &base,
        Some(&token(linus, SECRET, "authenticated", 600)),
        json!({ "channel_id": support, "user_id": linus, "last_message": "what broke billing?" }),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("not_found")),
        "{answer}"
    );
    assert!(!answer.to_string().contains("4711"));

    // Someone else's user_id: refused.
    let (status, answer) = ask(
        &base,
        Some(&token(linus, SECRET, "authenticated", 600)),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("forbidden")),
        "{answer}"
    );

    // No token, an expired one, one signed with another secret, one for another audience.
    for bad in [
        None,
        Some(token(ada, SECRET, "authenticated", -120)),
        Some(token(
            ada,
            "another-secret-that-is-long-enough-too",
            "authenticated",
            600,
        )),
        Some(token(ada, SECRET, "anon", 600)),
    ] {
        let (status, answer) = ask(&base, bad.as_deref(), body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("unauthorized")),
            "{answer}"
        );
    }

    // A thread that is not the channel's.
    let (status, _) = ask(
        &base,
        Some(&token(ada, SECRET, "authenticated", 600)),
        json!({ "channel_id": general, "user_id": ada, "last_message": "and?", "thread_id": Uuid::new_v4() }),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn malformed_requests_get_their_own_status_and_code() {
    let (_db, _c, ada, general, base) = served().await;
    let bearer = token(ada, SECRET, "authenticated", 600);
    let url = format!("{base}/api/chat/generate-response");
    let send = |req: reqwest::RequestBuilder| async move {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };
    let cases = [
        (
            client()
                .post(&url)
                .bearer_auth(&bearer)
                .header("content-type", "application/json")
                .body("{not json"),
            (400, "bad_request"),
        ),
        (
            client()
                .post(&url)
                .bearer_auth(&bearer)
                .body(json!({}).to_string()),
            (415, "unsupported_media_type"),
        ),
        (
            client()
                .post(&url)
                .bearer_auth(&bearer)
                .json(&json!({ "channel_id": general })),
            (422, "invalid_request"),
        ),
        (
            client()
                .post(&url)
                .bearer_auth(&bearer)
                .json(&json!({ "channel_id": general, "user_id": ada, "last_message": "  " })),
            (422, "invalid_request"),
        ),
        (
            client().get(&url).bearer_auth(&bearer),
            (405, "method_not_allowed"),
        ),
        (
            client().get(format!("{base}/api/nothing")),
            (404, "not_found"),
        ),
    ];
    for (req, (status, code)) in cases {
        assert_eq!(send(req).await, (status, code.to_owned()));
    }
    let health = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn chatctl_serve_says_where_it_listens_and_stops_on_sigterm() {
    use std::io::BufRead as _;
    let db = TestDb::new().await;
    // Without the project's JWT secret it cannot verify anyone: a usage error.
    let out = crate::support::chatctl(&[("DATABASE_URL", &db.url)])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let (_, stderr) = crate::support::outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("SUPABASE_JWT_SECRET"), "{stderr}");

    let child =
        crate::support::chatctl_std(&[("DATABASE_URL", &db.url), ("SUPABASE_JWT_SECRET", SECRET)])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    // Killed on the way out whatever happens, so a failure cannot leave it running.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let mut server = Running(child);
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("serving the API on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let health = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(
        server.0.wait().unwrap().success(),
        "SIGTERM is a clean stop"
    );
}
