-- A claim's primary key leads with the message. Deleting a message cascades to its claims by
-- message_id alone, which the old key (bot, message_id) could not serve: every deleted
-- message scanned every claim (deleting 40,000 replies took 99 s beside 40,000 claims). The
-- dispatcher's probes name both columns and use either order; ON CONFLICT (bot, message_id)
-- infers the key from its columns, whatever their order.
alter table chatctl.bot_claims
    drop constraint bot_claims_pkey,
    add constraint bot_claims_pkey primary key (message_id, bot);
