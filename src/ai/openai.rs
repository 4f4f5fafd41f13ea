//! The OpenAI-compatible engine: chat completions through async-openai against OpenAI or any
//! server that speaks its API (Azure-style gateways, Ollama, vLLM, llama.cpp).
//!
//! Every request goes through the same steps: the asker's daily token budget is reserved in
//! the database (refused, logged and counted when spent), a concurrency permit is taken, the
//! request is sent with retries (429, 5xx, timeouts, connection errors; `Retry-After`
//! honoured up to `openai.max_retry_wait`), and the budget is settled to the server's count.
//! A digest asks for JSON citing message references (`m3`); the references are mapped back to
//! real ids and anything citing a message that is not in the window is dropped and counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequestArgs,
};
use serde::Deserialize;
use sqlx::PgPool;

use futures_util::TryStreamExt as _;

use super::builder::Counter;
use super::offline::{Cited, Counts, Digest, Thread};
use super::prompt::{Transcript, render, tokens};
use super::{AiError, AiFuture, Ask, LanguageModel, Message, MessageStream, Question, Stats};
use crate::config::AiConfig;
use crate::error::{Error, Kind, Result};

/// The OpenAI-compatible engine.
pub struct OpenAiEngine {
    client: Client<OpenAIConfig>,
    model: String,
    settings: AiConfig,
    pool: Option<PgPool>,
    stats: Arc<Stats>,
    permits: tokio::sync::Semaphore,
}

impl OpenAiEngine {
    /// The engine for `settings` ([`crate::config::Config::ai`]), which must name a model.
    pub fn new(settings: AiConfig, pool: Option<PgPool>, stats: Arc<Stats>) -> Result<Self> {
        let model = settings.model.clone().ok_or_else(|| {
            Error::usage("no model configured for the OpenAI-compatible engine")
                .with_help("set `openai.model` (CHATCTL_OPENAI__MODEL)")
        })?;
        // reqwest is built without a TLS provider of its own: rustls uses ring, as sqlx does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = OpenAIConfig::new();
        if let Some(url) = &settings.base_url {
            config = config.with_api_base(url.trim_end_matches('/'));
        }
        // Local servers (Ollama, llama.cpp) need no key; a placeholder keeps the header valid.
        config = config.with_api_key(settings.api_key.as_deref().unwrap_or("none"));
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::usage(format!("cannot build the HTTP client: {e}")))?;
        let service = Retry {
            inner: ReqwestService::new(http),
            max_retries: settings.max_retries,
            max_wait: settings.max_retry_wait,
            stats: stats.clone(),
        };
        let client = Client::with_config(config).with_http_service(service);
        Ok(OpenAiEngine {
            client,
            model,
            permits: tokio::sync::Semaphore::new(settings.concurrency.max(1)),
            settings,
            pool,
            stats,
        })
    }

    /// The room for a transcript in one request: the context, less the answer and the prompt.
    fn room(&self, ask: &Ask<'_>, template: &str) -> usize {
        let fixed = tokens(&system(ask)) + tokens(template) + 64;
        self.settings
            .context_tokens
            .saturating_sub(self.settings.max_tokens as usize + fixed)
            .max(256)
    }

    /// One chat completion: budget, permit, request with retries, usage.
    async fn complete(&self, ask: &Ask<'_>, user: String) -> Result<String> {
        let system = system(ask);
        let estimate =
            (tokens(&system) + tokens(&user)) as u64 + u64::from(self.settings.max_tokens);
        let reservation = match (&self.pool, ask.budget) {
            (Some(pool), Some(budget)) => {
                Some(reserve(pool, ask.payer, estimate, budget, &self.stats).await?)
            }
            _ => None,
        };
        let result = self.send(system, user).await;
        let used = result.as_ref().map_or(0, |(_, used)| *used);
        if let (Some(pool), Some(r)) = (&self.pool, reservation) {
            settle(pool, ask.payer, r, used).await?;
        }
        match result {
            Ok((text, _)) => Ok(text),
            Err(e) => {
                Stats::add(&self.stats.failures, 1);
                Err(e)
            }
        }
    }

    async fn send(&self, system: String, user: String) -> Result<(String, u64)> {
        let request = CreateChatCompletionRequestArgs::default()
            .model(&self.model)
            .max_completion_tokens(self.settings.max_tokens)
            .temperature(self.settings.temperature)
            .messages([
                ChatCompletionRequestSystemMessageArgs::default()
                    .content(system)
                    .build()?
                    .into(),
                ChatCompletionRequestUserMessageArgs::default()
                    .content(user)
                    .build()?
                    .into(),
            ])
            .build()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::failed("the AI engine is shutting down"))?;
        let log = Arc::new(CallLog::default());
        let answer = CALL
            .scope(log.clone(), self.client.chat().create(request))
            .await;
        let response = answer.map_err(|e| ai_error(e, &log, self.settings.timeout))?;
        let used = response
            .usage
            .as_ref()
            .map_or(0, |u| u64::from(u.total_tokens));
        Stats::add(&self.stats.tokens, used);
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| into_error(AiError::Malformed("the answer has no text".into())))?;
        Ok((text.trim().to_owned(), used))
    }

    /// The digest of one part, or the merge of partial digests, parsed and mapped back.
    async fn digest_part(&self, ask: &Ask<'_>, template: &str, part: &str) -> Result<Answer> {
        let text = self
            .complete(ask, render(template, &values(ask, part)))
            .await?;
        parse_answer(&text)
    }

    /// One digest of a group of partial digests (a group of one is already that).
    async fn merge(&self, ask: &Ask<'_>, mut group: Vec<Answer>) -> Result<Answer> {
        if group.len() == 1 {
            return Ok(group.remove(0));
        }
        let lines: String = group.iter().map(Answer::as_lines).collect();
        self.digest_part(ask, &ask.prompts.reduce, &lines).await
    }
}

