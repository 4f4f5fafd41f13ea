-- What a Supabase project already provides, created here only where it is missing,
-- so that the same migrations run unchanged on a hosted project and on plain Postgres.
-- Every object this migration creates is recorded in chatctl.bootstrap_objects, and
-- the down migration drops only those: on a real Supabase project it drops nothing.
-- Roles are cluster-wide (other databases may use them), so they are never dropped.

create schema if not exists chatctl;
revoke all on schema chatctl from public;

create table if not exists chatctl.bootstrap_objects (
    kind text not null,
    name text not null,
    created_at timestamptz not null default clock_timestamp(),
    primary key (kind, name)
);

do $bootstrap$
begin
    -- Roles PostgREST switches to. service_role bypasses row level security.
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;

    -- Schema auth, shaped as Supabase Auth (GoTrue) leaves it.
    if not exists (select 1 from pg_namespace where nspname = 'auth') then
        create schema auth;
        grant usage on schema auth to anon, authenticated, service_role;
        insert into chatctl.bootstrap_objects (kind, name) values ('schema', 'auth');
    end if;

    if to_regclass('auth.users') is null then
        create table auth.users (
            instance_id uuid,
            id uuid not null primary key,
            aud varchar(255),
            role varchar(255),
            email varchar(255),
            encrypted_password varchar(255),
            email_confirmed_at timestamptz,
            invited_at timestamptz,
            confirmation_token varchar(255),
            confirmation_sent_at timestamptz,
            recovery_token varchar(255),
            recovery_sent_at timestamptz,
            email_change_token_new varchar(255),
            email_change varchar(255),
            email_change_sent_at timestamptz,
            last_sign_in_at timestamptz,
            raw_app_meta_data jsonb,
            raw_user_meta_data jsonb,
            is_super_admin boolean,
            created_at timestamptz,
            updated_at timestamptz,
            phone text unique default null,
            phone_confirmed_at timestamptz,
            phone_change text default '',
            phone_change_token varchar(255) default '',
            phone_change_sent_at timestamptz,
            confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
            email_change_token_current varchar(255) default '',
            email_change_confirm_status smallint default 0
                check (email_change_confirm_status >= 0 and email_change_confirm_status <= 2),
            banned_until timestamptz,
            reauthentication_token varchar(255) default '',
            reauthentication_sent_at timestamptz,
            is_sso_user boolean not null default false,
            deleted_at timestamptz,
            is_anonymous boolean not null default false
        );
        create unique index users_email_partial_key on auth.users (email) where (is_sso_user = false);
        create index users_instance_id_idx on auth.users (instance_id);
        create index users_instance_id_email_idx on auth.users (instance_id, lower(email::text));
        alter table auth.users enable row level security;
        insert into chatctl.bootstrap_objects (kind, name) values ('table', 'auth.users');
    end if;

    if to_regclass('auth.identities') is null then
        create table auth.identities (
            provider_id text not null,
            user_id uuid not null references auth.users (id) on delete cascade,
            identity_data jsonb not null,
            provider text not null,
            last_sign_in_at timestamptz,
            created_at timestamptz,
            updated_at timestamptz,
            email text generated always as (lower(identity_data ->> 'email')) stored,
            id uuid not null default gen_random_uuid() primary key,
            constraint identities_provider_id_provider_unique unique (provider_id, provider)
        );
        create index identities_user_id_idx on auth.identities (user_id);
        create index identities_email_idx on auth.identities (email text_pattern_ops);
        alter table auth.identities enable row level security;
        insert into chatctl.bootstrap_objects (kind, name) values ('table', 'auth.identities');
    end if;

    -- The claim readers PostgREST's policies rely on: request.jwt.claims holds the JWT's claims.
    if to_regprocedure('auth.uid()') is null then
        create function auth.uid() returns uuid language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
            )::uuid
        $f$;
        insert into chatctl.bootstrap_objects (kind, name) values ('function', 'auth.uid()');
    end if;
    if to_regprocedure('auth.role()') is null then
        create function auth.role() returns text language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim.role', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
            )::text
        $f$;
        insert into chatctl.bootstrap_objects (kind, name) values ('function', 'auth.role()');
    end if;
    if to_regprocedure('auth.jwt()') is null then
        create function auth.jwt() returns jsonb language sql stable as $f$
            select coalesce(
                nullif(current_setting('request.jwt.claim', true), ''),
                nullif(current_setting('request.jwt.claims', true), '')
            )::jsonb
        $f$;
        insert into chatctl.bootstrap_objects (kind, name) values ('function', 'auth.jwt()');
    end if;

    -- Schema storage, shaped as Supabase Storage leaves it.
    if not exists (select 1 from pg_namespace where nspname = 'storage') then
        create schema storage;
        grant usage on schema storage to anon, authenticated, service_role;
        insert into chatctl.bootstrap_objects (kind, name) values ('schema', 'storage');
    end if;
    if to_regclass('storage.buckets') is null then
        create table storage.buckets (
            id text not null primary key,
            name text not null,
            owner uuid,
            created_at timestamptz default now(),
            updated_at timestamptz default now(),
            public boolean default false,
            avif_autodetection boolean default false,
            file_size_limit bigint,
            allowed_mime_types text[],
            owner_id text
        );
        create unique index bname on storage.buckets (name);
        alter table storage.buckets enable row level security;
        insert into chatctl.bootstrap_objects (kind, name) values ('table', 'storage.buckets');
    end if;
    if to_regclass('storage.objects') is null then
        create table storage.objects (
            id uuid not null default gen_random_uuid() primary key,
            bucket_id text references storage.buckets (id),
            name text,
            owner uuid,
            created_at timestamptz default now(),
            updated_at timestamptz default now(),
            last_accessed_at timestamptz default now(),
            metadata jsonb,
            path_tokens text[] generated always as (string_to_array(name, '/')) stored,
            version text,
            owner_id text,
            user_metadata jsonb
        );
        create unique index bucketid_objname on storage.objects (bucket_id, name);
        alter table storage.objects enable row level security;
        insert into chatctl.bootstrap_objects (kind, name) values ('table', 'storage.objects');
    end if;

    -- The publication Supabase Realtime streams postgres_changes from.
    if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        create publication supabase_realtime;
        insert into chatctl.bootstrap_objects (kind, name) values ('publication', 'supabase_realtime');
    end if;
end
$bootstrap$;
