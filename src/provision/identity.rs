//! Who an e-mail address is: the auth user that verified it (Supabase Auth's
//! `auth.users.email` with `email_confirmed_at` set), never a column a user can write.
//!
//! Everything that finds people by address (`apply`, the imperative commands, the bots)
//! goes through [`lookup`]: a profile that shows an address its auth user has not verified
//! is reported, not adopted, and an account that holds an address without having verified
//! it is not the person the operator means.

use std::collections::BTreeMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;

/// A person's profile, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub is_bot: bool,
}

/// What an address is in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The auth user that verified the address, with their profile.
    Known(Profile),
    /// An auth user verified it but has no profile yet (signed up, never opened the app).
    NoProfile { id: Uuid },
    /// An auth user holds the address without having verified it: not necessarily its
    /// owner (anyone may sign up with any address), so never adopted.
    Unverified { id: Uuid },
}

/// What the database knows of some addresses.
#[derive(Debug, Default)]
pub struct Identities {
    /// Address (lower case) → who it is; an address nobody holds is absent.
    pub by_email: BTreeMap<String, Identity>,
    /// Profiles showing one of the addresses while their auth user has not verified it
    /// (possible only where the database's own triggers were bypassed): never adopted.
    pub mismatched: Vec<(String, Profile)>,
}

impl Identities {
    /// The profile of a known address.
    pub fn profile(&self, email: &str) -> Option<&Profile> {
        match self.by_email.get(email) {
            Some(Identity::Known(p)) => Some(p),
            _ => None,
        }
    }

    /// Why an address cannot be used for the user the caller means (`bot` says which kind:
    /// a bot account or a person), or `None` when it can be.
    pub fn problem(&self, email: &str, bot: bool) -> Option<String> {
        if let Some((_, p)) = self.mismatched.iter().find(|(e, _)| e == email) {
            return Some(format!(
                "the profile `{}` ({}) shows `{email}`, but its auth user has not verified that address: it is not adopted",
                p.username, p.id
            ));
        }
        match self.by_email.get(email)? {
            Identity::Unverified { id } => Some(format!(
                "`{email}` belongs to an account ({id}) that has not verified it: it is not adopted (confirm or delete that account in Supabase Auth)"
            )),
            Identity::Known(p) if bot && !p.is_bot => Some(format!(
                "the bot address `{email}` belongs to a person's account `{}` ({}): a person is never taken for a bot",
                p.username, p.id
            )),
            Identity::Known(p) if !bot && p.is_bot => Some(format!(
                "`{email}` is the bot account `{}`, not a person",
                p.username
            )),
            // A bot's account is made by chatctl, whole: an auth user someone else made
            // with its address (a sign-up, where confirmation is off) is never adopted.
            Identity::NoProfile { id } if bot => Some(format!(
                "an account ({id}) made outside chatctl holds the bot address `{email}`: it is not adopted (delete it in Supabase Auth)"
            )),
            _ => None,
        }
    }
}

/// An auth user holding one of the addresses, and their profile if they have one.
#[derive(sqlx::FromRow)]
struct AuthRow {
    email: String,
    id: Uuid,
    verified: bool,
    username: Option<String>,
    display_name: Option<String>,
    is_bot: Option<bool>,
}

/// Looks up `emails` (lower case) in Supabase Auth and the profiles. The instance
/// condition lets Supabase's own `(instance_id, lower(email))` index answer (Supabase Auth
/// writes the zero instance; some SQL recipes leave it NULL).
pub async fn lookup(conn: &mut PgConnection, emails: &[String]) -> Result<Identities> {
    let mut out = Identities::default();
    if emails.is_empty() {
        return Ok(out);
    }
    let rows: Vec<AuthRow> = sqlx::query_as(
        "select lower(a.email) as email, a.id, a.email_confirmed_at is not null as verified,
                u.username, u.name as display_name, u.is_bot
           from auth.users a left join public.users u on u.id = a.id
          where (a.instance_id = '00000000-0000-0000-0000-000000000000' or a.instance_id is null)
            and lower(a.email) = any($1)
          order by a.email_confirmed_at is null, a.created_at",
    )
    .bind(emails)
    .fetch_all(&mut *conn)
    .await?;
    for AuthRow {
        email,
        id,
        verified,
        username,
        display_name,
        is_bot,
    } in rows
    {
        let identity = match (verified, username, display_name, is_bot) {
            (false, ..) => Identity::Unverified { id },
            (true, Some(username), Some(display_name), Some(is_bot)) => Identity::Known(Profile {
                id,
                username,
                display_name,
                is_bot,
            }),
            (true, ..) => Identity::NoProfile { id },
        };
        // A verified holder comes first (the order above) and wins.
        out.by_email.entry(email).or_insert(identity);
    }
    let mismatched: Vec<(String, Uuid, String, String, bool)> = sqlx::query_as(
        "select u.email, u.id, u.username, u.name, u.is_bot
           from public.users u left join auth.users a on a.id = u.id
          where u.email = any($1)
            and (a.id is null or a.email_confirmed_at is null or lower(a.email) is distinct from u.email)",
    )
    .bind(emails)
    .fetch_all(&mut *conn)
    .await?;
    out.mismatched = mismatched
        .into_iter()
        .map(|(email, id, username, display_name, is_bot)| {
            (
                email,
                Profile {
                    id,
                    username,
                    display_name,
                    is_bot,
                },
            )
        })
        .collect();
    Ok(out)
}