/// A window (or a thread) read as parts of about `room` tokens each, one at a time.
struct Parts<'a> {
    messages: MessageStream<'a>,
    room: usize,
    /// The window position of the part last returned.
    offset: usize,
    read: usize,
    ahead: Option<Message>,
}

impl<'a> Parts<'a> {
    fn new(messages: MessageStream<'a>, room: usize) -> Parts<'a> {
        Parts {
            messages,
            room,
            offset: 0,
            read: 0,
            ahead: None,
        }
    }

    /// The next part (`None` at the end), each message counted in `counter` as it is read.
    async fn next(&mut self, counter: &mut Counter) -> Result<Option<Vec<Message>>> {
        let mut part = Vec::new();
        let mut used = 0;
        loop {
            let next = match self.ahead.take() {
                Some(m) => Some(m),
                None => {
                    let m = self.messages.try_next().await?;
                    if let Some(m) = &m {
                        counter.add(m);
                    }
                    m
                }
            };
            let Some(m) = next else { break };
            // A line's tokens, a little over (its reference, author and time).
            let t = tokens(&m.text) + tokens(&m.author) + 8;
            if used + t > self.room && !part.is_empty() {
                self.ahead = Some(m);
                break;
            }
            used += t;
            part.push(m);
        }
        if part.is_empty() {
            return Ok(None);
        }
        self.offset = self.read;
        self.read += part.len();
        Ok(Some(part))
    }
}

/// The system message of a request.
fn system(ask: &Ask<'_>) -> String {
    let persona = persona(ask);
    render(
        &ask.prompts.system,
        &[
            ("persona", persona.as_str()),
            ("bot", ask.bot),
            ("channel", ask.channel),
        ],
    )
}

fn values<'a>(ask: &Ask<'a>, transcript: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("bot", ask.bot),
        ("channel", ask.channel),
        ("transcript", transcript),
    ]
}

/// The persona line of the system message: the bot's, else a plain assistant.
fn persona(ask: &Ask<'_>) -> String {
    match ask.persona {
        Some(p) => p.to_owned(),
        None => format!("You are {}, a helpful assistant in a team chat.", ask.bot),
    }
}

