-- The dispatcher's hot path.
--
-- Reply caps count replies per fixed hourly window, per channel and per thread. Counting the
-- claims of the last hour instead costs a scan that grows with traffic (every batch counted
-- every claim of the hour in its channels: 3.6 million rows an hour at 1,000 messages/s);
-- a counter row is one index lookup. The statement that claims and posts replies bumps the
-- counters, so every replica sees them.
create table chatctl.bot_reply_counts (
    bot text not null,
    scope text not null check (scope in ('channel', 'thread')),
    scope_id uuid not null,
    window_start timestamptz not null,
    replies integer not null,
    primary key (bot, scope, scope_id, window_start)
);

-- The daemon does not wake itself: its sessions set `chatctl.notify = off`, and their inserts
-- (bot replies, digests) send no NOTIFY. A NOTIFY also makes its transaction queue for the
-- global commit lock behind every other writer; replies are picked up by other daemons'
-- catch-up (a bot answers another bot only with reply_to_bots).
do $$
declare
    was_enabled boolean := (select tgenabled <> 'D' from pg_trigger
                             where tgname = 'chat_notify' and tgrelid = 'public.chat'::regclass);
begin
    drop trigger chat_notify on public.chat;
    create trigger chat_notify after insert on public.chat
        for each row when (current_setting('chatctl.notify', true) is distinct from 'off')
        execute function chat_private.notify_chat();
    -- As it was: a running LISTEN/NOTIFY daemon keeps its wake-ups.
    if not was_enabled then
        alter table public.chat disable trigger chat_notify;
    end if;
end
$$;
