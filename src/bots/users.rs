//! Bot users: each bot's account, found or created through the audited provisioning path.

use sqlx::PgPool;
use uuid::Uuid;

use super::spec::BotSpec;
use super::trigger::Bot;
use crate::error::{Error, Result};

/// Finds or creates each bot's user (flagged as a bot), through the audited provisioning path.
/// A bot is the account whose auth user verified the bot's address and whose profile is a
/// bot's (only the service role sets `is_bot`); a person's account, or one made outside
/// chatctl, holding that address is refused, never taken for the bot.
pub async fn prepare(
    pool: &PgPool,
    specs: Vec<BotSpec>,
    actor: &crate::provision::Actor,
) -> Result<Vec<Bot>> {
    let mut conn = pool.acquire().await?;
    let emails: Vec<String> = specs
        .iter()
        .map(|s| crate::provision::spec::bot_email(&s.name))
        .collect();
    let found = crate::provision::identity::lookup(&mut conn, &emails).await?;
    let mut changes = Vec::new();
    for (s, email) in specs.iter().zip(&emails) {
        if let Some(problem) = found.problem(email, true) {
            return Err(Error::failed(format!("bot `{}`: {problem}", s.name)).into());
        }
        if found.profile(email).is_none() {
            let user = crate::provision::spec::DesiredUser {
                email: email.clone(),
                username: s.name.clone(),
                display_name: s.display_name.clone().unwrap_or_else(|| s.name.clone()),
                is_bot: true,
                declared: true,
            };
            changes.push(crate::provision::Change {
                action: crate::provision::Action::Create,
                object_type: "user",
                object: email.clone(),
                before: None,
                after: Some(serde_json::json!({ "username": s.name, "bot": true })),
                op: crate::provision::Op::CreateUser(user),
            });
        }
    }
    if !changes.is_empty() {
        crate::provision::apply::apply(&mut conn, &changes, actor).await?;
    }
    let found = crate::provision::identity::lookup(&mut conn, &emails).await?;
    let mut bots = Vec::new();
    for (s, email) in specs.into_iter().zip(&emails) {
        let id = found
            .profile(email)
            .map(|p| p.id)
            .ok_or_else(|| Error::failed(format!("bot `{}` has no account", s.name)))?;
        bots.push(Bot::new(s, id)?);
    }
    Ok(bots)
}

/// The account of the bot `name`, when it has one (see [`prepare`] for what counts).
pub async fn find_bot(pool: &PgPool, name: &str) -> Result<Option<Uuid>> {
    let mut conn = pool.acquire().await?;
    let email = crate::provision::spec::bot_email(name);
    let found = crate::provision::identity::lookup(&mut conn, std::slice::from_ref(&email)).await?;
    if let Some(problem) = found.problem(&email, true) {
        return Err(Error::failed(format!("bot `{name}`: {problem}")).into());
    }
    Ok(found.profile(&email).map(|p| p.id))
}

/// Why `spec`'s bot would not hear a message in `workspace`'s `channel`, if it would not;
/// a channel that does not exist is an error.
pub async fn deaf_to(
    pool: &crate::db::Pool,
    spec: &BotSpec,
    workspace: &str,
    channel: &str,
) -> Result<Option<String>> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar(
        "select c.id from public.channels c join public.workspaces w on w.id = c.workspace_id
          where w.slug = $1 and c.name = $2",
    )
    .bind(workspace)
    .bind(channel)
    .fetch_optional(pool)
    .await?;
    let Some(id) = id else {
        return Err(
            Error::usage(format!("no channel #{channel} in workspace `{workspace}`"))
                .with_help(format!("see `chatctl channel list -w {workspace}`"))
                .into(),
        );
    };
    let name = &spec.name;
    let Some(bot) = crate::bots::users::find_bot(pool, name).await? else {
        return Ok(Some(format!(
            "{name} has no account yet (a spec lists it as `bot:{name}`, or `bots run` makes it)"
        )));
    };
    if !Bot::new(spec.clone(), bot)?.covers(workspace, Some(channel)) {
        return Ok(Some(format!(
            "the channel is outside {name}'s scope (bots/{name}.yaml)"
        )));
    }
    let member: bool = sqlx::query_scalar(
        "select exists (select 1 from public.members where channel_id = $1 and user_id = $2)",
    )
    .bind(id)
    .bind(bot)
    .fetch_one(pool)
    .await?;
    Ok((!member).then(|| {
        format!("{name} is not a member of it (list `bot:{name}` among its members in the spec, or `chatctl channel add-members`)")
    }))
}