impl LanguageModel for OpenAiEngine {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn digest_stream<'a>(
        &'a self,
        ask: Ask<'a>,
        messages: MessageStream<'a>,
    ) -> AiFuture<'a, Digest> {
        Box::pin(async move {
            // Map: each part of the window that fits the context, read as it comes; only the
            // part being written and the partial digests are held.
            let room = self.room(&ask, &ask.prompts.digest);
            let mut counter = Counter::default();
            let mut cited = Learnt::default();
            let mut parts = Vec::new();
            let mut reader = Parts::new(messages, room);
            while let Some(part) = reader.next(&mut counter).await? {
                let transcript = Transcript::part(&part, reader.offset, self.settings.redact);
                for chunk in transcript.chunks(room) {
                    let answer = self.digest_part(&ask, &ask.prompts.digest, &chunk).await?;
                    cited.learn(&answer, &transcript, &part);
                    parts.push(answer);
                }
            }
            if counter.messages() == 0 {
                return Ok(super::builder::DigestBuilder::new().finish());
            }
            // Reduce: merge the partial digests, in groups that fit, until one is left.
            while parts.len() > 1 {
                let room = self.room(&ask, &ask.prompts.reduce);
                let before = parts.len();
                let mut merged = Vec::new();
                let mut group: Vec<Answer> = Vec::new();
                let mut used = 0;
                for p in std::mem::take(&mut parts) {
                    let t = tokens(&p.as_lines());
                    if !group.is_empty() && used + t > room {
                        merged.push(self.merge(&ask, std::mem::take(&mut group)).await?);
                        used = 0;
                    }
                    used += t;
                    group.push(p);
                }
                merged.push(self.merge(&ask, group).await?);
                if merged.len() >= before {
                    return Err(into_error(AiError::Malformed(
                        "the partial digests do not fit the context to be merged".into(),
                    )));
                }
                parts = merged;
            }
            let answer = parts.pop().unwrap_or_default();
            let (digest, invented) = answer.into_digest(counter.counts(), &cited);
            if invented > 0 {
                Stats::add(&self.stats.invented_citations, invented as u64);
                tracing::warn!(
                    invented,
                    "the model cited messages that are not in the window; those items were dropped"
                );
            }
            if digest.highlights.is_empty() {
                return Err(into_error(AiError::Malformed(
                    "the digest cites no message of the window".into(),
                )));
            }
            Ok(digest)
        })
    }

    fn thread_summary_stream<'a>(
        &'a self,
        ask: Ask<'a>,
        messages: MessageStream<'a>,
    ) -> AiFuture<'a, String> {
        Box::pin(async move {
            // Each part that fits the context, summarized as it is read; then, for a thread
            // longer than the context, the parts' summaries summarized.
            let room = self.room(&ask, &ask.prompts.thread_summary);
            let mut summaries = Vec::new();
            let mut reader = Parts::new(messages, room);
            while let Some(part) = reader.next(&mut Counter::default()).await? {
                let transcript = Transcript::part(&part, reader.offset, self.settings.redact);
                for chunk in transcript.chunks(room) {
                    let prompt = render(&ask.prompts.thread_summary, &values(&ask, &chunk));
                    summaries.push(self.complete(&ask, prompt).await?);
                }
            }
            if summaries.len() <= 1 {
                return Ok(summaries
                    .pop()
                    .unwrap_or_else(|| super::offline::thread_summary(&[])));
            }
            let joined = summaries.join("\n\n");
            let prompt = render(&ask.prompts.thread_summary, &values(&ask, &joined));
            self.complete(&ask, prompt).await
        })
    }

    fn reply<'a>(&'a self, ask: Ask<'a>, question: Question<'a>) -> AiFuture<'a, String> {
        Box::pin(async move {
            let redact = self.settings.redact;
            let related = Transcript::new(question.related, redact).lines.join("\n");
            // The recent messages that fit, newest kept.
            let transcript = Transcript::new(ask.messages, redact);
            let room = self
                .room(&ask, &ask.prompts.reply)
                .saturating_sub(tokens(&related) + tokens(question.text));
            let mut recent: Vec<&str> = Vec::new();
            let mut used = 0;
            for line in transcript.lines.iter().rev() {
                used += tokens(line);
                if used > room {
                    break;
                }
                recent.push(line);
            }
            recent.reverse();
            let recent = recent.join("\n");
            let question_text = if redact {
                super::prompt::redact(question.text)
            } else {
                question.text.to_owned()
            };
            let prompt = render(
                &ask.prompts.reply,
                &[
                    ("bot", ask.bot),
                    ("channel", ask.channel),
                    ("author", question.author),
                    ("question", &question_text),
                    (
                        "related",
                        if related.is_empty() {
                            "(none)"
                        } else {
                            &related
                        },
                    ),
                    ("transcript", &recent),
                ],
            );
            self.complete(&ask, prompt).await
        })
    }
}

