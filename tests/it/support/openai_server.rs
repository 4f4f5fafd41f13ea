//! A stand-in for an OpenAI-compatible server (a hosted model cannot run here): a real HTTP
//! server on a local port that answers `POST /v1/chat/completions` with response bodies the
//! API documents or was seen sending, kept in `tests/fixtures/openai/` with their sources: a
//! `chat.completion` object with `usage` (the test's answer text and token counts put in it),
//! and errors in the API's `{"error": {"message", "type", "param", "code"}}` envelope with
//! 400, 401, 404, 429 (with `Retry-After` and the `x-ratelimit-*` headers), 500 or 503.
//! Each request is answered by a script, which sees the request's index and JSON body; the
//! server records every request and how many were in flight at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

/// A recorded body of `tests/fixtures/openai/`.
fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openai")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Answer {
    /// The API's `chat.completion` example, its message `content` and its `usage` counting
    /// `total_tokens`.
    pub fn completion(content: &str, total_tokens: u32) -> Answer {
        let mut body: Value = serde_json::from_str(&fixture("chat_completion.json")).unwrap();
        let prompt = total_tokens * 3 / 4;
        body["choices"][0]["message"]["content"] = content.into();
        body["usage"]["prompt_tokens"] = prompt.into();
        body["usage"]["completion_tokens"] = (total_tokens - prompt).into();
        body["usage"]["total_tokens"] = total_tokens.into();
        Answer {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// A recorded error body (`error_<status>_<what>.json`) with its status.
    pub fn recorded(status: u16, name: &str) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: fixture(name),
            delay: Duration::ZERO,
        }
    }

    /// The recorded 429 asking to retry after `seconds`, with the rate-limit headers.
    pub fn rate_limited(seconds: u64) -> Answer {
        Answer::recorded(429, "error_429_rate_limit_exceeded.json")
            .header("retry-after", &seconds.to_string())
            .header("x-ratelimit-limit-tokens", "30000")
            .header("x-ratelimit-remaining-tokens", "0")
            .header("x-ratelimit-reset-tokens", &format!("{seconds}s"))
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Answer {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

type Script = Box<dyn FnMut(usize, &Value) -> Answer + Send>;

struct State {
    script: Mutex<Script>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The running stand-in; stops when dropped.
pub struct StandIn {
    /// The base URL to configure (`http://127.0.0.1:PORT/v1`).
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    pub async fn start(script: impl FnMut(usize, &Value) -> Answer + Send + 'static) -> StandIn {
        let state = Arc::new(State {
            script: Mutex::new(Box::new(script)),
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(handle))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { url, state, task }
    }

    /// The JSON bodies of the requests received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The `authorization` header of the first request.
    pub fn authorization(&self) -> Option<String> {
        let r = self.state.requests.lock().unwrap();
        r.first()
            .and_then(|(h, _)| h.get("authorization"))
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The most requests the server was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = {
        let mut requests = state.requests.lock().unwrap();
        let n = requests.len();
        requests.push((headers, json.clone()));
        drop(requests);
        (state.script.lock().unwrap())(n, &json)
    };
    tokio::time::sleep(answer.delay).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap(),
        answer.body.clone(),
    )
        .into_response();
    for (name, value) in &answer.headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

/// The user message of a request.
pub fn prompt(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The message references (`m12`) at the start of the transcript lines of a prompt.
pub fn refs(prompt: &str) -> Vec<String> {
    prompt
        .lines()
        .filter_map(|l| {
            let first = l.split(' ').next()?;
            let n = first.strip_prefix('m')?;
            (n.parse::<usize>().is_ok() && l[first.len()..].starts_with(" @"))
                .then(|| first.to_owned())
        })
        .collect()
}

/// A digest answer citing `cited` as highlights, and the first as a decision.
pub fn digest_json(cited: &[String]) -> String {
    let items: Vec<Value> = cited
        .iter()
        .map(|r| json!({"ref": r, "text": format!("what {r} said")}))
        .collect();
    json!({
        "highlights": items,
        "threads": [],
        "decisions": items.first().cloned().into_iter().collect::<Vec<_>>(),
        "open_questions": [],
        "action_items": []
    })
    .to_string()
}
