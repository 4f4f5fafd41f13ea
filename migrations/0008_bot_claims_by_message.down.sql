alter table chatctl.bot_claims
    drop constraint bot_claims_pkey,
    add constraint bot_claims_pkey primary key (bot, message_id);
