-- A channel deleted with its messages (directly, or with its workspace) failed when someone
-- had reacted to two or more of them: `forget_reactions` (0014) took each message's
-- reactions off its channel's counter rows as the cascade deleted the messages, and the
-- second update of a row made in this transaction is checked against its foreign key again,
-- by which time the channel is gone. The rows of a channel being deleted are deleted with it
-- (their own cascade): there is nothing to take off.
create or replace function chat_private.forget_reactions() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if not exists (select 1 from public.channels c where c.id = old.channel_id) then
        return old;
    end if;
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
