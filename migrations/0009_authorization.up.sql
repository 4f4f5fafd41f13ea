-- Authorization that holds against every signed-in user (issue 15), at close to the speed of
-- the service role (issue 28). The web app talks to the database with the user's token
-- (PostgREST, Realtime), so these policies, grants and triggers are the product's security
-- boundary. The permission model they implement is PERMISSIONS.md; tests/it/rls.rs checks
-- every cell of it (table x column x operation x actor) against the database.
--
-- How the policies are made fast (BENCHMARKS.md, "Row level security at scale"):
--
-- * The caller's sets (my channels, my workspaces, ...) come from PL/pgSQL functions that
--   return an array, called as `(select chat_private.f())::uuid[]`: an initplan, evaluated
--   at most once per query and only when the policy reaches it. The old policies called a
--   function per row (40 us a row; the mentions query took 19 s). PL/pgSQL because a SQL
--   function that cannot be inlined (SECURITY DEFINER) is planned again on every call
--   (0.15 ms); PL/pgSQL keeps its plan for the session (0.02 ms a call).
-- * A message is readable when its channel is: one of the caller's channels (an array
--   of their few memberships) or else, probed by primary key, a channel whose own
--   policy lets them read it (a public channel of their workspace, or shared into it).
--   Probes into another table are scalar subqueries, `(select true from t where t.pk = x)`:
--   written as EXISTS, the planner may turn them into a hash of every readable row of
--   that table (a scan of all channels, or of all messages), built before the first row.
-- * No policy refers, through another table's policy, back to its own table (Postgres
--   refuses the recursion): `workspace_members`, `workspaces` and `channels` use only the
--   functions; `members`, `chat`, `shared_channels` and `mentions` also `channels`; `users`
--   `workspace_members`; `user_status` `users`; reactions, files and receipts `chat`.
-- * `auth.uid()` is always `(select auth.uid())` in a policy: once per query.
-- * "Mentions of me" is a table of its own (`public.mentions`, kept by triggers), readable
--   by the mentioned user: a user's predicate on `chat.message` (jsonb @>) is not
--   leakproof, so under RLS it could never use the GIN index (a scan of every message).
-- * PostgREST prepares its statements, so the app mostly runs cached (generic) plans, made
--   for the average value of a column: skewed columns get an `n_distinct` hint (below),
--   and the RPCs compute bounds outside the comparisons that use an index (under RLS only
--   leakproof expressions may be index conditions).
--
-- What the database keeps whatever a client sends:
--
-- * Identity: `users.email` is the auth user's verified email (triggers on both tables).
-- * Server-owned columns (ids, timestamps, counters, is_bot, external ids, created_by,
--   dm_key, roles where the actor may not set them) are not granted to the API roles: a
--   client that sends one is refused. Timestamps a client may touch but not choose
--   (`read_receipts.read_at`, `user_status.last_seen_at`, `chat.edited_at`,
--   `channels.archived_at`) are set here, and a read position is clamped to now.
-- * Column-level UPDATE: each table grants the union of what any actor may change;
--   policies and `channels_guard` narrow it per actor.
-- * Role invariants: a workspace that has an owner keeps one; an admin never changes or
--   removes an owner; nobody raises someone to a role above their own.
-- * Boundaries: channel members come from the channel's workspace (or a workspace it is
--   shared with); a DM's members are the people of its key, fixed at creation, none with
--   a moderating role; deleting needs reading; leaving a workspace or losing a sharing
--   takes the channel memberships it gave.

-- ---------------------------------------------------------------------------------------
-- The caller's sets.
-- ---------------------------------------------------------------------------------------

-- Channels the caller is a member of.
create function chat_private.my_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m where m.user_id = auth.uid());
end
$$;

-- Channels the caller may post in: a member, not archived.
create function chat_private.my_postable_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m join public.channels c on c.id = m.channel_id
                  where m.user_id = auth.uid() and c.archived_at is null);
end
$$;

-- Channels the caller moderates: their owner or a moderator (never a DM).
create function chat_private.my_moderated_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m join public.channels c on c.id = m.channel_id
                  where m.user_id = auth.uid() and m.role in ('owner', 'moderator')
                    and c.kind in ('public', 'private'));
end
$$;

-- Workspaces the caller belongs to, in any role.
create function chat_private.my_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m where m.user_id = auth.uid());
end
$$;

-- Workspaces whose public channels the caller reads: any role but guest.
create function chat_private.my_reading_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = auth.uid() and m.role <> 'guest');
end
$$;

-- Workspaces the caller administers: owner or admin.
create function chat_private.my_admin_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = auth.uid() and m.role in ('owner', 'admin'));
end
$$;

-- Workspaces the caller owns.
create function chat_private.my_owned_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = auth.uid() and m.role = 'owner');
end
$$;

-- Channels shared into a workspace whose public channels the caller reads.
create function chat_private.my_shared_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select s.channel_id from public.shared_channels s
                   join public.workspace_members m on m.workspace_id = s.workspace_id
                  where m.user_id = auth.uid() and m.role <> 'guest');
end
$$;

