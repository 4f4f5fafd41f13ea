//! The parts of a Slack export chatctl reads. Slack publishes no schema of it: every field
//! is optional, unknown keys are ignored, and a number may come as a string (`created` in
//! older exports).

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct User {
    pub id: String,
    pub name: Option<String>,
    pub real_name: Option<String>,
    pub deleted: Option<bool>,
    pub is_bot: Option<bool>,
    pub is_app_user: Option<bool>,
    pub is_admin: Option<bool>,
    pub is_owner: Option<bool>,
    pub is_primary_owner: Option<bool>,
    pub is_restricted: Option<bool>,
    pub is_ultra_restricted: Option<bool>,
    pub profile: Option<Profile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub email: Option<String>,
    pub real_name: Option<String>,
    pub display_name: Option<String>,
    pub image_192: Option<String>,
    pub image_72: Option<String>,
    pub bot_id: Option<String>,
}

impl User {
    pub fn is_bot(&self) -> bool {
        self.is_bot == Some(true) || self.is_app_user == Some(true) || self.id == "USLACKBOT"
    }

    /// The display name: the profile's real name, else the account's, else the handle.
    pub fn display_name(&self) -> String {
        let p = self.profile.as_ref();
        [
            p.and_then(|p| p.real_name.as_deref()),
            self.real_name.as_deref(),
            p.and_then(|p| p.display_name.as_deref()),
            self.name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|n| !n.is_empty())
        .unwrap_or(&self.id)
        .to_owned()
    }

    /// The workspace role: owners and admins keep theirs, guests are guests.
    pub fn role(&self) -> &'static str {
        if self.is_owner == Some(true) || self.is_primary_owner == Some(true) {
            "owner"
        } else if self.is_admin == Some(true) {
            "admin"
        } else if self.is_restricted == Some(true) || self.is_ultra_restricted == Some(true) {
            "guest"
        } else {
            "member"
        }
    }
}

/// A channel, private channel, group DM or DM.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Conversation {
    pub id: String,
    pub name: Option<String>,
    pub creator: Option<String>,
    pub is_archived: Option<bool>,
    pub is_general: Option<bool>,
    pub members: Option<Vec<String>>,
    pub topic: Option<Titled>,
    pub purpose: Option<Titled>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Titled {
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Message {
    pub ts: Option<String>,
    pub user: Option<String>,
    pub text: Option<String>,
    pub subtype: Option<String>,
    pub thread_ts: Option<String>,
    pub reactions: Option<Vec<Reaction>>,
    pub edited: Option<Edited>,
    pub files: Option<Vec<File>>,
    pub file: Option<File>,
    pub bot_id: Option<String>,
    pub username: Option<String>,
    pub bot_profile: Option<BotProfile>,
    pub attachments: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Reaction {
    pub name: String,
    pub users: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Edited {
    pub ts: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct File {
    pub id: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub mimetype: Option<String>,
    pub size: Option<Value>,
    pub mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BotProfile {
    pub name: Option<String>,
}

/// A Slack timestamp (`"1452837318.000002"`, seconds and microseconds) as microseconds.
pub fn ts_micros(ts: &str) -> Option<i64> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || secs.len() > 12
    {
        return None;
    }
    let mut micros: String = frac.chars().take(6).collect();
    while micros.len() < 6 {
        micros.push('0');
    }
    Some(secs.parse::<i64>().ok()? * 1_000_000 + micros.parse::<i64>().ok()?)
}

/// A number given as a number or a string.
pub fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_read_to_the_microsecond() {
        assert_eq!(ts_micros("1452837318.000002"), Some(1_452_837_318_000_002));
        assert_eq!(ts_micros("1452837318.5"), Some(1_452_837_318_500_000));
        assert_eq!(ts_micros("1452837318"), Some(1_452_837_318_000_000));
        assert_eq!(ts_micros("x.1"), None);
        assert_eq!(ts_micros("-1.0"), None);
        assert_eq!(ts_micros("99999999999999999.0"), None);
    }
}
