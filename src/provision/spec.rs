//! The workspace spec: what operators write (YAML), read from files and directories, and
//! checked into a [`Desired`] state with every problem reported at once, by file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One spec document. Every list may be empty; several documents are merged.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// People: created when missing (large populations come from `users import`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<Person>,
    /// Named lists of people, usable wherever members are listed as `group:NAME`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Bot accounts, usable in member lists as `bot:NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bots: Vec<Bot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspaces: Vec<WorkspaceSpec>,
    /// Supabase Storage buckets chatctl owns; absent: one private `attachments` bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<super::storage::StorageSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub email: String,
    pub name: String,
    /// Default: the part of the email before `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bot {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    pub slug: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_channel: Option<String>,
    /// Member lists by role: emails, `group:NAME` or `bot:NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guests: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub private: bool,
    /// department, project, support or general.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub archived: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moderators: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Slugs of other workspaces this channel is shared into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A spec file as read: its path, text (for line numbers) and contents.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub path: PathBuf,
    pub text: String,
    pub spec: Spec,
    /// Where each value is written, read from the text when a problem needs a line.
    positions: std::sync::OnceLock<crate::yaml::Positions>,
}

impl SpecFile {
    pub fn new(path: PathBuf, text: String, spec: Spec) -> SpecFile {
        SpecFile {
            path,
            text,
            spec,
            positions: std::sync::OnceLock::new(),
        }
    }

    /// The line of the value at `path` (`workspaces/0/channels/2/topic`), or of the nearest
    /// enclosing one that is written.
    pub fn line(&self, path: &str) -> Option<usize> {
        self.positions
            .get_or_init(|| crate::yaml::Positions::of(&self.text))
            .line(path)
    }

    /// A problem with the value at `path`.
    pub(crate) fn problem(&self, path: &str, message: String) -> Problem {
        Problem {
            file: self.path.clone(),
            line: self.line(path),
            message,
        }
    }
}

/// One problem in the spec, located.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// All the problems of a spec; nothing was applied.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct SpecErrors(pub Vec<Problem>);

/// Reads spec files: each path a YAML file or a directory of them (`*.yaml`, `*.yml`, sorted).
/// YAML errors of every file are collected before failing.
pub fn read(paths: &[PathBuf]) -> Result<Vec<SpecFile>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            entries.sort();
            if entries.is_empty() {
                return Err(Error::usage(format!("no .yaml files in {}", p.display())).into());
            }
            files.extend(entries);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        let text = crate::yaml::read_file(&path)
            .map_err(|e| Error::usage(format!("cannot read spec file {}: {e}", path.display())))?;
        match parse(&text) {
            Ok(spec) => out.push(SpecFile::new(path, text, spec)),
            Err((line, message)) => problems.push(Problem {
                file: path,
                line,
                message,
            }),
        }
    }
    if !problems.is_empty() {
        return Err(anyhow::Error::from(SpecErrors(problems))
            .context(Error::usage("invalid workspace spec; nothing was applied")));
    }
    Ok(out)
}

pub(crate) fn parse(text: &str) -> std::result::Result<Spec, (Option<usize>, String)> {
    if text.trim().is_empty() {
        return Ok(Spec::default());
    }
    // The line is reported separately from the message.
    crate::yaml::from_str(text).map_err(|e| (e.line(), e.message()))
}

/// Where a member reference was written; its line is found only when it is a problem.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The index of its file among those resolved.
    pub file: usize,
    /// The path of the entry in that file (`workspaces/0/members/3`).
    pub path: String,
}

/// Who a user is in the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUser {
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub is_bot: bool,
    /// Declared in the spec (people/bots) rather than only referenced.
    pub declared: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DesiredWorkspace {
    pub name: String,
    pub default_channel: Option<String>,
    /// email → role, for the people the spec names in a role list (owners, admins,
    /// members, guests): their role is the spec's.
    pub members: BTreeMap<String, String>,
    /// People who are in the workspace only because a channel lists them: they join as
    /// members when they are not in it, and keep whatever role they have when they are
    /// (being listed in a channel never lowers a workspace role).
    pub implied: BTreeSet<String>,
    pub channels: BTreeMap<String, DesiredChannel>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredChannel {
    pub kind: String,
    pub topic: String,
    pub description: String,
    pub purpose: Option<String>,
    pub archived: bool,
    /// email → role (owner, moderator, member)
    pub members: BTreeMap<String, String>,
    pub shared_with: BTreeSet<String>,
}

/// The state the spec asks for, names resolved to emails.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// email → user (declared, or referenced and expected to exist)
    pub users: BTreeMap<String, DesiredUser>,
    /// slug → workspace
    pub workspaces: BTreeMap<String, DesiredWorkspace>,
    /// Where each referenced email came from, to report unknown ones.
    pub references: BTreeMap<String, Reference>,
    /// Storage buckets by name.
    pub buckets: BTreeMap<String, super::storage::DesiredBucket>,
}