-- Whether the caller shares a channel with `other` (a shared channel's people from other
-- workspaces are seen). Per row, but only for people outside the caller's workspaces.
create function chat_private.shares_channel_with(other uuid) returns boolean
language plpgsql stable security definer set search_path = '' as $$
begin
    return exists (select 1 from public.members a join public.members b on b.channel_id = a.channel_id
                    where a.user_id = auth.uid() and b.user_id = other);
end
$$;

-- The e-mail addresses of `ids` the caller may see: their own, and those of people who
-- share a workspace with them (never across a shared channel). `public.user_emails` is the
-- API; `users.email` itself is not granted to the API roles.
create function chat_private.visible_emails(ids uuid[]) returns table (user_id uuid, email text)
language plpgsql stable security definer set search_path = '' as $$
begin
    return query
        select u.id, u.email from public.users u
         where u.id = any (ids)
           and (u.id = auth.uid()
                or exists (select 1 from public.workspace_members a
                             join public.workspace_members b on b.workspace_id = a.workspace_id
                            where a.user_id = auth.uid() and b.user_id = u.id));
end
$$;

-- The old per-row helpers: message_author and message_channel answered for any message id,
-- readable or not (SECURITY DEFINER, executable by every signed-in user).
drop policy users_select on public.users;
drop policy users_insert on public.users;
drop policy users_update on public.users;
drop policy workspaces_select on public.workspaces;
drop policy workspaces_update on public.workspaces;
drop policy workspaces_delete on public.workspaces;
drop policy workspace_members_select on public.workspace_members;
drop policy workspace_members_insert on public.workspace_members;
drop policy workspace_members_update on public.workspace_members;
drop policy workspace_members_delete on public.workspace_members;
drop policy channels_select on public.channels;
drop policy channels_insert on public.channels;
drop policy channels_update on public.channels;
drop policy channels_delete on public.channels;
drop policy members_select on public.members;
drop policy members_insert on public.members;
drop policy members_update on public.members;
drop policy members_delete on public.members;
drop policy shared_channels_select on public.shared_channels;
drop policy shared_channels_insert on public.shared_channels;
drop policy shared_channels_delete on public.shared_channels;
drop policy chat_select on public.chat;
drop policy chat_insert on public.chat;
drop policy chat_update on public.chat;
drop policy chat_delete on public.chat;
drop policy emojis_select on public.emojis;
drop policy emojis_insert on public.emojis;
drop policy emojis_delete on public.emojis;
drop policy attachments_select on public.attachments;
drop policy attachments_insert on public.attachments;
drop policy attachments_delete on public.attachments;
drop policy read_receipts_select on public.read_receipts;
drop policy read_receipts_insert on public.read_receipts;
drop policy read_receipts_update on public.read_receipts;
drop policy read_receipts_delete on public.read_receipts;
drop policy user_status_select on public.user_status;
drop policy user_status_insert on public.user_status;
drop policy user_status_update on public.user_status;
drop policy user_status_delete on public.user_status;
drop function chat_private.can_see_user(uuid);
drop function chat_private.message_author(uuid);
drop function chat_private.message_channel(uuid);
drop function chat_private.channel_workspace(uuid);
drop function chat_private.can_post(uuid);
drop function chat_private.can_moderate_channel(uuid);
drop function chat_private.can_read_channel(uuid);
drop function chat_private.is_channel_member(uuid);
drop function chat_private.is_workspace_admin(uuid);
drop function chat_private.is_workspace_member(uuid);
drop function chat_private.workspace_role(uuid);

-- ---------------------------------------------------------------------------------------
-- Mentions of a user: one row per (message, mentioned user), kept from chat.message.
-- ---------------------------------------------------------------------------------------
create table public.mentions (
    message_id uuid not null references public.chat (id) on delete cascade,
    user_id uuid not null references public.users (id) on delete cascade,
    channel_id uuid not null,
    created_at timestamptz not null,
    primary key (message_id, user_id)
);
-- "Mentions of me", newest first.
create index mentions_user_idx on public.mentions (user_id, created_at desc, message_id);
-- PostgREST prepares its statements, and a cached (generic) plan is made for the average
-- user, who has a handful of mentions: it fetches and sorts all of them, which for a user
-- with thousands took 16 ms. Planned as if every user had many, it reads the newest few in
-- index order, which is as cheap for a user with a handful.
alter table public.mentions alter column user_id set (n_distinct = -0.001);

-- The same for a channel's timeline (`channel_id = $1 order by created_at desc limit 50`):
-- planned for the average channel (56 messages on 100,000 seeded ones, which the policy's
-- estimated selectivity halves), the cached plan read and sorted every message of a busy
-- channel (15 ms, where reading the newest 50 in index order takes 0.4 ms), and a keyset
-- page deep in history did it even for the service role. Planned as if a channel had a
-- thousand messages, both read in index order, which costs a small channel nothing.
alter table public.chat alter column channel_id set (n_distinct = -0.001);
-- And for a page of a channel's members (`channel_id = $1 order by user_id limit 100`):
-- planned for the average channel, the cached plan collected and sorted every member of
-- #general.
alter table public.members alter column channel_id set (n_distinct = -0.001);

-- The user ids a message mentions (strings that are not the id of a user are ignored).
-- `rows 2`: planned for the default thousand, each message's insert below joined them with
-- a scan of every user (4 ms a message; a million-message seed took four times as long).
create function chat_private.mentioned(message jsonb) returns setof uuid
language plpgsql immutable set search_path = '' rows 2 as $$
begin
    return query
        select distinct v::uuid
          from jsonb_array_elements_text(case when jsonb_typeof(message -> 'mentions') = 'array'
                                              then message -> 'mentions' else '[]' end) as m(v)
         where v ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
