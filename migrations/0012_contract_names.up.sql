-- The product's outline names are its API (PostgREST paths, Realtime payloads, the web
-- app): where chatctl's column is the same thing under another name, it takes the
-- outline's name (issue 20). Renamed columns keep their data, grants, policies, indexes and
-- constraints (those follow the column, not its name).
--
-- workspaces: `default_channel_id` is `channel_id` (the outline's name for the default
-- channel); the trigger that keeps it one of the workspace's own channels reads the new name.
--
-- users: `display_name` is `name` (the person's name; empty when they have none, and
-- the app shows the username then).
--
-- users: `last_login` is when the person last signed in: Supabase Auth's
-- `auth.users.last_sign_in_at`, followed on every sign-in and read from there whatever a
-- writer sends (as `email` is), so the two never differ. Readable like the rest of a
-- profile; nobody writes it but Supabase Auth.
--
-- channels: `is_private` is the outline's flag beside chatctl's richer `kind` (public,
-- private, dm, group_dm): a direct message is private too. A trigger keeps the two one
-- thing: a client may write either (`{name, is_private: true}` makes a private channel;
-- changing `is_private` changes `kind`, under the same rules), writing both so that they
-- disagree is refused, and a check constraint says they never differ.
--
-- chat: `edited_at` is `modified_at`: when the message was last changed by its author
-- (null until then; `updated_at` stays the row's own bookkeeping, which a reply's counter
-- also moves). A client may now send it, as the outline's web app does when it edits a
-- message; the database sets the time (now), as for `read_at`. chatctl itself (imports)
-- may write a historical one.
--
-- shared_channels: the outline's row of a sharing. `workspace_id` stays the workspace the
-- channel is shared into, and `target_workspace_id` is the same (a writer may send either;
-- both, disagreeing, is refused); `origin_workspace_id` is the channel's own workspace, and
-- `name`, `topic`, `is_private` are the channel's: the database fills them and follows every
-- change of the channel, and nobody writes them otherwise (a value that is not the
-- channel's is replaced by it). Who sees a sharing is unchanged: whoever reads the channel,
-- and the owners and admins of the workspace it is shared into, who so see the name, topic
-- and privacy of a channel shared with them even when they cannot read it (as Slack
-- Connect shows an invited organization the channel it is asked to join).
--
-- members: `joined_at` is `created_at`, and each membership has an `id` (the key stays
-- (channel, person)).
--
-- emojis: `message_id` is `chat_id`, `emoji` is `emoji_uni_code` (the reaction as Unicode
-- text, `:name:` for a custom emoji), and each reaction has an `id`. One reaction per
-- (message, person, emoji) stays the key, so an upsert on it works as before.

alter table public.workspaces rename column default_channel_id to channel_id;
alter index public.workspaces_default_channel_idx rename to workspaces_channel_idx;
create or replace function chat_private.check_default_channel() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if new.channel_id is not null and not exists (
        select 1 from public.channels c
         where c.id = new.channel_id and c.workspace_id = new.id and c.kind in ('public', 'private')) then
        raise exception 'the default channel must be a channel of workspace %', new.slug
            using errcode = 'check_violation', constraint = 'workspaces_default_channel_own';
    end if;
    return new;
end
$$;

alter table public.users rename column display_name to name;
alter table public.users add column last_login timestamptz;
alter table public.users disable trigger users_updated_at;
update public.users u set last_login = a.last_sign_in_at
  from auth.users a where a.id = u.id and a.last_sign_in_at is not null;
alter table public.users enable trigger users_updated_at;
grant select (last_login) on public.users to authenticated;

create or replace function chat_private.users_identity() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    new.email := chat_private.verified_email(new.id);
    new.last_login := (select a.last_sign_in_at from auth.users a where a.id = new.id);
    return new;
end
$$;
drop trigger users_identity on public.users;
create trigger users_identity before insert or update of id, email, last_login on public.users
    for each row execute function chat_private.users_identity();

-- A sign-in: the profile follows. Never raises (a failure here would fail the sign-in).
create function chat_private.follow_auth_sign_in() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    begin
        update public.users set last_login = new.last_sign_in_at
         where id = new.id and last_login is distinct from new.last_sign_in_at;
    exception when others then
        raise warning 'chatctl: the profile of % did not follow its sign-in: %', new.id, sqlerrm;
    end;
    return null;
end
$$;
revoke all on function chat_private.follow_auth_sign_in() from public;
create trigger chatctl_follow_sign_in after update of last_sign_in_at on auth.users
    for each row when (old.last_sign_in_at is distinct from new.last_sign_in_at)
    execute function chat_private.follow_auth_sign_in();

alter table public.channels add column is_private boolean;
-- Filled without touching `updated_at` or the search log: no channel changed.
alter table public.channels disable trigger channels_updated_at, disable trigger channels_search_update,
    disable trigger channels_guard;
update public.channels set is_private = kind <> 'public';
alter table public.channels enable trigger channels_updated_at, enable trigger channels_search_update,
    enable trigger channels_guard;
alter table public.channels alter column is_private set not null;
alter table public.channels add constraint channels_is_private_kind check (is_private = (kind <> 'public'));
-- `kind` is filled by the trigger when a writer leaves it out (from `is_private`, else public).
alter table public.channels alter column kind drop default;

-- Runs before `channels_guard` (triggers of a table fire in name order), so a change of
-- `is_private` meets the rules of a change of `kind`.
create function chat_private.channels_derive_kind() returns trigger
language plpgsql set search_path = '' as $$
begin
    if tg_op = 'INSERT' then
        new.kind := coalesce(new.kind, case when new.is_private then 'private' else 'public' end);
    elsif new.is_private is distinct from old.is_private and new.kind is not distinct from old.kind then
        if new.is_private is null then
            raise exception 'is_private is true or false'
                using errcode = 'not_null_violation', column = 'is_private';
        end if;
        new.kind := case when new.is_private then 'private' else 'public' end;
    elsif new.is_private is not distinct from old.is_private then
        new.is_private := null;
    end if;
    if new.is_private is not null and new.is_private <> (new.kind <> 'public') then
        raise exception 'is_private (%) says otherwise than kind (%)', new.is_private, new.kind
            using errcode = 'check_violation', constraint = 'channels_is_private_kind';
    end if;
    new.is_private := new.kind <> 'public';
    return new;
end
$$;
create trigger channels_derive_kind before insert or update on public.channels
    for each row execute function chat_private.channels_derive_kind();
grant insert (is_private) on public.channels to authenticated;
grant update (is_private) on public.channels to authenticated;

alter table public.chat rename column edited_at to modified_at;
drop trigger chat_edited_at on public.chat;
create or replace function chat_private.stamp_edit() returns trigger
language plpgsql set search_path = '' as $$
begin
    if current_user in ('anon', 'authenticated') then
        if new.message is distinct from old.message or new.modified_at is distinct from old.modified_at then
            new.modified_at := now();
        end if;
    elsif new.message is distinct from old.message and new.modified_at is not distinct from old.modified_at then
        new.modified_at := now();
    end if;
    return new;
end
$$;
create trigger chat_modified_at before update of message, modified_at on public.chat
    for each row execute function chat_private.stamp_edit();
grant update (modified_at) on public.chat to authenticated;

alter table public.shared_channels
    add column target_workspace_id uuid references public.workspaces (id) on delete cascade,
    add column origin_workspace_id uuid references public.workspaces (id) on delete cascade,
    add column name text,
    add column topic text,
    add column is_private boolean;
alter table public.shared_channels disable trigger shared_channels_drop_members_moved;
update public.shared_channels s
   set target_workspace_id = s.workspace_id, origin_workspace_id = c.workspace_id,
       name = c.name, topic = c.topic, is_private = c.is_private
  from public.channels c where c.id = s.channel_id;
alter table public.shared_channels enable trigger shared_channels_drop_members_moved;
alter table public.shared_channels
    alter column target_workspace_id set not null,
    alter column origin_workspace_id set not null,
    alter column name set not null,
    alter column topic set not null,
    alter column is_private set not null,
    add constraint shared_channels_target check (target_workspace_id = workspace_id);
create index shared_channels_target_workspace_idx on public.shared_channels (target_workspace_id);
create index shared_channels_origin_workspace_idx on public.shared_channels (origin_workspace_id);
grant insert (target_workspace_id) on public.shared_channels to authenticated;

-- Before the sharing's own checks (name order): the row is complete when they run.
create function chat_private.shared_channels_fill() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if tg_op = 'UPDATE' and new.target_workspace_id is not distinct from old.target_workspace_id then
        new.target_workspace_id := new.workspace_id;
    elsif tg_op = 'UPDATE' and new.workspace_id is not distinct from old.workspace_id then
        new.workspace_id := new.target_workspace_id;
    end if;
    new.workspace_id := coalesce(new.workspace_id, new.target_workspace_id);
    new.target_workspace_id := coalesce(new.target_workspace_id, new.workspace_id);
    if new.target_workspace_id <> new.workspace_id then
        raise exception 'target_workspace_id and workspace_id name the same workspace'
            using errcode = 'check_violation', constraint = 'shared_channels_target';
    end if;
    select c.workspace_id, c.name, c.topic, c.is_private
      into new.origin_workspace_id, new.name, new.topic, new.is_private
      from public.channels c where c.id = new.channel_id;
    return new;
end
$$;
create trigger shared_channels_a_fill before insert or update on public.shared_channels
    for each row execute function chat_private.shared_channels_fill();

-- A channel's name, topic or privacy changes: its sharings follow (whoever changed it).
create function chat_private.shared_channels_follow() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    update public.shared_channels s set name = n.name
      from new_rows n join old_rows o on o.id = n.id
     where s.channel_id = n.id
       and (n.name, n.topic, n.is_private) is distinct from (o.name, o.topic, o.is_private);
    return null;
end
$$;
create trigger channels_shared_follow after update on public.channels
    referencing old table as old_rows new table as new_rows
    for each statement execute function chat_private.shared_channels_follow();
revoke all on function chat_private.shared_channels_fill(), chat_private.shared_channels_follow() from public;

alter table public.members rename column joined_at to created_at;
alter table public.members add column id uuid not null default gen_random_uuid();
alter table public.members add constraint members_id_key unique (id);

alter table public.emojis rename column message_id to chat_id;
alter table public.emojis rename column emoji to emoji_uni_code;
alter table public.emojis add column id uuid not null default gen_random_uuid();
alter table public.emojis add constraint emojis_id_key unique (id);

-- The names chatctl itself wrote before (its seed's and the bots' reactions) become the
-- Unicode they name. A person who already has the Unicode one on that message keeps one.
with names (name, uni) as (values
        ('+1', '👍'), ('eyes', '👀'), ('tada', '🎉'), ('heart', '❤️'), ('white_check_mark', '✅'),
        ('joy', '😂'), ('pray', '🙏'), ('rocket', '🚀'), ('thinking_face', '🤔'), ('fire', '🔥')),
     twice as (
        delete from public.emojis e
         using names n
         where e.emoji_uni_code = n.name
           and exists (select 1 from public.emojis u
                        where u.chat_id = e.chat_id and u.user_id = e.user_id and u.emoji_uni_code = n.uni)
        returning e.chat_id, e.user_id, e.emoji_uni_code)
update public.emojis e set emoji_uni_code = n.uni
  from names n
 where e.emoji_uni_code = n.name
   and not exists (select 1 from twice t
                    where t.chat_id = e.chat_id and t.user_id = e.user_id and t.emoji_uni_code = e.emoji_uni_code);
