-- Back to 0011's names. Reactions keep their Unicode text (the old column held any text).

alter table public.emojis drop constraint emojis_id_key;
alter table public.emojis drop column id;
alter table public.emojis rename column emoji_uni_code to emoji;
alter table public.emojis rename column chat_id to message_id;