end
$$;

-- A new message that mentions anyone (most do not: the trigger does not even fire for them,
-- so the writers' and the bots' inserts pay nothing; a statement-level trigger cost every
-- insert statement a call, 4 ms at p99 on the dispatch benchmark at 5,000 messages/s).
create function chat_private.mentions_of_new_message() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if not new.is_deleted then
        insert into public.mentions (message_id, user_id, channel_id, created_at)
        select new.id, u.id, new.channel_id, new.created_at
          from chat_private.mentioned(new.message) as m(id)
          join public.users u on u.id = m.id
        on conflict do nothing;
    end if;
    return null;
end
$$;
create trigger chat_mentions_insert after insert on public.chat
    for each row when (new.message ? 'mentions')
    execute function chat_private.mentions_of_new_message();

-- An edit, a (soft) delete or a move: the message's mentions again.
create function chat_private.mentions_of_changed_message() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    delete from public.mentions where message_id = new.id;
    if not new.is_deleted then
        insert into public.mentions (message_id, user_id, channel_id, created_at)
        select new.id, u.id, new.channel_id, new.created_at
          from chat_private.mentioned(new.message) as m(id)
          join public.users u on u.id = m.id
        on conflict do nothing;
    end if;
    return null;
end
$$;
create trigger chat_mentions_update after update of message, is_deleted, channel_id, created_at on public.chat
    for each row execute function chat_private.mentions_of_changed_message();

insert into public.mentions (message_id, user_id, channel_id, created_at)
select c.id, u.id, c.channel_id, c.created_at
  from public.chat c
 cross join lateral chat_private.mentioned(c.message) as m(id)
  join public.users u on u.id = m.id
 where not c.is_deleted and c.message ? 'mentions'
on conflict do nothing;

-- Clients subscribe to their own mentions (Realtime checks `user_id = auth.uid()`: cheap).
alter table public.mentions replica identity full;
do $$
begin
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime' and not puballtables) then
        alter publication supabase_realtime add table public.mentions;
    end if;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Identity: a profile's email is its auth user's verified email.
-- ---------------------------------------------------------------------------------------
create function chat_private.verified_email(uid uuid) returns text
language plpgsql stable security definer set search_path = '' as $$
begin
    return (select lower(a.email) from auth.users a
             where a.id = uid and a.email_confirmed_at is not null and a.email is not null);
end
$$;

-- SECURITY DEFINER to read auth.users; a trigger function cannot be called directly, so
-- it answers only for the row being written.
create function chat_private.users_identity() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    new.email := chat_private.verified_email(new.id);
    return new;
end
$$;
create trigger users_identity before insert or update of id, email on public.users
    for each row execute function chat_private.users_identity();

-- Supabase Auth changes an address (or confirms it): the profile follows. Never raises: a
-- failure here would fail the sign-in flow; an address another profile holds (two SSO
-- users may share one) leaves this profile without an email.
create function chat_private.follow_auth_email() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
    verified text := case when new.email_confirmed_at is not null then lower(new.email) end;
begin
    begin
        update public.users set email = verified where id = new.id and email is distinct from verified;
    exception when unique_violation then
        update public.users set email = null where id = new.id;
    end;
    return null;
end
$$;
create trigger chatctl_follow_email after update of email, email_confirmed_at on auth.users
    for each row when (old.email is distinct from new.email
                       or old.email_confirmed_at is distinct from new.email_confirmed_at)
    execute function chat_private.follow_auth_email();

-- Repair: profiles whose email is not their auth user's verified one (an account that
-- claimed someone else's address before this migration) lose it.
do $$
declare
    n bigint;
begin
    update public.users u set email = null
     where u.email is distinct from chat_private.verified_email(u.id) and u.email is not null;
    get diagnostics n = row_count;
    if n > 0 then
        raise warning 'chatctl: % profile(s) had an email their auth user has not verified; it was removed', n;
    end if;
    update public.users u set email = chat_private.verified_email(u.id)
     where u.email is null and chat_private.verified_email(u.id) is not null
       and not exists (select 1 from public.users o where o.email = chat_private.verified_email(u.id));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Server-owned values.
-- ---------------------------------------------------------------------------------------
-- The API roles (PostgREST switches to them): what a client sends. Everything else (the
-- service role, chatctl, imports) may write historical values.
create function chat_private.stamp_client_times() returns trigger
language plpgsql set search_path = '' as $$
begin
    if current_user not in ('anon', 'authenticated') then
        return new;
    end if;
    case tg_table_name
        when 'read_receipts' then new.read_at := now();
        when 'user_status' then new.last_seen_at := now();
        when 'members' then new.last_read_at := least(new.last_read_at, now());
    end case;
    return new;
end
$$;
create trigger read_receipts_stamp before insert or update on public.read_receipts
    for each row execute function chat_private.stamp_client_times();
create trigger user_status_stamp before insert or update on public.user_status
    for each row execute function chat_private.stamp_client_times();
