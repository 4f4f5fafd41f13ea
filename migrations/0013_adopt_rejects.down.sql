drop table chatctl.adopt_rejects;
