do $$
declare
    was_enabled boolean := (select tgenabled <> 'D' from pg_trigger
                             where tgname = 'chat_notify' and tgrelid = 'public.chat'::regclass);
begin
    drop trigger chat_notify on public.chat;
    create trigger chat_notify after insert on public.chat
        for each row execute function chat_private.notify_chat();
    if not was_enabled then
        alter table public.chat disable trigger chat_notify;
    end if;
end
$$;
drop table chatctl.bot_reply_counts;