create trigger members_stamp before update of last_read_at on public.members
    for each row execute function chat_private.stamp_client_times();

-- An edited message is stamped, unless the writer sets edited_at itself (an import).
create function chat_private.stamp_edit() returns trigger
language plpgsql set search_path = '' as $$
begin
    if new.message is distinct from old.message and new.edited_at is not distinct from old.edited_at then
        new.edited_at := now();
    end if;
    return new;
end
$$;
create trigger chat_edited_at before update of message on public.chat
    for each row execute function chat_private.stamp_edit();

-- Who creates a channel, a sharing, a message, a reaction, a receipt or a status: the
-- caller, unless the writer says otherwise (the service role, which has no caller).
alter table public.channels alter column created_by set default auth.uid();
alter table public.shared_channels alter column shared_by set default auth.uid();
alter table public.chat alter column user_id set default auth.uid();
alter table public.emojis alter column user_id set default auth.uid();
alter table public.read_receipts alter column user_id set default auth.uid();
alter table public.user_status alter column user_id set default auth.uid();

-- A channel a signed-in user creates has them as its owner (else a private channel's
-- creator could not read it).
create function chat_private.creator_joins() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if new.created_by is not null and new.created_by = auth.uid() then
        insert into public.members (channel_id, user_id, role) values (new.id, new.created_by, 'owner')
        on conflict do nothing;
    end if;
    return null;
end
$$;
create trigger channels_creator_joins after insert on public.channels
    for each row execute function chat_private.creator_joins();

-- ---------------------------------------------------------------------------------------
-- Per-actor column rules the policies cannot express.
-- ---------------------------------------------------------------------------------------
-- channels: a moderator changes name, topic, description, purpose; a workspace owner or
-- admin also archives and unarchives (archived_at is stamped now(), whatever was sent) and
-- makes a public channel private (never the other way). For everyone: a channel stays in
-- its workspace (its members come from there); a direct message stays one, with its key;
-- a channel never becomes one.
create function chat_private.channels_guard() returns trigger
language plpgsql set search_path = '' as $$
declare
    admin boolean;
begin
    if new.workspace_id is distinct from old.workspace_id then
        raise exception 'a channel stays in its workspace (share it instead)'
            using errcode = 'check_violation', constraint = 'channels_workspace_fixed';
    end if;
    if (old.kind in ('dm', 'group_dm') or new.kind in ('dm', 'group_dm'))
       and (new.kind is distinct from old.kind or new.dm_key is distinct from old.dm_key) then
        raise exception 'a direct message stays a direct message of the same people'
            using errcode = 'check_violation', constraint = 'channels_dm_fixed';
    end if;
    if current_user not in ('anon', 'authenticated') then
        return new;
    end if;
    admin := new.workspace_id = any (chat_private.my_admin_workspaces());
    if new.kind is distinct from old.kind and not (admin and old.kind = 'public' and new.kind = 'private') then
        raise exception 'only a workspace owner or admin may make a public channel private, and a private channel stays private'
            using errcode = 'insufficient_privilege';
    end if;
    if new.archived_at is distinct from old.archived_at then
        if not admin then
            raise exception 'only a workspace owner or admin may archive or unarchive a channel'
                using errcode = 'insufficient_privilege';
        end if;
        new.archived_at := case
            when new.archived_at is null then null
            when old.archived_at is not null then old.archived_at
            else now() end;
    end if;
    return new;
end
$$;
create trigger channels_guard before update on public.channels
    for each row execute function chat_private.channels_guard();

-- workspaces: the default channel is one of the workspace's own channels, not a DM.
create function chat_private.check_default_channel() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if new.default_channel_id is not null and not exists (
        select 1 from public.channels c
         where c.id = new.default_channel_id and c.workspace_id = new.id and c.kind in ('public', 'private')) then
        raise exception 'the default channel must be a channel of workspace %', new.slug
            using errcode = 'check_violation', constraint = 'workspaces_default_channel_own';
    end if;
    return new;
end
$$;
create trigger workspaces_default_channel before insert or update of default_channel_id on public.workspaces
    for each row execute function chat_private.check_default_channel();

-- ---------------------------------------------------------------------------------------
-- Role invariants and boundaries (for every writer: the database holds them).
-- ---------------------------------------------------------------------------------------
-- A workspace that had an owner keeps one, checked at commit (so an owner can be replaced
-- in one transaction), unless the workspace itself is gone.
create function chat_private.check_owner_kept() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if old.role = 'owner'
       and exists (select 1 from public.workspaces w where w.id = old.workspace_id)
       and not exists (select 1 from public.workspace_members m
                        where m.workspace_id = old.workspace_id and m.role = 'owner') then
        raise exception 'workspace % would be left without an owner', old.workspace_id
            using errcode = 'check_violation', constraint = 'workspace_members_owner_kept',
                  hint = 'make someone else an owner first';
    end if;
    return null;
end
$$;
create constraint trigger workspace_members_owner_kept after update or delete on public.workspace_members
    deferrable initially deferred
    for each row when (old.role = 'owner') execute function chat_private.check_owner_kept();