/// The email a bot account has.
pub fn bot_email(name: &str) -> String {
    format!("{name}@bots.chatctl.invalid")
}

/// Whether a channel name follows Slack's rules: lowercase letters (of any script), digits,
/// `-` and `_`, at most 80. No emoji, spaces, periods, or invisible characters.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 80
        && name == name.to_lowercase()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

/// Whether free text (a name, a topic) holds a character no one can type or see: a control
/// character (NUL included, which PostgreSQL refuses) other than newline and tab.
fn unprintable(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Whether a workspace slug is valid (lowercase letters, digits, dashes; ≤ 63).
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 63
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
}

const PURPOSES: &[&str] = &["department", "project", "support", "general"];
const ROLE_ORDER: &[&str] = &["guest", "member", "moderator", "admin", "owner"];

fn stronger(a: &str, b: &str) -> bool {
    ROLE_ORDER.iter().position(|r| *r == a) > ROLE_ORDER.iter().position(|r| *r == b)
}

/// Merges spec files into the desired state, collecting every problem.
pub fn resolve(files: &[SpecFile]) -> Result<Desired> {
    let (d, problems) = resolve_collecting(files);
    if !problems.is_empty() {
        return Err(anyhow::Error::from(SpecErrors(problems))
            .context(Error::usage("invalid workspace spec; nothing was applied")));
    }
    Ok(d)
}

