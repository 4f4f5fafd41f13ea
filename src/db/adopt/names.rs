//! The names an adoption makes where the outline has none, the same way on every run:
//! usernames, workspace slugs, channel names, each unique where chatctl needs it.

use std::collections::HashSet;

use uuid::Uuid;

use crate::users::accounts;

/// `base` if no other name of `group` has it, else `base2`, `base3`… (as Slack numbers a
/// second `ann`), cut so that the whole stays within `max` characters.
pub(super) fn unique(
    taken: &mut HashSet<(String, String)>,
    group: &str,
    base: &str,
    max: usize,
) -> String {
    let base: String = base.chars().take(max).collect();
    if taken.insert((group.to_string(), base.clone())) {
        return base;
    }
    (2..)
        .map(|n: u64| {
            let suffix = n.to_string();
            let stem: String = base.chars().take(max - suffix.len()).collect();
            format!("{stem}{suffix}")
        })
        .find(|name| taken.insert((group.to_string(), name.clone())))
        .expect("some number is free")
}

/// A username: the project's when it follows chatctl's rules, else the address's local
/// part, else the name (spaces become dots), else `user`.
pub(super) fn username_from(
    username: Option<&str>,
    email: Option<&str>,
    name: Option<&str>,
) -> String {
    if let Some(u) = username.map(str::trim)
        && accounts::valid_username(u)
    {
        return u.to_string();
    }
    let clean = |s: &str| -> String {
        let lower = s.trim().to_lowercase();
        let parts: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || c == '@')
            .filter(|p| !p.is_empty())
            .collect();
        parts.join(".").chars().take(80).collect()
    };
    [
        username.map(clean),
        email
            .filter(|e| e.contains('@'))
            .map(|e| clean(&accounts::derive_username(e.trim()))),
        name.map(clean),
    ]
    .into_iter()
    .flatten()
    .find(|u| !u.is_empty())
    .unwrap_or_else(|| "user".into())
}

/// A channel name by chatctl's rules (lowercase letters and digits of any script, `-` and
/// `_`; other characters become `-`), else `channel-` and the id's first eight digits.
pub(super) fn channel_name_from(name: Option<&str>, id: Uuid) -> String {
    let made = dashed(
        name.unwrap_or_default(),
        |c| c.is_alphanumeric() || c == '_',
        80,
    );
    if made.is_empty() {
        format!("channel-{}", &id.simple().to_string()[..8])
    } else {
        made
    }
}

/// A workspace slug: the project's when valid, else made from the name (ASCII letters and
/// digits, other characters `-`), else `workspace`.
pub(super) fn slug_from(slug: Option<&str>, name: &str) -> String {
    if let Some(s) = slug
        && crate::provision::spec::valid_slug(s)
    {
        return s.to_string();
    }
    let made = dashed(name, |c| c.is_ascii_alphanumeric(), 63);
    if made.is_empty() {
        "workspace".into()
    } else {
        made
    }
}

/// `text` lowercased, each run of characters `keep` refuses one `-`, no `-` at either end,
/// at most `max` characters.
fn dashed(text: &str, keep: impl Fn(char) -> bool, max: usize) -> String {
    let mut out = String::new();
    for c in text.to_lowercase().chars() {
        if keep(c) {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let cut: String = out.chars().take(max).collect();
    cut.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules_and_come_from_the_address_then_the_name() {
        assert_eq!(username_from(Some("ann"), Some("x@y.z"), None), "ann");
        assert_eq!(username_from(Some("Ann Lee"), None, None), "ann.lee");
        assert_eq!(
            username_from(None, Some(" Bob.Smith@Example.com "), Some("Bob")),
            "bob.smith"
        );
        assert_eq!(
            username_from(None, Some("not an address"), Some("Carla  Diaz")),
            "carla.diaz"
        );
        assert_eq!(username_from(None, None, Some("   ")), "user");
        let long = "a".repeat(100);
        assert_eq!(username_from(None, None, Some(&long)).chars().count(), 80);
        for u in ["ann", "ann.lee", "bob.smith", "carla.diaz", "user"] {
            assert!(accounts::valid_username(u), "{u}");
        }
    }

    #[test]
    fn names_are_numbered_within_their_group_and_stay_within_the_limit() {
        let mut taken = HashSet::new();
        assert_eq!(unique(&mut taken, "w1", "general", 80), "general");
        assert_eq!(unique(&mut taken, "w1", "general", 80), "general2");
        assert_eq!(unique(&mut taken, "w2", "general", 80), "general");
        assert_eq!(unique(&mut taken, "w1", "general2", 80), "general22");
        let long = "x".repeat(63);
        assert_eq!(unique(&mut taken, "", &long, 63), long);
        let second = unique(&mut taken, "", &long, 63);
        assert_eq!(second.chars().count(), 63);
        assert!(second.ends_with('2'));
    }

    #[test]
    fn channel_names_and_slugs_are_made_valid() {
        let id = Uuid::parse_str("0123abcd-0000-4000-8000-000000000000").unwrap();
        assert_eq!(channel_name_from(Some("General Chat"), id), "general-chat");
        assert_eq!(channel_name_from(Some("v1.2 release!"), id), "v1-2-release");
        assert_eq!(channel_name_from(Some("Équipe_Paris"), id), "équipe_paris");
        assert_eq!(channel_name_from(Some("🎉🎉"), id), "channel-0123abcd");
        assert_eq!(channel_name_from(None, id), "channel-0123abcd");
        for n in [
            "general-chat",
            "v1-2-release",
            "équipe_paris",
            "channel-0123abcd",
        ] {
            assert!(crate::provision::spec::valid_channel_name(n), "{n}");
        }
        assert_eq!(slug_from(Some("acme"), "Whatever"), "acme");
        assert_eq!(slug_from(Some("Not Valid"), "Acme Corp."), "acme-corp");
        assert_eq!(slug_from(None, "Ünïcode Ltd"), "n-code-ltd");
        assert_eq!(slug_from(None, "!!!"), "workspace");
        for s in ["acme-corp", "n-code-ltd", "workspace"] {
            assert!(crate::provision::spec::valid_slug(s), "{s}");
        }
    }
}
