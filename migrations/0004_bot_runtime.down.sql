drop trigger chat_notify on public.chat;
drop function chat_private.notify_chat();
drop table chatctl.bot_digests;
drop table chatctl.bot_claims;
drop table chatctl.bot_cursors;
