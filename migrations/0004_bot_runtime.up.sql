-- The bot runtime's state: where each bot has read up to, which messages it has claimed
-- (so restarts and replicas never reply twice), which digests it has posted, and the
-- trigger that wakes LISTEN/NOTIFY listeners.

-- Per bot: the newest (created_at, id) it has read. Catch-up reads from here minus an
-- overlap window, so rows committed out of order are still seen; claims dedupe the overlap.
-- started_at: when the bot first ran; it never answers what came before.
create table chatctl.bot_cursors (
    bot text primary key,
    started_at timestamptz not null default now(),
    read_at timestamptz not null,
    read_id uuid not null,
    updated_at timestamptz not null default now()
);

-- One row per (bot, message) a bot acts on. A claim is a lease: it can be taken over when
-- it is not done and either its holder's database session is gone (the process died:
-- claimed_pid is no longer in pg_stat_activity) or it is older than the lease. The reply
-- is posted in the same transaction that marks the claim done, and only by its holder, so a
-- takeover can waste work but never post twice.
create table chatctl.bot_claims (
    bot text not null,
    message_id uuid not null references public.chat (id) on delete cascade,
    channel_id uuid not null,
    thread_id uuid,
    claimed_by text not null,
    claimed_pid integer not null default pg_backend_pid(),
    claimed_at timestamptz not null default now(),
    done_at timestamptz,
    reply_id uuid,
    primary key (bot, message_id)
);
create index bot_claims_channel_idx on chatctl.bot_claims (bot, channel_id, claimed_at);

-- One row per scheduled digest window: a restart or a second replica never posts it twice.
create table chatctl.bot_digests (
    bot text not null,
    channel_id uuid not null references public.channels (id) on delete cascade,
    window_start timestamptz not null,
    window_end timestamptz not null,
    claimed_by text not null,
    claimed_at timestamptz not null default now(),
    message_id uuid,
    primary key (bot, channel_id, window_start)
);

-- LISTEN/NOTIFY wake-ups: a small payload, rows are read back. A NOTIFY serialises every
-- committing writer of the database on a global lock, so the trigger is created disabled
-- and switched on only where the LISTEN/NOTIFY event source is used (not on a Supabase
-- project that uses Realtime).
create function chat_private.notify_chat() returns trigger language plpgsql as $$
begin
    perform pg_notify('chatctl_events',
        json_build_object('op', lower(tg_op), 'id', new.id, 'channel_id', new.channel_id)::text);
    return null;
end
$$;
-- Inserts only: the runtime acts on new messages; an update (an edit, a root's reply
-- counter moving) would wake every listener for nothing.
create trigger chat_notify after insert on public.chat
    for each row execute function chat_private.notify_chat();
alter table public.chat disable trigger chat_notify;
