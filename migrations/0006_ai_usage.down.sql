drop table chatctl.ai_usage;