/// [`resolve`], returning the problems beside what could be resolved, so a caller can add
/// the problems only the database can tell and report them all at once.
pub fn resolve_collecting(files: &[SpecFile]) -> (Desired, Vec<Problem>) {
    let mut d = Desired::default();
    let mut problems: Vec<Problem> = Vec::new();
    let mut groups: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();

    // People, bots and groups first: member lists refer to them.
    for (fi, f) in files.iter().enumerate() {
        let mut problem = |path: &str, message: String| problems.push(f.problem(path, message));
        for (pi, p) in f.spec.people.iter().enumerate() {
            let at = |key: &str| format!("people/{pi}/{key}");
            let email = p.email.trim().to_lowercase();
            if !email.contains('@') {
                problem(
                    &at("email"),
                    format!("`{}` is not an email address", p.email),
                );
                continue;
            }
            if unprintable(&p.name) || p.name.chars().count() > 200 {
                problem(
                    &at("name"),
                    format!(
                        "the name of `{}` holds a control character or is longer than 200 characters",
                        p.email
                    ),
                );
                continue;
            }
            let username = p
                .username
                .clone()
                .unwrap_or_else(|| crate::users::accounts::derive_username(&email));
            // As `users_username_format` has it.
            if !crate::users::accounts::valid_username(&username) || unprintable(&username) {
                problem(
                    &at(if p.username.is_some() {
                        "username"
                    } else {
                        "email"
                    }),
                    format!(
                        "invalid username `{username}`: {}",
                        crate::users::accounts::USERNAME_RULES
                    ),
                );
                continue;
            }
            let user = DesiredUser {
                email: email.clone(),
                username,
                display_name: p.name.clone(),
                is_bot: false,
                declared: true,
            };
            if let Some(prev) = d.users.get(&email)
                && *prev != user
            {
                problem(
                    &format!("people/{pi}"),
                    format!("person `{email}` is declared twice, differently"),
                );
            }
            d.users.insert(email, user);
        }
        for (bi, b) in f.spec.bots.iter().enumerate() {
            if !crate::bots::spec::valid_name(&b.name) {
                problem(
                    &format!("bots/{bi}/name"),
                    format!(
                        "invalid bot name `{}`: {}",
                        b.name,
                        crate::users::accounts::USERNAME_RULES
                    ),
                );
                continue;
            }
            let email = bot_email(&b.name);
            let display = b.display_name.clone().unwrap_or_else(|| b.name.clone());
            d.users.insert(
                email.clone(),
                DesiredUser {
                    email,
                    username: b.name.clone(),
                    display_name: display,
                    is_bot: true,
                    declared: true,
                },
            );
        }
        for (name, list) in &f.spec.groups {
            if groups.contains_key(name) {
                problem(
                    &format!("groups/{name}"),
                    format!("group `{name}` is defined in more than one file"),
                );
            }
            groups.insert(name.clone(), (list.clone(), fi));
        }
    }

    // Expands the member list entry at `path` of file `fi` to emails.
    let expand = |entry: &str,
                  fi: usize,
                  path: String,
                  problems: &mut Vec<Problem>,
                  refs: &mut BTreeMap<String, Reference>|
     -> Vec<String> {
        let f = &files[fi];
        let mut one = |email: String| {
            refs.entry(email.clone()).or_insert_with(|| Reference {
                file: fi,
                path: path.clone(),
            });
            email
        };
        if let Some(g) = entry.strip_prefix("group:") {
            match groups.get(g) {
                Some((list, _)) => list.iter().map(|e| one(e.trim().to_lowercase())).collect(),
                None => {
                    problems.push(f.problem(&path, format!("unknown group `{g}`")));
                    Vec::new()
                }
            }
        } else if let Some(b) = entry.strip_prefix("bot:") {
            vec![one(bot_email(b))]
        } else if entry.contains('@') {
            vec![one(entry.trim().to_lowercase())]
        } else {
            problems.push(f.problem(
                &path,
                format!("`{entry}` is not a member: use an email, `group:NAME` or `bot:NAME`"),
            ));
            Vec::new()
        }
    };

    let mut refs = BTreeMap::new();
    let mut ws_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (fi, f) in files.iter().enumerate() {
        for (wi, w) in f.spec.workspaces.iter().enumerate() {
            let at = |key: &str| format!("workspaces/{wi}/{key}");
            if !valid_slug(&w.slug) {
                problems.push(f.problem(
                    &at("slug"),
                    format!(
                        "invalid workspace slug `{}`: lowercase letters, digits and dashes",
                        w.slug
                    ),
                ));
            }
            let length = w.name.trim().chars().count();
            if length == 0 || length > 200 || unprintable(&w.name) {
                problems.push(f.problem(
                    &at("name"),
                    format!(
                        "invalid name of workspace `{}`: 1 to 200 characters, no control characters",
                        w.slug
                    ),
                ));
            }
            if let Some(prev) = ws_files.insert(w.slug.clone(), f.path.clone()) {
                problems.push(f.problem(
                    &at("slug"),
                    format!(
                        "workspace `{}` is also defined in {}",
                        w.slug,
                        prev.display()
                    ),
                ));
                continue;
            }
            let mut members: BTreeMap<String, String> = BTreeMap::new();
            for (role, key, list) in [
                ("guest", "guests", &w.guests),
                ("member", "members", &w.members),
                ("admin", "admins", &w.admins),
                ("owner", "owners", &w.owners),
            ] {
                for (ei, entry) in list.iter().enumerate() {
                    let path = at(&format!("{key}/{ei}"));
                    for email in expand(entry, fi, path, &mut problems, &mut refs) {
                        let r = members.entry(email).or_insert_with(|| role.to_owned());
                        if stronger(role, r) {
                            *r = role.to_owned();
                        }
                    }
                }
            }
            let mut channels: BTreeMap<String, DesiredChannel> = BTreeMap::new();
            let mut implied: BTreeSet<String> = BTreeSet::new();
            for (ci, c) in w.channels.iter().enumerate() {
                let at = |key: &str| format!("workspaces/{wi}/channels/{ci}/{key}");
                if !valid_channel_name(&c.name) {
                    problems.push(f.problem(&at("name"), format!("invalid channel name `{}`: lowercase letters, digits, `-` and `_`, at most 80 characters", c.name)));
                    continue;
                }
                if channels.contains_key(&c.name) {
                    problems.push(f.problem(
                        &at("name"),
                        format!(
                            "channel `{}` appears twice in workspace `{}`",
                            c.name, w.slug
                        ),
                    ));
                    continue;
                }
                if let Some(p) = &c.purpose
                    && !PURPOSES.contains(&p.as_str())
                {
                    problems.push(f.problem(
                        &at("purpose"),
                        format!("unknown purpose `{p}`: one of {}", PURPOSES.join(", ")),
                    ));
                }
                for (key, value) in [("topic", &c.topic), ("description", &c.description)] {
                    if unprintable(value) {
                        problems.push(f.problem(
                            &at(key),
                            format!("the {key} of `{}` holds a control character", c.name),
                        ));
                    }
                }
                if c.topic.chars().count() > 250 {
                    problems.push(f.problem(
                        &at("topic"),
                        format!("the topic of `{}` is longer than 250 characters", c.name),
                    ));
                }
                let mut cm: BTreeMap<String, String> = BTreeMap::new();
                for (role, key, list) in [
                    ("member", "members", &c.members),
                    ("moderator", "moderators", &c.moderators),
                    ("owner", "owners", &c.owners),
                ] {
                    for (ei, entry) in list.iter().enumerate() {
                        let path = at(&format!("{key}/{ei}"));
                        for email in expand(entry, fi, path, &mut problems, &mut refs) {
                            let r = cm.entry(email).or_insert_with(|| role.to_owned());
                            if stronger(role, r) {
                                *r = role.to_owned();
                            }
                        }
                    }
                }
                // Channel members belong to the workspace.
                implied.extend(cm.keys().cloned());
                for (ti, target) in c.shared_with.iter().enumerate() {
                    if *target == w.slug {
                        problems.push(f.problem(
                            &at(&format!("shared_with/{ti}")),
                            format!(
                                "channel `{}` cannot be shared into its own workspace `{target}`",
                                c.name
                            ),
                        ));
                    }
                }
                channels.insert(
                    c.name.clone(),
                    DesiredChannel {
                        kind: if c.private { "private" } else { "public" }.to_owned(),
                        topic: c.topic.clone(),
                        description: c.description.clone(),
                        purpose: c.purpose.clone(),
                        archived: c.archived,
                        members: cm,
                        shared_with: c
                            .shared_with
                            .iter()
                            .filter(|t| **t != w.slug)
                            .cloned()
                            .collect(),
                    },
                );
            }
            if let Some(dc) = &w.default_channel
                && !channels.contains_key(dc)
            {
                problems.push(f.problem(
                    &at("default_channel"),
                    format!(
                        "default channel `{dc}` is not among the channels of `{}`",
                        w.slug
                    ),
                ));
            }
            implied.retain(|e| !members.contains_key(e));
            d.workspaces.insert(
                w.slug.clone(),
                DesiredWorkspace {
                    name: w.name.clone(),
                    default_channel: w.default_channel.clone(),
                    members,
                    implied,
                    channels,
                },
            );
        }
    }
    d.references = refs;
    let (buckets, bucket_problems) = super::storage::resolve(files);
    d.buckets = buckets;
    problems.extend(bucket_problems);
    (d, problems)
}