-- Leaving a workspace (or being removed) takes the memberships of its channels, unless the
-- channel is shared into another workspace the person still belongs to.
create function chat_private.drop_workspace_channels() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    delete from public.members m
     using old_rows o, public.channels c
     where c.id = m.channel_id and m.user_id = o.user_id and c.workspace_id = o.workspace_id
       and not exists (select 1 from public.shared_channels s
                         join public.workspace_members w on w.workspace_id = s.workspace_id
                        where s.channel_id = c.id and w.user_id = o.user_id);
    -- A shared channel the person read only through this workspace.
    delete from public.members m
     using old_rows o, public.shared_channels s, public.channels c
     where s.workspace_id = o.workspace_id and m.channel_id = s.channel_id and m.user_id = o.user_id
       and c.id = s.channel_id
       and not exists (select 1 from public.workspace_members w
                        where w.user_id = o.user_id
                          and (w.workspace_id = c.workspace_id
                               or w.workspace_id in (select s2.workspace_id from public.shared_channels s2
                                                      where s2.channel_id = c.id)));
    return null;
end
$$;
create trigger workspace_members_drop_channels after delete on public.workspace_members
    referencing old table as old_rows
    for each statement execute function chat_private.drop_workspace_channels();

-- Unsharing a channel (or moving a sharing) takes the memberships the sharing gave.
create function chat_private.drop_unshared_members() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    delete from public.members m
     using old_rows o, public.channels c
     where m.channel_id = o.channel_id and c.id = o.channel_id
       and not exists (select 1 from public.workspace_members w
                        where w.user_id = m.user_id
                          and (w.workspace_id = c.workspace_id
                               or w.workspace_id in (select s.workspace_id from public.shared_channels s
                                                      where s.channel_id = c.id)));
    return null;
end
$$;
create trigger shared_channels_drop_members after delete on public.shared_channels
    referencing old table as old_rows
    for each statement execute function chat_private.drop_unshared_members();
create trigger shared_channels_drop_members_moved after update on public.shared_channels
    referencing old table as old_rows
    for each statement execute function chat_private.drop_unshared_members();

-- Who may be a member of a channel: a member of its workspace, or of a workspace it is
-- shared with; of a DM, exactly the people of its key (so its membership is fixed at
-- creation: a new set of people is a new DM), each as a plain member.
-- The query finding one membership among `source` (rows of channel_id, user_id, role)
-- that breaks these rules, with the reason: the triggers below run it on their transition
-- table (a set-based check, one per statement: a COPY or a bulk apply pays one pass), the
-- migration on every existing membership.
create function chat_private.member_violation_query(source text) returns text
language sql immutable set search_path = '' as $f$
    select format($q$
        select case
                 when c.kind in ('dm', 'group_dm') and n.role <> 'member' then
                   format('a member of a direct message has no moderating role (user %%s, channel %%s)', n.user_id, c.id)
                 when c.kind in ('dm', 'group_dm') and not (n.user_id::text = any (string_to_array(c.dm_key, ','))) then
                   format('user %%s is not one of the people of direct message %%s: a new set of people is a new DM', n.user_id, c.id)
                 else
                   format('user %%s is not a member of the workspace of channel %%s (nor of one it is shared with)', n.user_id, c.id)
               end
          from (%s) n join public.channels c on c.id = n.channel_id
         where (c.kind in ('dm', 'group_dm')
                and (n.role <> 'member' or not (n.user_id::text = any (string_to_array(c.dm_key, ',')))))
            or not exists (select 1 from public.workspace_members w
                            where w.user_id = n.user_id
                              and (w.workspace_id = c.workspace_id
                                   or (c.kind in ('public', 'private') and w.workspace_id in (
                                        select s.workspace_id from public.shared_channels s where s.channel_id = c.id))))
         limit 1 $q$, source)
$f$;

create function chat_private.check_new_members() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
    problem text;
begin
    if tg_level = 'STATEMENT' then
        execute chat_private.member_violation_query('select channel_id, user_id, role from new_rows') into problem;
    else
        execute chat_private.member_violation_query('select $1 as channel_id, $2 as user_id, $3 as role')
            into problem using new.channel_id, new.user_id, new.role;
    end if;
    if problem is not null then
        raise exception '%', problem using errcode = 'check_violation', constraint = 'members_boundary';
    end if;
    return null;
end
$$;
create trigger members_boundary_insert after insert on public.members
    referencing new table as new_rows
    for each statement execute function chat_private.check_new_members();
create trigger members_boundary_update after update of channel_id, user_id, role on public.members
    for each row execute function chat_private.check_new_members();

-- Existing data: DM members lose their moderating roles; the rest is reported.
do $$
declare
    n bigint;
    orphans text;
begin
    update public.members m set role = 'member'
      from public.channels c
     where c.id = m.channel_id and c.kind in ('dm', 'group_dm') and m.role <> 'member';
    get diagnostics n = row_count;
    if n > 0 then
        raise warning 'chatctl: % member(s) of direct messages had a moderating role; now plain members', n;
    end if;
    select string_agg(w.slug, ', ' order by w.slug) into orphans from public.workspaces w
     where not exists (select 1 from public.workspace_members m where m.workspace_id = w.id and m.role = 'owner');
    if orphans is not null then
        raise warning 'chatctl: workspaces without an owner: %', orphans
            using hint = 'name owners in a spec (`owners:`) and run `chatctl apply`';
    end if;
    execute chat_private.member_violation_query('select channel_id, user_id, role from public.members') into orphans;
    if orphans is not null then
        raise warning 'chatctl: existing channel memberships break the boundary, e.g.: %', orphans;
    end if;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Grants: deny by default. Each table grants the API roles exactly the columns some actor
