//! The Phoenix channel protocol as Supabase Realtime speaks it with `vsn=1.0.0`: one JSON
//! object per text frame (`../shared/REALTIME.md` §2).
//!
//! The client sends `{topic, event, payload, ref, join_ref}`; the server sends
//! `{topic, event, payload, ref}` and never a `join_ref`: a reply carries the request's `ref`,
//! pushes carry `null`, and `phx_close`/`phx_error` carry the join_ref of the closed join.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One frame, either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub topic: String,
    pub event: String,
    #[serde(default)]
    pub payload: Value,
    /// Always present on the wire (the server requires the key), possibly `null`.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_ref: Option<String>,
}

impl Frame {
    /// A client push on `topic`.
    pub fn push(
        topic: &str,
        event: &str,
        payload: Value,
        reference: u64,
        join_ref: Option<&str>,
    ) -> Frame {
        Frame {
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
            reference: Some(reference.to_string()),
            join_ref: join_ref.map(str::to_owned),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a frame is plain JSON")
    }

    /// A server frame; `None` for what is not one (logged by the caller, never fatal).
    pub fn decode(text: &str) -> Option<Frame> {
        serde_json::from_str(text).ok()
    }

    /// `payload.status` of a `phx_reply` or `system` frame.
    pub fn status(&self) -> Option<&str> {
        self.payload.get("status").and_then(Value::as_str)
    }

    /// The reason of an error reply: `response.reason`, or a bare string response
    /// (`"payload_size_exceeded"`), or the response as JSON.
    pub fn reason(&self) -> String {
        match self.payload.get("response") {
            Some(Value::String(s)) => s.clone(),
            Some(r) => r
                .get("reason")
                .or_else(|| r.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| r.to_string()),
            None => String::new(),
        }
    }
}

/// A retry schedule: the given delays, then the last one forever.
#[derive(Debug, Clone)]
pub struct Backoff(pub Vec<Duration>);

impl Backoff {
    /// realtime-js's reconnect schedule: 1, 2, 5, 10 s, then every 10 s.
    pub fn reconnect() -> Backoff {
        Backoff([1, 2, 5, 10].map(Duration::from_secs).to_vec())
    }

    /// The delay before attempt `n` (0-based), with up to 20% jitter so replicas spread out.
    pub fn delay(&self, n: usize) -> Duration {
        let base = self
            .0
            .get(n)
            .or(self.0.last())
            .copied()
            .unwrap_or(Duration::from_secs(1));
        let jitter = rand::random::<f64>() * 0.2;
        base.mul_f64(1.0 + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_without_join_ref_and_with_null_ref_decode() {
        let f = Frame::decode(
            r#"{"topic":"realtime:x","event":"system","payload":{"status":"ok"},"ref":null}"#,
        )
        .unwrap();
        assert_eq!(f.reference, None);
        assert_eq!(f.status(), Some("ok"));
        assert!(Frame::decode("not json").is_none());
    }

    #[test]
    fn client_frames_always_carry_ref_and_join_ref() {
        let f = Frame::push("phoenix", "heartbeat", serde_json::json!({}), 7, None);
        let v: Value = serde_json::from_str(&f.encode()).unwrap();
        assert_eq!(v["ref"], "7");
        assert!(v.get("join_ref").is_none());
        let f = Frame::push(
            "realtime:x",
            "phx_join",
            serde_json::json!({}),
            8,
            Some("8"),
        );
        let v: Value = serde_json::from_str(&f.encode()).unwrap();
        assert_eq!(v["join_ref"], "8");
    }

    #[test]
    fn error_reasons_come_in_three_shapes() {
        let reply = |response: Value| Frame {
            topic: "t".into(),
            event: "phx_reply".into(),
            payload: serde_json::json!({"status": "error", "response": response}),
            reference: Some("1".into()),
            join_ref: None,
        };
        assert_eq!(
            reply(serde_json::json!({"reason": "Unauthorized: no"})).reason(),
            "Unauthorized: no"
        );
        assert_eq!(
            reply(serde_json::json!("payload_size_exceeded")).reason(),
            "payload_size_exceeded"
        );
        assert_eq!(
            reply(serde_json::json!({"error": "payload_size_exceeded"})).reason(),
            "payload_size_exceeded"
        );
    }

    #[test]
    fn backoff_follows_the_schedule_then_stays_at_the_last_step() {
        let b = Backoff::reconnect();
        for (n, secs) in [(0, 1.0), (1, 2.0), (3, 10.0), (9, 10.0)] {
            let d = b.delay(n).as_secs_f64();
            assert!(d >= secs && d <= secs * 1.2, "attempt {n}: {d}");
        }
    }
}
