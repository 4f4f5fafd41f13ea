-- What each person did in each channel, kept as counters by the triggers that already run
-- for every write of `chat` (one statement-level call, as for the thread counts) and by
-- two on `emojis`. A profile's statistics (`GET /api/users/{id}/profile`) are what the
-- caller may read of them: before this table they were counted from the person's messages
-- and reactions, each checked against the caller's policies, so a profile cost grew with
-- how much its person wrote (p99 1,440 messages a person on the 1,000,000-message seed, the
-- busiest 48,764: 51 ms). Now it is a row or a few per channel the person wrote or reacted
-- in, each checked once (BENCHMARKS.md, "The HTTP API under load").
--
-- The rows of a person and channel add up to: their messages of the channel that are not
-- deleted (`messages`), those of them that start a thread with replies (`threads_started`)
-- and that reply (`replies`), the newest one's time (the greatest `last_message_at`), and
-- their reactions to the channel's messages, deleted ones too (`reactions`): exactly what
-- the profile used to count, so a row is readable by whoever may read the channel's
-- messages (the `chat` policy, applied to the row's channel). Only the database writes it.
--
-- Why several rows (`slot`): a counter row is locked from a write until its transaction
-- commits, so writers of the same person and channel (a bot answering in a busy channel,
-- a person posting from two devices, the first reply to someone's message) would wait for
-- each other's commits: at 5,000 messages/s the dispatch benchmark's p99 went from 17 to
-- 25 ms. A transaction writes the first slot no other running transaction holds (an
-- advisory lock per slot, taken without waiting), so none waits and a person and channel
-- has as many rows as it ever had writers at once: one, mostly. Big statements (an import,
-- a seed, a channel's deletion) write slot -1, where only other big ones wait, so that they
-- do not take a lock per person; a transaction writing many times slots below it
-- (`chat_private.activity_slot` says why).
create table public.user_activity (
    user_id uuid not null references public.users (id) on delete cascade,
    channel_id uuid not null references public.channels (id) on delete cascade,
    slot integer not null default 0,
    messages bigint not null default 0,
    threads_started bigint not null default 0,
    replies bigint not null default 0,
    reactions bigint not null default 0,
    last_message_at timestamptz,
    primary key (user_id, channel_id, slot)
);
create index user_activity_channel_idx on public.user_activity (channel_id);

grant select on public.user_activity to authenticated;
grant select, insert, update, delete on public.user_activity to service_role;
alter table public.user_activity enable row level security;
create policy user_activity_select on public.user_activity for select to authenticated using (
    channel_id = any ((select chat_private.my_channels())::uuid[])
    or (select true from public.channels c where c.id = user_activity.channel_id));

-- The slot this transaction writes for a person and channel: the first one no other running
-- transaction holds (advisory locks are re-entrant, so a transaction keeps its slot). `bulk`
-- (a statement of more than 32 people and channels): slot -1, no lock. After 256 writes of
-- small statements in one transaction (a script inserting messages one at a time), each
-- next 256 write slots -2, -3, … without a lock: a row rewritten by one transaction keeps
-- every version of it until the commit, and each write reads them all (100,000 inserts one
-- by one went from 28 to 260 s with one row rewritten throughout); this way a row is
-- rewritten at most 256 times by one transaction, and a transaction holds at most 256 locks.
create function chat_private.activity_slot(person uuid, channel uuid, bulk boolean) returns integer
language plpgsql volatile security definer set search_path = '' as $$
declare
    slot integer := 0;
    writes integer;
begin
    if bulk then
        return -1;
    end if;
    writes := coalesce(nullif(current_setting('chatctl.activity_writes', true), ''), '0')::integer;
    perform set_config('chatctl.activity_writes', (writes + 1)::text, true);
    if writes >= 256 then
        return -1 - writes / 256;
    end if;
    while not pg_try_advisory_xact_lock(hashtext('chatctl.user_activity'),
                                        hashtext(person::text || channel::text) # slot) loop
        slot := slot + 1;
    end loop;
    return slot;
end
$$;

-- Adds counts to people's rows, one entry per (person, channel), each in its slot. When
-- `deleting`, entries of a channel or person deleted by this very statement are dropped
-- (their rows went along).
create function chat_private.add_activity(people uuid[], channels uuid[], m bigint[], t bigint[],
                                          r bigint[], e bigint[], at timestamptz[],
                                          deleting boolean default false)
returns void language plpgsql security definer set search_path = '' as $$
begin
    insert into public.user_activity as a
           (user_id, channel_id, slot, messages, threads_started, replies, reactions, last_message_at)
    select d.person, d.channel, chat_private.activity_slot(d.person, d.channel, cardinality(people) > 32),
           d.m, d.t, d.r, d.e, d.at
      from unnest(people, channels, m, t, r, e, at) as d(person, channel, m, t, r, e, at)
     where not deleting
        or (exists (select 1 from public.channels c where c.id = d.channel)
            and exists (select 1 from public.users u where u.id = d.person))
     order by d.person, d.channel
    on conflict (user_id, channel_id, slot) do update
       set messages = a.messages + excluded.messages,
           threads_started = a.threads_started + excluded.threads_started,
           replies = a.replies + excluded.replies,
           reactions = a.reactions + excluded.reactions,
           last_message_at = greatest(a.last_message_at, excluded.last_message_at);
end
$$;

-- Messages: the thread counts (as before) and the activity counters, from the statement's
-- transition tables (visible only to this function's own statements, hence a statement per
-- event). An insert of top-level messages (most) costs one more statement, its authors'
-- counts; one with replies also counts, from the update of their roots' counters, the roots'
-- authors whose first reply came or whose last went (`threads_started`); that UPDATE's own
-- trigger call is told (`chatctl.bumping_roots`) that its activity was counted already.
-- `last_message_at` is a maximum: looked up again (the person's newest messages first,
-- `chat_user_idx`) only when a message at that time left the count.
create or replace function chat_private.apply_reply_deltas() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
    roots uuid[];
    deltas bigint[];
    lasts timestamptz[];
    people uuid[];
    channels uuid[];
    m bigint[];
    t bigint[];
    r bigint[];
    at timestamptz[];
begin
    if tg_op = 'INSERT' then
        select array_agg(parent_id order by parent_id), array_agg(n order by parent_id),
               array_agg(newest order by parent_id)
          into roots, deltas, lasts
          from (select parent_id, count(*) as n, max(created_at) as newest
                  from new_rows where parent_id is not null and not is_deleted
                 group by parent_id) d;
        -- The one statement most inserts cost: their authors' counts (and, when they reply,
        -- the roots' authors' threads, below). It is `add_activity`'s upsert written out
        -- from the transition table: building its arrays and calling it cost an insert as
        -- much again (pgbench, an insert of 10 messages: +0.1 ms against +0.05 ms).
        insert into public.user_activity as a
               (user_id, channel_id, slot, messages, threads_started, replies, last_message_at)
        select g.user_id, g.channel_id, chat_private.activity_slot(g.user_id, g.channel_id, g.groups > 32),
               g.sm, g.st, g.sr, g.newest
          from (select user_id, channel_id,
                       count(*) filter (where not is_deleted) as sm,
                       count(*) filter (where not is_deleted and parent_id is null and total_replies > 0) as st,
                       count(*) filter (where not is_deleted and parent_id is not null) as sr,
                       max(created_at) filter (where not is_deleted) as newest,
                       count(*) over () as groups
                  from new_rows
                 group by user_id, channel_id
                having count(*) filter (where not is_deleted) > 0) g
         order by g.user_id, g.channel_id
        on conflict (user_id, channel_id, slot) do update
           set messages = a.messages + excluded.messages,
               threads_started = a.threads_started + excluded.threads_started,
               replies = a.replies + excluded.replies,
               last_message_at = greatest(a.last_message_at, excluded.last_message_at);
    elsif tg_op = 'DELETE' then
        -- (Their reactions were taken off by `chat_private.forget_reactions`, before.)
        select array_agg(parent_id order by parent_id), array_agg(-n order by parent_id)
          into roots, deltas
          from (select parent_id, count(*) as n
                  from old_rows where parent_id is not null and not is_deleted
                 group by parent_id) d;
        select array_agg(user_id), array_agg(channel_id), array_agg(-sm), array_agg(-st),
               array_agg(-sr), array_agg(null::timestamptz)
          into people, channels, m, t, r, at
          from (select user_id, channel_id,
                       count(*) filter (where not is_deleted) as sm,
                       count(*) filter (where not is_deleted and parent_id is null and total_replies > 0) as st,
                       count(*) filter (where not is_deleted and parent_id is not null) as sr
                  from old_rows
                 group by user_id, channel_id
                having count(*) filter (where not is_deleted) > 0) g;
    else
        -- (Only from within this trigger: a client's own setting changes nothing.)
        if current_setting('chatctl.bumping_roots', true) = 'on' and pg_trigger_depth() > 1 then
            return null;
        end if;
        select array_agg(parent_id order by parent_id), array_agg(n order by parent_id)
          into roots, deltas
          from (select parent_id, sum(delta) as n
                  from (select parent_id, -1 as delta from old_rows where parent_id is not null and not is_deleted
                        union all
                        select parent_id, 1 from new_rows where parent_id is not null and not is_deleted) x
                 group by parent_id
                having sum(delta) <> 0) d;
        -- What the new rows count, less what the old ones did: most updates (an edit)
        -- change no counter and write nothing.
        select array_agg(user_id), array_agg(channel_id), array_agg(sm), array_agg(st),
               array_agg(sr), array_agg(newest)
          into people, channels, m, t, r, at
          from (select x.user_id, x.channel_id, sum(x.m) as sm, sum(x.t) as st, sum(x.r) as sr,
                       max(x.at) as newest
                  from (select user_id, channel_id,
                               (not is_deleted)::int as m,
                               (not is_deleted and parent_id is null and total_replies > 0)::int as t,
                               (not is_deleted and parent_id is not null)::int as r,
                               case when not is_deleted then created_at end as at
                          from new_rows
                        union all
                        select user_id, channel_id,
                               -(not is_deleted)::int,
                               -(not is_deleted and parent_id is null and total_replies > 0)::int,
                               -(not is_deleted and parent_id is not null)::int,
                               null
                          from old_rows) x
                 group by x.user_id, x.channel_id
                having sum(x.m) <> 0 or sum(x.t) <> 0 or sum(x.r) <> 0
                    or max(x.at) > (select coalesce(max(b.last_message_at), '-infinity') from public.user_activity b
                                     where b.user_id = x.user_id and b.channel_id = x.channel_id)) g;
    end if;
    if people is not null then
        perform chat_private.add_activity(people, channels, m, t, r,
                                          array_fill(0::bigint, array[cardinality(people)]), at,
                                          tg_op = 'DELETE');
    end if;
    if tg_op = 'DELETE' then
        update public.user_activity a
           set last_message_at = (select max(c.created_at) from public.chat c
                                   where c.user_id = a.user_id and c.channel_id = a.channel_id and not c.is_deleted)
          from (select user_id, channel_id, max(created_at) as newest
                  from old_rows where not is_deleted
                 group by user_id, channel_id) d
         where a.user_id = d.user_id and a.channel_id = d.channel_id and d.newest >= a.last_message_at;
    elsif tg_op = 'UPDATE' then
        -- A message at the newest time deleted, moved or re-dated: the newest again.
        update public.user_activity a
           set last_message_at = (select max(c.created_at) from public.chat c
                                   where c.user_id = a.user_id and c.channel_id = a.channel_id and not c.is_deleted)
          from (select user_id, channel_id, max(created_at) as newest
                  from (select user_id, channel_id, created_at from old_rows where not is_deleted
                        except
                        select user_id, channel_id, created_at from new_rows where not is_deleted) g
                 group by user_id, channel_id) d
         where a.user_id = d.user_id and a.channel_id = d.channel_id and d.newest >= a.last_message_at;
        -- A message moved to another channel takes its reactions along.
        if exists (select 1 from old_rows o join new_rows n on n.id = o.id where n.channel_id <> o.channel_id) then
            select array_agg(user_id), array_agg(channel_id), array_agg(n)
              into people, channels, m
              from (select e.user_id, x.channel_id, sum(x.delta) as n
                      from (select o.id, o.channel_id, -1 as delta
                              from old_rows o join new_rows n on n.id = o.id where n.channel_id <> o.channel_id
                            union all
                            select n.id, n.channel_id, 1
                              from old_rows o join new_rows n on n.id = o.id where n.channel_id <> o.channel_id) x
                      join public.emojis e on e.chat_id = x.id
                     group by e.user_id, x.channel_id) g;
            perform chat_private.add_reactions(people, channels, m);
        end if;
    end if;
    if roots is not null then
        -- The roots' counters, and their authors' threads started (or no longer), from what
        -- each update found: a second first reply to a root waits for the first one's
        -- commit here and then sees it counted.
        perform set_config('chatctl.bumping_roots', 'on', true);
        -- (Planned for each call, with the roots at hand: a plan kept for the session was
        -- made when the table looked small and read all of it every time, which made one
        -- long transaction of single-message inserts quadratic.)
        execute 'with bumped as (
                     update public.chat p
                        set total_replies = greatest(p.total_replies + d.n, 0),
                            last_reply_at = greatest(p.last_reply_at, d.newest)
                       from unnest($1, $2, $3) as d(id, n, newest)
                      where p.id = any ($1) and p.id = d.id
                     returning p.user_id, p.channel_id, p.is_deleted, p.parent_id, p.total_replies, d.n)
                 select array_agg(user_id), array_agg(channel_id), array_agg(k)
                   from (select b.user_id, b.channel_id,
                                sum((b.total_replies > 0)::int - ((b.total_replies - b.n) > 0)::int)::bigint as k
                           from bumped b
                          where not b.is_deleted and b.parent_id is null
                          group by b.user_id, b.channel_id) g
                  where k <> 0'
           into people, channels, t
          using roots, deltas, coalesce(lasts, '{}');
        perform set_config('chatctl.bumping_roots', '', true);
        if people is not null then
            m := array_fill(0::bigint, array[cardinality(people)]);
            perform chat_private.add_activity(people, channels, m, t, m, m,
                                              array_fill(null::timestamptz, array[cardinality(people)]));
        end if;
    end if;
    return null;
end
$$;

-- Reactions added to (or, negative, taken from) people's counts, one entry per (person,
-- channel).
create function chat_private.add_reactions(people uuid[], channels uuid[], n bigint[],
                                           deleting boolean default false)
returns void language plpgsql security definer set search_path = '' as $$
declare
    zero bigint[] := array_fill(0::bigint, array[coalesce(cardinality(people), 0)]);
begin
    if people is not null then
        perform chat_private.add_activity(people, channels, zero, zero, zero, n,
                                          array_fill(null::timestamptz, array[cardinality(people)]),
                                          deleting);
    end if;
end
$$;

-- A message deleted takes its reactions off their people's counts here, before it goes:
-- by the time its reactions are deleted (the foreign key's cascade), their message, and so
-- their channel, can no longer be read. Hard deletes are rare (the app deletes softly). The
-- count comes off any of the person's rows of the channel (they add up), without a slot:
-- deleting a channel deletes all its messages, each with its reactions.
create function chat_private.forget_reactions() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    update public.user_activity a
       set reactions = a.reactions - e.n
      from (select user_id, count(*) as n from public.emojis
             where chat_id = old.id group by user_id order by user_id) e
     where a.user_id = e.user_id and a.channel_id = old.channel_id
       and a.slot = (select min(b.slot) from public.user_activity b
                      where b.user_id = e.user_id and b.channel_id = old.channel_id);
    return old;
end
$$;
create trigger chat_forget_reactions before delete on public.chat
    for each row execute function chat_private.forget_reactions();

-- Reactions: counted in their message's channel (a reaction whose message is gone was
-- taken off already, above).
create function chat_private.apply_reaction_deltas() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
    people uuid[];
    channels uuid[];
    n bigint[];
begin
    if tg_op = 'INSERT' then
        select array_agg(user_id), array_agg(channel_id), array_agg(k) into people, channels, n
          from (select e.user_id, c.channel_id, count(*) as k
                  from new_rows e join public.chat c on c.id = e.chat_id
                 group by e.user_id, c.channel_id) g;
    elsif tg_op = 'DELETE' then
        select array_agg(user_id), array_agg(channel_id), array_agg(k) into people, channels, n
          from (select e.user_id, c.channel_id, -count(*) as k
                  from old_rows e join public.chat c on c.id = e.chat_id
                 group by e.user_id, c.channel_id) g;
    else
        select array_agg(user_id), array_agg(channel_id), array_agg(k) into people, channels, n
          from (select x.user_id, c.channel_id, sum(x.delta) as k
                  from (select user_id, chat_id, 1 as delta from new_rows
                        union all
                        select user_id, chat_id, -1 from old_rows) x
                  join public.chat c on c.id = x.chat_id
                 group by x.user_id, c.channel_id
                having sum(x.delta) <> 0) g;
    end if;
    perform chat_private.add_reactions(people, channels, n, tg_op = 'DELETE');
    return null;
end
$$;
create trigger emojis_activity_insert after insert on public.emojis
    referencing new table as new_rows
    for each statement execute function chat_private.apply_reaction_deltas();
create trigger emojis_activity_update after update on public.emojis
    referencing old table as old_rows new table as new_rows
    for each statement execute function chat_private.apply_reaction_deltas();
create trigger emojis_activity_delete after delete on public.emojis
    referencing old table as old_rows
    for each statement execute function chat_private.apply_reaction_deltas();

-- Every count from scratch, set-based, one row per person and channel: for what exists now,
-- and after a bulk load that set the triggers above aside (`dev seed`, `migrate adopt`).
create function chat_private.recount_activity() returns void
language plpgsql security definer set search_path = '' as $$
begin
    delete from public.user_activity;
    insert into public.user_activity (user_id, channel_id, messages, threads_started, replies, reactions, last_message_at)
    select user_id, channel_id, sum(m), sum(t), sum(r), sum(e), max(at)
      from (select user_id, channel_id,
                   count(*) filter (where not is_deleted) as m,
                   count(*) filter (where not is_deleted and parent_id is null and total_replies > 0) as t,
                   count(*) filter (where not is_deleted and parent_id is not null) as r,
                   0 as e,
                   max(created_at) filter (where not is_deleted) as at
              from public.chat
             group by user_id, channel_id
            union all
            select e.user_id, c.channel_id, 0, 0, 0, count(*), null
              from public.emojis e join public.chat c on c.id = e.chat_id
             group by e.user_id, c.channel_id) x
     group by user_id, channel_id;
end
$$;

revoke all on function chat_private.activity_slot(uuid, uuid, boolean),
    chat_private.add_activity(uuid[], uuid[], bigint[], bigint[], bigint[], bigint[], timestamptz[], boolean),
    chat_private.add_reactions(uuid[], uuid[], bigint[], boolean),
    chat_private.forget_reactions(), chat_private.apply_reaction_deltas(),
    chat_private.recount_activity() from public, anon, authenticated;
grant execute on function chat_private.recount_activity() to service_role;

select chat_private.recount_activity();
