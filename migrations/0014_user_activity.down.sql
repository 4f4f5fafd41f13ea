-- Back to counting a profile's statistics from the messages (0014's up file says why not).
drop trigger emojis_activity_delete on public.emojis;
drop trigger emojis_activity_update on public.emojis;
drop trigger emojis_activity_insert on public.emojis;
drop function chat_private.apply_reaction_deltas();
drop trigger chat_forget_reactions on public.chat;
drop function chat_private.forget_reactions();
drop function chat_private.recount_activity();
drop function chat_private.add_reactions(uuid[], uuid[], bigint[], boolean);
drop function chat_private.add_activity(uuid[], uuid[], bigint[], bigint[], bigint[], bigint[], timestamptz[], boolean);
drop function chat_private.activity_slot(uuid, uuid, boolean);
-- The thread counts alone, as 0002 made them.
create or replace function chat_private.apply_reply_deltas() returns trigger
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
drop table public.user_activity;