-- may read or write; the service role keeps everything (it bypasses row level security).
-- ---------------------------------------------------------------------------------------
revoke all on all tables in schema public from anon, authenticated;
grant select, insert, update, delete on all tables in schema public to service_role;

grant select (id, username, display_name, avatar_url, is_bot, created_at, updated_at, deactivated_at)
    on public.users to authenticated;
grant insert (id, username, display_name, avatar_url) on public.users to authenticated;
grant update (username, display_name, avatar_url) on public.users to authenticated;

grant select on public.workspaces to authenticated;
grant update (name, default_channel_id) on public.workspaces to authenticated;

grant select on public.workspace_members to authenticated;
grant insert (workspace_id, user_id, role) on public.workspace_members to authenticated;
grant update (role) on public.workspace_members to authenticated;
grant delete on public.workspace_members to authenticated;

grant select on public.channels to authenticated;
grant insert (workspace_id, name, kind, topic, description, purpose) on public.channels to authenticated;
grant update (name, topic, description, purpose, kind, archived_at) on public.channels to authenticated;
grant delete on public.channels to authenticated;

grant select on public.members to authenticated;
grant insert (channel_id, user_id, role) on public.members to authenticated;
grant update (last_read_at, notification_level, muted) on public.members to authenticated;
grant delete on public.members to authenticated;

grant select on public.shared_channels to authenticated;
grant insert (channel_id, workspace_id) on public.shared_channels to authenticated;
grant delete on public.shared_channels to authenticated;

grant select on public.chat to authenticated;
grant insert (channel_id, user_id, parent_id, message) on public.chat to authenticated;
grant update (message, is_deleted) on public.chat to authenticated;
grant delete on public.chat to authenticated;

grant select on public.emojis to authenticated;
grant insert (message_id, user_id, emoji) on public.emojis to authenticated;
grant delete on public.emojis to authenticated;

grant select on public.attachments to authenticated;
grant insert (message_id, bucket_id, object_path, name, size_bytes, mime_type) on public.attachments to authenticated;
grant delete on public.attachments to authenticated;

grant select on public.read_receipts to authenticated;
grant insert (message_id, user_id) on public.read_receipts to authenticated;
grant update (read_at) on public.read_receipts to authenticated;
grant delete on public.read_receipts to authenticated;

grant select on public.user_status to authenticated;
grant insert (user_id, presence, status_text, status_emoji, status_expires_at) on public.user_status to authenticated;
grant update (presence, status_text, status_emoji, status_expires_at) on public.user_status to authenticated;
grant delete on public.user_status to authenticated;

grant select on public.mentions to authenticated;

alter table public.mentions enable row level security;

revoke all on all functions in schema chat_private from public, anon, authenticated;
grant execute on function chat_private.my_channels(), chat_private.my_postable_channels(),
    chat_private.my_moderated_channels(), chat_private.my_workspaces(), chat_private.my_reading_workspaces(),
    chat_private.my_admin_workspaces(), chat_private.my_owned_workspaces(), chat_private.my_shared_channels(),
    chat_private.shares_channel_with(uuid), chat_private.visible_emails(uuid[]), chat_private.mentioned(jsonb)
    to authenticated;
grant execute on all functions in schema chat_private to service_role;

-- ---------------------------------------------------------------------------------------
-- Policies: one per table, role and command (several permissive ones are all evaluated).
-- ---------------------------------------------------------------------------------------

-- users: yourself; people of your workspaces; people you share a channel with.
create policy users_select on public.users for select to authenticated using (
    id = (select auth.uid())
    or (select true from public.workspace_members w where w.user_id = users.id limit 1)
    or chat_private.shares_channel_with(id));
create policy users_insert on public.users for insert to authenticated
    with check (id = (select auth.uid()));
create policy users_update on public.users for update to authenticated
    using (id = (select auth.uid())) with check (id = (select auth.uid()));

-- workspaces: provisioned by operators; their owners and admins rename them and choose
-- the default channel. Deleting one deletes channels its owner may not read: operators only.
create policy workspaces_select on public.workspaces for select to authenticated
    using (id = any ((select chat_private.my_workspaces())::uuid[]));
create policy workspaces_update on public.workspaces for update to authenticated
    using (id = any ((select chat_private.my_admin_workspaces())::uuid[]))
    with check (id = any ((select chat_private.my_admin_workspaces())::uuid[]));

-- workspace_members: seen by the workspace; owners and admins manage them, admins never an
-- owner (nor make one); anyone may leave (not the last owner: see check_owner_kept).
create policy workspace_members_select on public.workspace_members for select to authenticated
    using (workspace_id = any ((select chat_private.my_workspaces())::uuid[]));
create policy workspace_members_insert on public.workspace_members for insert to authenticated
    with check (workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
                and (role <> 'owner' or workspace_id = any ((select chat_private.my_owned_workspaces())::uuid[])));
create policy workspace_members_update on public.workspace_members for update to authenticated
    using (workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
           and (role <> 'owner' or workspace_id = any ((select chat_private.my_owned_workspaces())::uuid[])))
    with check (workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
                and (role <> 'owner' or workspace_id = any ((select chat_private.my_owned_workspaces())::uuid[])));
