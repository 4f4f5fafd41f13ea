-- The AI's daily token budget: what each bot (and the CLI, as `chatctl`) has spent per UTC
-- day. A request reserves its estimated tokens first, in one statement that refuses when
-- the budget would be passed (so replicas cannot overspend together), and is settled to
-- the server's own count when the answer arrives.
create table chatctl.ai_usage (
    bot text not null,
    day date not null,
    tokens bigint not null default 0 check (tokens >= 0),
    requests integer not null default 0,
    refusals integer not null default 0,
    primary key (bot, day)
);