/// A digest as the model writes it: each item cites a reference (`m3`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Answer {
    highlights: Vec<Item>,
    threads: Vec<Item>,
    decisions: Vec<Item>,
    open_questions: Vec<Item>,
    action_items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    #[serde(rename = "ref", alias = "id")]
    reference: String,
    #[serde(default)]
    text: String,
}

impl Answer {
    fn sections(&self) -> [(&'static str, &Vec<Item>); 5] {
        [
            ("highlights", &self.highlights),
            ("threads", &self.threads),
            ("decisions", &self.decisions),
            ("open_questions", &self.open_questions),
            ("action_items", &self.action_items),
        ]
    }

    /// The partial digest as input to a merge: one JSON object a line.
    fn as_lines(&self) -> String {
        let mut out = String::new();
        for (name, items) in self.sections() {
            for i in items {
                out.push_str(
                    &serde_json::json!({"section": name, "ref": i.reference, "text": i.text})
                        .to_string(),
                );
                out.push('\n');
            }
        }
        out
    }

    /// The [`Digest`]: participants and counts from the source, each item's author from the
    /// message it cites; items citing no message of the window are dropped (and counted).
    fn into_digest(self, source: Counts, known: &Learnt) -> (Digest, usize) {
        let mut invented = 0;
        let mut cite = |items: Vec<Item>| -> Vec<Cited> {
            let mut out: Vec<Cited> = Vec::new();
            for i in items {
                match known.0.get(i.reference.trim()) {
                    Some((id, author)) if !out.iter().any(|c| &c.id == id) => out.push(Cited {
                        id: id.clone(),
                        author: author.clone(),
                        text: super::offline::clip(&i.text, 300),
                    }),
                    Some(_) => {}
                    None => invented += 1,
                }
            }
            out
        };
        let threads = cite(self.threads)
            .into_iter()
            .map(|c| {
                let stats = source.threads.iter().find(|t| t.id == c.id);
                Thread {
                    replies: stats.map_or(0, |t| t.replies),
                    participants: stats.map(|t| t.participants.clone()).unwrap_or_default(),
                    id: c.id,
                    author: c.author,
                    text: c.text,
                }
            })
            .collect();
        let digest = Digest {
            messages: source.messages,
            participants: source.participants,
            threads,
            decisions: cite(self.decisions),
            open_questions: cite(self.open_questions),
            action_items: cite(self.action_items),
            highlights: cite(self.highlights),
        };
        (digest, invented)
    }
}

/// The messages the partial digests cite, by reference (`m2001`): the id and the author,
/// learnt while the part they are in is held, so that the merges' citations can be mapped
/// back after it is gone.
#[derive(Debug, Default)]
struct Learnt(std::collections::HashMap<String, (String, String)>);

impl Learnt {
    fn learn(&mut self, answer: &Answer, transcript: &Transcript, part: &[Message]) {
        for (_, items) in answer.sections() {
            for i in items {
                let reference = i.reference.trim();
                if let Some(id) = transcript.id(reference)
                    && let Some(m) = part.iter().find(|m| m.id == id)
                {
                    self.0
                        .insert(reference.to_owned(), (m.id.clone(), m.author.clone()));
                }
            }
        }
    }
}

/// The JSON object in a model's answer (models wrap it in code fences or prose).
fn parse_answer(text: &str) -> Result<Answer> {
    let start = text.find('{');
    let end = text.rfind('}');
    let json = match (start, end) {
        (Some(s), Some(e)) if s < e => &text[s..=e],
        _ => {
            return Err(into_error(AiError::Malformed(format!(
                "expected a JSON digest, got: {}",
                super::offline::clip(text, 120)
            ))));
        }
    };
    serde_json::from_str(json).map_err(|e| {
        into_error(AiError::Malformed(format!(
            "the digest is not the JSON asked for ({e})"
        )))
    })
}

/// An [`AiError`] with the exit code it means for the command line.
pub fn into_error(e: AiError) -> anyhow::Error {
    let kind = match &e {
        AiError::BudgetSpent { .. } => Kind::TempFail,
        AiError::Unavailable { .. } => Kind::Unavailable,
        AiError::Refused {
            status: 401 | 403, ..
        } => Kind::Usage,
        AiError::Refused { .. } | AiError::Malformed(_) => Kind::Failed,
    };
    let help = match &e {
        AiError::BudgetSpent { .. } => {
            Some("raise `ai.daily_token_budget`, or wait for tomorrow (UTC)")
        }
        AiError::Refused {
            status: 401 | 403, ..
        } => Some("check OPENAI_API_KEY (or `openai.api_key`) and `openai.base_url`"),
        AiError::Refused { status: 404, .. } => Some("check `openai.model` and `openai.base_url`"),
        _ => None,
    };
    let mut err = Error::new(kind, e.to_string());
    if let Some(h) = help {
        err = err.with_help(h);
    }
    anyhow::Error::from(e).context(err)
}

/// What the retry layer saw while sending one request.
#[derive(Debug, Default)]
struct CallLog {
    attempts: std::sync::atomic::AtomicU32,
    gave_up: std::sync::Mutex<Option<String>>,
}

tokio::task_local! {
    static CALL: Arc<CallLog>;
}

fn ai_error(e: OpenAIError, log: &CallLog, timeout: Duration) -> anyhow::Error {
    let attempts = log
        .attempts
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(1);
    let gave_up = log.gave_up.lock().unwrap_or_else(|p| p.into_inner()).take();
    let last = |what: String| match &gave_up {
        Some(why) => format!("{what}; {why}"),
        None => what,
    };
    into_error(match e {
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let message = crate::error::scrub(&api.api_error.message);
            if status == 429 || status >= 500 {
                AiError::Unavailable {
                    attempts,
                    last: last(format!("HTTP {status}: {message}")),
                }
            } else {
                AiError::Refused { status, message }
            }
        }
        OpenAIError::Reqwest(r) if r.is_timeout() => AiError::Unavailable {
            attempts,
            last: last(format!("no answer within {}s", timeout.as_secs_f32())),
        },
        OpenAIError::Reqwest(r) => AiError::Unavailable {
            attempts,
            last: last(crate::error::scrub(&r.to_string())),
        },
        OpenAIError::JSONDeserialize(err, _) => AiError::Malformed(format!(
            "the server's answer is not a chat completion ({err})"
        )),
        other => AiError::Malformed(crate::error::scrub(&other.to_string())),
    })
}

