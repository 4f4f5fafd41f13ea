-- Back to 0014's `forget_reactions` (which fails to delete a channel where someone reacted
-- to two of its messages: see the up file).
create or replace function chat_private.forget_reactions() returns trigger
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
