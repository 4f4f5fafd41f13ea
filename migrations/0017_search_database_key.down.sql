alter table chatctl.search_state drop column database_key;