/// Retries a request after a 429 (unless the quota is spent for good), a 5xx, a timeout or a
/// connection error: `Retry-After` (or `retry-after-ms`) when the server sends one and it is
/// no longer than `max_wait`, else exponential backoff with jitter.
#[derive(Clone)]
struct Retry {
    inner: ReqwestService,
    max_retries: u32,
    max_wait: Duration,
    stats: Arc<Stats>,
}

type Sent = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for Retry {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Sent;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.send(request).await })
    }
}

impl Retry {
    async fn send(mut self, request: HttpRequestFactory) -> Result<reqwest::Response, OpenAIError> {
        let log = CALL.try_with(Arc::clone).ok();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if let Some(l) = &log {
                l.attempts
                    .store(attempt, std::sync::atomic::Ordering::Relaxed);
            }
            Stats::add(&self.stats.requests, 1);
            let result = tower::Service::call(&mut self.inner, request.clone()).await;
            let wait = match &result {
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    Some(retry_after(r.headers()))
                }
                Ok(_) => return result,
                // A connection refused, reset or closed before the answer (as the SDKs
                // of OpenAI retry them).
                Err(OpenAIError::Reqwest(e))
                    if e.is_timeout() || e.is_connect() || e.is_request() =>
                {
                    Some(None)
                }
                Err(_) => return result,
            };
            let Some(asked) = wait else {
                return result;
            };
            if attempt > self.max_retries {
                return result;
            }
            // A 429 for a spent quota will not pass by waiting.
            let result = match result {
                Ok(r) if r.status().as_u16() == 429 => {
                    let (quota, r) = quota_spent(r).await?;
                    if quota {
                        return Ok(r);
                    }
                    Ok(r)
                }
                other => other,
            };
            let delay = match asked {
                Some(d) if d > self.max_wait => {
                    if let Some(l) = &log {
                        *l.gave_up.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                            "the server asked to retry after {}s, more than `openai.max_retry_wait` ({}s)",
                            d.as_secs(),
                            self.max_wait.as_secs()
                        ));
                    }
                    return result;
                }
                Some(d) => d,
                None => backoff(attempt),
            };
            drop(result);
            Stats::add(&self.stats.retries, 1);
            tracing::warn!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                "model server busy or unreachable; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