create policy workspace_members_delete on public.workspace_members for delete to authenticated
    using (user_id = (select auth.uid())
           or (workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
               and (role <> 'owner' or workspace_id = any ((select chat_private.my_owned_workspaces())::uuid[]))));

-- channels: a member reads it; a public one, every non-guest member of its workspace and of
-- the workspaces it is shared with. Members (not guests) create public and private ones.
-- Moderators edit theirs, workspace owners and admins the public ones (column rules in
-- channels_guard); owners and admins delete a channel they can read, never a DM.
create policy channels_select on public.channels for select to authenticated using (
    id = any ((select chat_private.my_channels())::uuid[])
    or (kind = 'public' and (workspace_id = any ((select chat_private.my_reading_workspaces())::uuid[])
                             or id = any ((select chat_private.my_shared_channels())::uuid[]))));
create policy channels_insert on public.channels for insert to authenticated
    with check (created_by = (select auth.uid()) and kind in ('public', 'private')
                and workspace_id = any ((select chat_private.my_reading_workspaces())::uuid[]));
create policy channels_update on public.channels for update to authenticated
    using (id = any ((select chat_private.my_moderated_channels())::uuid[])
           or (kind = 'public' and workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])))
    with check (id = any ((select chat_private.my_moderated_channels())::uuid[])
                or workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[]));
create policy channels_delete on public.channels for delete to authenticated
    using (kind in ('public', 'private')
           and workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
           and (kind = 'public' or id = any ((select chat_private.my_channels())::uuid[])));

-- members: seen by whoever reads the channel; a readable public channel may be joined; its
-- moderators (and, for a public one, the workspace's owners and admins) add and remove
-- people, never an owner; anyone leaves a channel (not a DM); a member sets their own
-- read position and notifications.
create policy members_select on public.members for select to authenticated using (
    user_id = (select auth.uid())
    or channel_id = any ((select chat_private.my_channels())::uuid[])
    or (select true from public.channels c where c.id = members.channel_id));
create policy members_insert on public.members for insert to authenticated with check (
    (user_id = (select auth.uid()) and role = 'member'
     and (select c.kind = 'public' and c.archived_at is null from public.channels c where c.id = members.channel_id))
    or (role <> 'owner'
        and (channel_id = any ((select chat_private.my_moderated_channels())::uuid[])
             or (select c.kind = 'public' and c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
                   from public.channels c where c.id = members.channel_id))));
create policy members_update on public.members for update to authenticated
    using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy members_delete on public.members for delete to authenticated using (
    (user_id = (select auth.uid())
     and (select c.kind in ('public', 'private') from public.channels c where c.id = members.channel_id))
    or (role <> 'owner'
        and (channel_id = any ((select chat_private.my_moderated_channels())::uuid[])
             or (select c.kind = 'public' and c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
                   from public.channels c where c.id = members.channel_id))));

-- shared_channels: seen by whoever reads the channel and by the admins of the workspace it
-- is shared with; the home workspace's owners and admins share and unshare a channel they
-- can read, the other side's owners and admins may end the sharing.
create policy shared_channels_select on public.shared_channels for select to authenticated using (
    (select true from public.channels c where c.id = shared_channels.channel_id)
    or workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[]));
create policy shared_channels_insert on public.shared_channels for insert to authenticated with check (
    (select c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
       from public.channels c where c.id = shared_channels.channel_id));
create policy shared_channels_delete on public.shared_channels for delete to authenticated using (
    (select c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
       from public.channels c where c.id = shared_channels.channel_id)
    or workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[]));

-- chat: readable where the channel is; posted as yourself where you are a member of an
-- unarchived channel; your own edited where you may post; deleted by its author (who can
-- read it; a message with replies takes its thread with it, so its author soft-deletes
-- it instead), the channel's moderators, or (public channels) the workspace's owners and
-- admins.
create policy chat_select on public.chat for select to authenticated using (
    channel_id = any ((select chat_private.my_channels())::uuid[])
    or (select true from public.channels c where c.id = chat.channel_id));
create policy chat_insert on public.chat for insert to authenticated
    with check (user_id = (select auth.uid())
                and channel_id = any ((select chat_private.my_postable_channels())::uuid[]));
create policy chat_update on public.chat for update to authenticated
    using (user_id = (select auth.uid()) and channel_id = any ((select chat_private.my_postable_channels())::uuid[]))
    with check (user_id = (select auth.uid()) and channel_id = any ((select chat_private.my_postable_channels())::uuid[]));
create policy chat_delete on public.chat for delete to authenticated using (
    (user_id = (select auth.uid()) and (parent_id is not null or total_replies = 0)
     and (channel_id = any ((select chat_private.my_channels())::uuid[])
          or (select true from public.channels c where c.id = chat.channel_id)))
    or channel_id = any ((select chat_private.my_moderated_channels())::uuid[])
    or (select c.kind = 'public' and c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
          from public.channels c where c.id = chat.channel_id));

