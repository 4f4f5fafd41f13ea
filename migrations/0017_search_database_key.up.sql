-- Which database a search index was built from. An index directory outlives its database
-- (a restore into a new database, a database dropped and made again, a server pointed at
-- staging then production): applied to another database's change log from its watermark,
-- it kept the first database's documents. Each database now has a key of its own, which an
-- index records with the database's oid when built (a database made from a template has the
-- template's key, not its oid) and checks before every sync and query (rebuilt in full when
-- they differ); `backup restore` gives the restored database a new key.
alter table chatctl.search_state add column database_key uuid not null default gen_random_uuid();