/// Exponential backoff from 500 ms, capped at 8 s, with up to 25% jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempt.saturating_sub(1).min(4));
    let base = base.min(Duration::from_secs(8));
    let jitter = rand::random::<f64>() * 0.25;
    base.mul_f64(1.0 + jitter)
}

/// The wait a response asks for: `retry-after-ms`, else `Retry-After` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// Whether a 429 says the account's quota is spent (`insufficient_quota`); the response is
/// rebuilt from its body so the caller can still read it.
async fn quota_spent(r: reqwest::Response) -> Result<(bool, reqwest::Response), OpenAIError> {
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await?.to_vec();
    let quota = serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| {
        v["error"]["type"] == "insufficient_quota" || v["error"]["code"] == "insufficient_quota"
    });
    let mut rebuilt = http_response(status, body);
    *rebuilt.headers_mut() = headers;
    Ok((quota, rebuilt))
}

fn http_response(status: reqwest::StatusCode, body: Vec<u8>) -> reqwest::Response {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    reqwest::Response::from(r)
}

/// A reservation of tokens against a bot's daily budget.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    day: chrono::NaiveDate,
    tokens: u64,
}

/// Reserves `estimate` tokens of `bot`'s budget for today (UTC), in one statement that
/// refuses when the budget would be passed; a refusal is counted, logged and returned as
/// [`AiError::BudgetSpent`].
async fn reserve(
    pool: &PgPool,
    bot: &str,
    estimate: u64,
    budget: u64,
    stats: &Stats,
) -> Result<Reservation> {
    let day = chrono::Utc::now().date_naive();
    let est = i64::try_from(estimate).unwrap_or(i64::MAX);
    let cap = i64::try_from(budget).unwrap_or(i64::MAX);
    let reserved: Option<i64> = sqlx::query_scalar(
        "insert into chatctl.ai_usage as u (bot, day, tokens, requests)
         select $1, $2, $3, 1 where $3 <= $4
         on conflict (bot, day) do update set tokens = u.tokens + excluded.tokens, requests = u.requests + 1
          where u.tokens + excluded.tokens <= $4
         returning tokens",
    )
    .bind(bot)
    .bind(day)
    .bind(est)
    .bind(cap)
    .fetch_optional(pool)
    .await?;
    if reserved.is_some() {
        return Ok(Reservation {
            day,
            tokens: estimate,
        });
    }
    let used: i64 = sqlx::query_scalar(
        "insert into chatctl.ai_usage as u (bot, day, refusals) values ($1, $2, 1)
         on conflict (bot, day) do update set refusals = u.refusals + 1
         returning tokens",
    )
    .bind(bot)
    .bind(day)
    .fetch_one(pool)
    .await?;
    Stats::add(&stats.budget_refusals, 1);
    tracing::warn!(
        bot,
        used,
        budget,
        asked = estimate,
        "daily token budget spent; request refused"
    );
    Err(into_error(AiError::BudgetSpent {
        bot: bot.to_owned(),
        used: u64::try_from(used).unwrap_or(0),
        budget,
    }))
}

/// Replaces a reservation by what the server counted (nothing when the request failed).
async fn settle(pool: &PgPool, bot: &str, r: Reservation, used: u64) -> Result<()> {
    let delta = i64::try_from(used).unwrap_or(i64::MAX) - i64::try_from(r.tokens).unwrap_or(0);
    sqlx::query(
        "update chatctl.ai_usage set tokens = greatest(0, tokens + $3) where bot = $1 and day = $2",
    )
    .bind(bot)
    .bind(r.day)
    .bind(delta)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(
            backoff(1) >= Duration::from_millis(500) && backoff(1) < Duration::from_millis(700)
        );
        assert!(backoff(3) >= Duration::from_secs(2));
        assert!(backoff(30) <= Duration::from_secs(10));
    }

    #[test]
    fn answers_in_code_fences_parse_and_prose_does_not() {
        let a =
            parse_answer("```json\n{\"highlights\": [{\"ref\": \"m2\", \"text\": \"x\"}]}\n```")
                .unwrap();
        assert_eq!(a.highlights[0].reference, "m2");
        assert!(parse_answer("Sure! Here is the digest.").is_err());
    }
}