-- emojis, attachments, read_receipts: readable with their message; written by whoever may
-- post there (attachments: the message's author); reactions and receipts removed by their
-- owner, attachments also by the message's moderators.
create policy emojis_select on public.emojis for select to authenticated
    using ((select true from public.chat c where c.id = emojis.message_id));
create policy emojis_insert on public.emojis for insert to authenticated with check (
    user_id = (select auth.uid())
    and (select c.channel_id = any ((select chat_private.my_postable_channels())::uuid[])
           from public.chat c where c.id = emojis.message_id));
create policy emojis_delete on public.emojis for delete to authenticated using (
    user_id = (select auth.uid()) and (select true from public.chat c where c.id = emojis.message_id));

create policy attachments_select on public.attachments for select to authenticated
    using ((select true from public.chat c where c.id = attachments.message_id));
create policy attachments_insert on public.attachments for insert to authenticated with check (
    (select c.user_id = (select auth.uid()) and c.channel_id = any ((select chat_private.my_postable_channels())::uuid[])
       from public.chat c where c.id = attachments.message_id));
create policy attachments_delete on public.attachments for delete to authenticated using (
    (select c.user_id = (select auth.uid())
            or c.channel_id = any ((select chat_private.my_moderated_channels())::uuid[])
            or (select h.kind = 'public' and h.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
                  from public.channels h where h.id = c.channel_id)
       from public.chat c where c.id = attachments.message_id));

create policy read_receipts_select on public.read_receipts for select to authenticated
    using ((select true from public.chat c where c.id = read_receipts.message_id));
create policy read_receipts_insert on public.read_receipts for insert to authenticated with check (
    user_id = (select auth.uid()) and (select true from public.chat c where c.id = read_receipts.message_id));
create policy read_receipts_update on public.read_receipts for update to authenticated
    using (user_id = (select auth.uid()) and (select true from public.chat c where c.id = read_receipts.message_id))
    with check (user_id = (select auth.uid()));
create policy read_receipts_delete on public.read_receipts for delete to authenticated using (
    user_id = (select auth.uid()) and (select true from public.chat c where c.id = read_receipts.message_id));

-- user_status: seen by whoever sees the user; written by the user.
create policy user_status_select on public.user_status for select to authenticated using (
    user_id = (select auth.uid()) or (select true from public.users u where u.id = user_status.user_id));
create policy user_status_insert on public.user_status for insert to authenticated
    with check (user_id = (select auth.uid()));
create policy user_status_update on public.user_status for update to authenticated
    using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy user_status_delete on public.user_status for delete to authenticated
    using (user_id = (select auth.uid()));

-- mentions: the mentioned user's, while they can read the message's channel.
create policy mentions_select on public.mentions for select to authenticated using (
    user_id = (select auth.uid())
    and (channel_id = any ((select chat_private.my_channels())::uuid[])
         or (select true from public.channels c where c.id = mentions.channel_id)));

-- ---------------------------------------------------------------------------------------
-- What the app asks that a policy cannot make fast: functions it calls (PostgREST RPC),
-- SECURITY INVOKER, so every policy above still applies.
-- ---------------------------------------------------------------------------------------

-- The caller's unread messages per channel they belong to: top-level messages of others,
-- newer than their read position, counted up to `cap` (a client shows "99+"). The bound is
-- computed outside the count (`since`): under row level security only leakproof
-- expressions may be index conditions, and a COALESCE in the comparison made each count
-- read its whole channel (27 ms on 1,000,000 messages); newest first, each count stops at
-- the cap.
create function public.unread_counts(cap integer default 100)
returns table (channel_id uuid, unread integer)
language sql stable security invoker set search_path = '' as $$
    select m.channel_id,
           (select count(*)::integer from (
                select 1 from public.chat c
                 where c.channel_id = m.channel_id and c.created_at > m.since
                   and c.parent_id is null and not c.is_deleted and c.user_id <> m.user_id
                 order by c.created_at desc
                 limit greatest(cap, 0)) x)
      from (select channel_id, user_id, coalesce(last_read_at, '-infinity'::timestamptz) as since
              from public.members
             where user_id = (select auth.uid())
            offset 0) m
$$;

-- E-mail addresses of `ids`, where the caller may see them (see visible_emails).
create function public.user_emails(ids uuid[])
returns table (user_id uuid, email text)
language sql stable security invoker set search_path = '' as $$
    select v.user_id, v.email from chat_private.visible_emails(ids) v
$$;

revoke all on function public.unread_counts(integer), public.user_emails(uuid[]) from public, anon;
grant execute on function public.unread_counts(integer), public.user_emails(uuid[]) to authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Supabase's database advisor (splinter): trigger functions get a fixed search_path, and
-- every foreign key a covering index (deleting a user or a channel otherwise scans).
-- ---------------------------------------------------------------------------------------
alter function chat_private.set_updated_at() set search_path = '';
alter function chat_private.check_shared_channel() set search_path = '';
alter function chat_private.check_chat_parent() set search_path = '';
alter function chat_private.notify_chat() set search_path = '';

create index workspaces_created_by_idx on public.workspaces (created_by);
create index workspaces_default_channel_idx on public.workspaces (default_channel_id);
create index channels_created_by_idx on public.channels (created_by);
create index shared_channels_shared_by_idx on public.shared_channels (shared_by);
create index bot_digests_channel_idx on chatctl.bot_digests (channel_id);

analyze public.mentions;
analyze public.chat;
analyze public.members;
