-- The chat application's tables in `public`, the triggers that keep them consistent,
-- and chatctl's own operational state in the `chatctl` schema.

-- Shared trigger functions and the security-definer helpers of the RLS policies live in
-- their own schema: callable by the API roles, but not exposed by PostgREST as RPCs.
create schema chat_private;
grant usage on schema chat_private to anon, authenticated, service_role;

create function chat_private.set_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end
$$;

-- Profiles, one per auth.users row. external_source/external_id keep the id a user had in
-- the system they were imported from (a CRM's ObjectId, a Slack U-id).
create table public.users (
    id uuid primary key references auth.users (id) on delete cascade,
    username text not null,
    display_name text not null default '',
    email text,
    avatar_url text,
    is_bot boolean not null default false,
    external_source text,
    external_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deactivated_at timestamptz,
    constraint users_username_format
        check (username = lower(username) and username !~ '[[:space:]@]' and char_length(username) between 1 and 80),
    constraint users_email_lower check (email is null or email = lower(email)),
    constraint users_external_pair check ((external_source is null) = (external_id is null))
);
create unique index users_username_key on public.users (username);
create unique index users_email_key on public.users (email) where email is not null;
create unique index users_external_key on public.users (external_source, external_id) where external_id is not null;
create trigger users_updated_at before update on public.users
    for each row execute function chat_private.set_updated_at();

create table public.workspaces (
    id uuid primary key default gen_random_uuid(),
    slug text not null,
    name text not null,
    default_channel_id uuid,
    created_by uuid references public.users (id) on delete set null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint workspaces_slug_format check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    constraint workspaces_name_length check (char_length(name) between 1 and 200)
);
create unique index workspaces_slug_key on public.workspaces (slug);
create trigger workspaces_updated_at before update on public.workspaces
    for each row execute function chat_private.set_updated_at();

create table public.workspace_members (
    workspace_id uuid not null references public.workspaces (id) on delete cascade,
    user_id uuid not null references public.users (id) on delete cascade,
    role text not null default 'member',
    joined_at timestamptz not null default now(),
    primary key (workspace_id, user_id),
    constraint workspace_members_role check (role in ('owner', 'admin', 'member', 'guest'))
);
create index workspace_members_user_idx on public.workspace_members (user_id);

-- A channel belongs to one workspace. DMs and group DMs have no name; dm_key (the sorted
-- member ids) makes them unique per set of users.
create table public.channels (
    id uuid primary key default gen_random_uuid(),
    workspace_id uuid not null references public.workspaces (id) on delete cascade,
    name text,
    kind text not null default 'public',
    topic text not null default '',
    description text not null default '',
    purpose text,
    external_source text,
    external_id text,
    dm_key text,
    archived_at timestamptz,
    created_by uuid references public.users (id) on delete set null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint channels_kind check (kind in ('public', 'private', 'dm', 'group_dm')),
    constraint channels_purpose check (purpose in ('department', 'project', 'support', 'general')),
    constraint channels_name_iff_not_dm check ((kind in ('dm', 'group_dm')) = (name is null)),
    constraint channels_dm_key_iff_dm check ((kind in ('dm', 'group_dm')) = (dm_key is not null)),
    -- Slack's rules: lowercase, no spaces or periods, at most 80 characters.
    constraint channels_name_format
        check (name is null or (name = lower(name) and name !~ '[[:space:].]' and char_length(name) between 1 and 80)),
    constraint channels_topic_length check (char_length(topic) <= 250),
    constraint channels_external_pair check ((external_source is null) = (external_id is null))
);
create unique index channels_workspace_name_key on public.channels (workspace_id, name) where name is not null;
create unique index channels_workspace_dm_key on public.channels (workspace_id, dm_key) where dm_key is not null;
create unique index channels_external_key on public.channels (external_source, external_id) where external_id is not null;
create trigger channels_updated_at before update on public.channels
    for each row execute function chat_private.set_updated_at();

alter table public.workspaces
    add constraint workspaces_default_channel_fkey
    foreign key (default_channel_id) references public.channels (id) on delete set null;

create table public.members (
    channel_id uuid not null references public.channels (id) on delete cascade,
    user_id uuid not null references public.users (id) on delete cascade,
    role text not null default 'member',
    joined_at timestamptz not null default now(),
    last_read_at timestamptz,
    notification_level text not null default 'all',
    muted boolean not null default false,
    primary key (channel_id, user_id),
    constraint members_role check (role in ('owner', 'moderator', 'member')),
    constraint members_notification_level check (notification_level in ('all', 'mentions', 'none'))
);
create index members_user_idx on public.members (user_id);

-- A channel of one workspace shared into another (Slack Connect style).
create table public.shared_channels (
    channel_id uuid not null references public.channels (id) on delete cascade,
    workspace_id uuid not null references public.workspaces (id) on delete cascade,
    shared_by uuid references public.users (id) on delete set null,
    created_at timestamptz not null default now(),
    primary key (channel_id, workspace_id)
);
create index shared_channels_workspace_idx on public.shared_channels (workspace_id);

create function chat_private.check_shared_channel() returns trigger language plpgsql as $$
declare
    home uuid;
    channel_kind text;
begin
    select workspace_id, kind into home, channel_kind from public.channels where id = new.channel_id;
    if home = new.workspace_id then
        raise exception 'channel % cannot be shared into its own workspace', new.channel_id
            using errcode = 'check_violation', constraint = 'shared_channels_not_home';
    end if;
    if channel_kind in ('dm', 'group_dm') then
        raise exception 'a direct message cannot be shared' using errcode = 'check_violation',
            constraint = 'shared_channels_not_dm';
    end if;
    return new;
end
$$;
create trigger shared_channels_check before insert or update on public.shared_channels
    for each row execute function chat_private.check_shared_channel();

-- Messages. message = {"text": ..., "mentions": [user ids], "attachments": [...]}.
-- parent_id makes a thread (one level, as in Slack); total_replies and last_reply_at on the
-- root are kept by the triggers below. is_deleted is a soft delete.
create table public.chat (
    id uuid primary key default gen_random_uuid(),
    channel_id uuid not null references public.channels (id) on delete cascade,
    user_id uuid not null references public.users (id) on delete restrict,
    parent_id uuid references public.chat (id) on delete cascade,
    message jsonb not null,
    total_replies integer not null default 0,
    last_reply_at timestamptz,
    is_deleted boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    edited_at timestamptz,
    search tsvector generated always as (to_tsvector('english', coalesce(message ->> 'text', ''))) stored,
    constraint chat_message_shape check (
        jsonb_typeof(message) = 'object'
        and jsonb_typeof(message -> 'text') = 'string'
        and coalesce(jsonb_typeof(message -> 'mentions'), 'array') = 'array'
        and coalesce(jsonb_typeof(message -> 'attachments'), 'array') = 'array'
    ),
    constraint chat_text_length check (char_length(message ->> 'text') <= 40000),
    constraint chat_total_replies_nonnegative check (total_replies >= 0),
    constraint chat_not_own_parent check (parent_id <> id)
) with (fillfactor = 90);
-- fillfactor 90: a reply bumps its root's total_replies; free space on the root's page lets
-- that update stay HOT instead of adding an entry to every index (GIN ones included).
-- A channel's timeline (newest first, keyset-paginated by (created_at, id)).
create index chat_channel_timeline_idx on public.chat (channel_id, created_at desc, id desc);
-- A thread's replies in order.
create index chat_thread_idx on public.chat (parent_id, created_at) where parent_id is not null;
-- A user's messages (from:@user) and "mentions of me".
create index chat_user_idx on public.chat (user_id, created_at desc);
create index chat_mentions_idx on public.chat using gin ((message -> 'mentions') jsonb_path_ops);
create index chat_search_idx on public.chat using gin (search);
create trigger chat_updated_at before update on public.chat
    for each row execute function chat_private.set_updated_at();

-- A reply's parent is a top-level message of the same channel.
create function chat_private.check_chat_parent() returns trigger language plpgsql as $$
declare
    parent record;
begin
    if new.parent_id is null then
        return new;
    end if;
    select channel_id, parent_id into parent from public.chat where id = new.parent_id;
    if not found then
        raise exception 'parent message % does not exist', new.parent_id
            using errcode = 'foreign_key_violation', constraint = 'chat_parent_id_fkey';
    end if;
    if parent.channel_id <> new.channel_id then
        raise exception 'a reply must be in the channel of its parent message %', new.parent_id
            using errcode = 'check_violation', constraint = 'chat_parent_same_channel';
    end if;
    if parent.parent_id is not null then
        raise exception 'message % is itself a reply; threads are one level deep', new.parent_id
            using errcode = 'check_violation', constraint = 'chat_parent_is_root';
    end if;
    return new;
end
$$;
create trigger chat_check_parent before insert or update of parent_id, channel_id on public.chat
    for each row when (new.parent_id is not null) execute function chat_private.check_chat_parent();

-- total_replies is kept by statement-level triggers over transition tables: one UPDATE per
-- statement and thread, so a COPY of a million rows costs one pass, and increments (not
-- recounts) stay right when two sessions reply to the same thread at once. The function
-- runs as its owner so a reply can bump a root another user wrote, whatever the policies.
create function chat_private.apply_reply_deltas() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if tg_op = 'INSERT' then
        update public.chat p
           set total_replies = p.total_replies + d.n,
               last_reply_at = greatest(p.last_reply_at, d.last_at)
          from (select parent_id, count(*) as n, max(created_at) as last_at
                  from new_rows
                 where parent_id is not null and not is_deleted
                 group by parent_id) d
         where p.id = d.parent_id;
    elsif tg_op = 'DELETE' then
        update public.chat p
           set total_replies = greatest(p.total_replies - d.n, 0)
          from (select parent_id, count(*) as n
                  from old_rows
                 where parent_id is not null and not is_deleted
                 group by parent_id) d
         where p.id = d.parent_id;
    else
        -- Bumping a root's counters is itself an UPDATE of chat: roots have no parent_id, so
        -- that update finds nothing to do here and the recursion ends.
        if not exists (select 1 from old_rows where parent_id is not null)
           and not exists (select 1 from new_rows where parent_id is not null) then
            return null;
        end if;
        update public.chat p
           set total_replies = greatest(p.total_replies + d.n, 0)
          from (select parent_id, sum(delta) as n
                  from (select parent_id, -1 as delta from old_rows where parent_id is not null and not is_deleted
                        union all
                        select parent_id, 1 from new_rows where parent_id is not null and not is_deleted) x
                 group by parent_id
                having sum(delta) <> 0) d
         where p.id = d.parent_id;
    end if;
    return null;
end
$$;
create trigger chat_replies_insert after insert on public.chat
    referencing new table as new_rows
    for each statement execute function chat_private.apply_reply_deltas();
create trigger chat_replies_update after update on public.chat
    referencing old table as old_rows new table as new_rows
    for each statement execute function chat_private.apply_reply_deltas();
create trigger chat_replies_delete after delete on public.chat
    referencing old table as old_rows
    for each statement execute function chat_private.apply_reply_deltas();

-- Reactions: one row per (message, user, emoji).
create table public.emojis (
    message_id uuid not null references public.chat (id) on delete cascade,
    user_id uuid not null references public.users (id) on delete cascade,
    emoji text not null,
    created_at timestamptz not null default now(),
    primary key (message_id, user_id, emoji),
    constraint emojis_emoji_format check (char_length(emoji) between 1 and 100 and emoji !~ '[[:space:]]')
);
create index emojis_user_idx on public.emojis (user_id);

-- Files attached to a message; the bytes live in Supabase Storage (bucket + object path).
create table public.attachments (
    id uuid primary key default gen_random_uuid(),
    message_id uuid not null references public.chat (id) on delete cascade,
    bucket_id text not null,
    object_path text not null,
    name text not null,
    size_bytes bigint not null,
    mime_type text not null default 'application/octet-stream',
    created_at timestamptz not null default now(),
    constraint attachments_size_nonnegative check (size_bytes >= 0),
    constraint attachments_name_length check (char_length(name) between 1 and 255)
);
create index attachments_message_idx on public.attachments (message_id);

create table public.read_receipts (
    message_id uuid not null references public.chat (id) on delete cascade,
    user_id uuid not null references public.users (id) on delete cascade,
    read_at timestamptz not null default now(),
    primary key (message_id, user_id)
);
create index read_receipts_user_idx on public.read_receipts (user_id);

create table public.user_status (
    user_id uuid primary key references public.users (id) on delete cascade,
    presence text not null default 'offline',
    status_text text not null default '',
    status_emoji text not null default '',
    status_expires_at timestamptz,
    last_seen_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint user_status_presence check (presence in ('online', 'away', 'dnd', 'offline')),
    constraint user_status_text_length check (char_length(status_text) <= 100)
);
create trigger user_status_updated_at before update on public.user_status
    for each row execute function chat_private.set_updated_at();

-- chatctl's operational state: granted to no API role.
create table chatctl.audit_log (
    id bigint generated always as identity primary key,
    at timestamptz not null default now(),
    actor text not null,
    command text not null,
    action text not null,
    object_type text not null,
    object_id text,
    before jsonb,
    after jsonb
);
create index audit_log_at_idx on chatctl.audit_log (at);
create index audit_log_object_idx on chatctl.audit_log (object_type, object_id);

-- Supabase Realtime: the chat tables are in its publication; old rows are sent in full for
-- updates and deletes (a soft delete or a removed reaction must say which channel it was in).
alter table public.chat replica identity full;
alter table public.emojis replica identity full;
alter table public.members replica identity full;
do $$
begin
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime' and not puballtables) then
        alter publication supabase_realtime
            add table public.chat, public.emojis, public.members, public.channels;
    end if;
end
$$;