/// Whether an address is a bot account's (what `bot:NAME` stands for).
pub fn is_bot_email(email: &str) -> bool {
    email.ends_with("@bots.chatctl.invalid")
}

/// A problem about `email`, located where the spec first names it (a member list, or the
/// `people:` or `bots:` entry that declares it).
pub fn problem_about(d: &Desired, files: &[SpecFile], email: &str, message: String) -> Problem {
    let declared = d.users.get(email).is_some_and(|u| u.declared);
    if let Some(r) = d.references.get(email).filter(|_| !declared) {
        return files[r.file].problem(&r.path, message);
    }
    let declaration = files.iter().find_map(|f| {
        let person = f
            .spec
            .people
            .iter()
            .position(|p| p.email.trim().to_lowercase() == email)
            .map(|pi| format!("people/{pi}"));
        let bot = || {
            f.spec
                .bots
                .iter()
                .position(|b| bot_email(&b.name) == email)
                .map(|bi| format!("bots/{bi}"))
        };
        Some((f, person.or_else(bot)?))
    });
    match declaration {
        Some((f, path)) => f.problem(&path, message),
        None => Problem {
            file: files.first().map(|f| f.path.clone()).unwrap_or_default(),
            line: None,
            message,
        },
    }
}

/// Problems found against the database (unknown emails and workspaces), located.
pub fn unknown_reference_problems(
    d: &Desired,
    known_emails: &BTreeSet<String>,
    known_workspaces: &BTreeSet<String>,
    files: &[SpecFile],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (email, r) in &d.references {
        if !d.users.contains_key(email) && !known_emails.contains(email) {
            problems.push(files[r.file].problem(
                &r.path,
                format!("unknown user `{email}`: not in `people` and not in the database"),
            ));
        }
    }
    for f in files {
        for (wi, w) in f.spec.workspaces.iter().enumerate() {
            for (ci, c) in w.channels.iter().enumerate() {
                for (ti, target) in c.shared_with.iter().enumerate() {
                    if *target != w.slug
                        && !d.workspaces.contains_key(target)
                        && !known_workspaces.contains(target)
                    {
                        problems.push(f.problem(
                            &format!("workspaces/{wi}/channels/{ci}/shared_with/{ti}"),
                            format!("unknown workspace `{target}` in shared_with"),
                        ));
                    }
                }
            }
        }
    }
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    problems
}

/// Reads a spec from a path (for tests and `up`).
pub fn read_one(path: &Path) -> Result<Vec<SpecFile>> {
    read(&[path.to_owned()])
}
