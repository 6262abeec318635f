CREATE TABLE `application_entities` (
	`ae_title` text PRIMARY KEY NOT NULL,
	`host` text,
	`port` integer,
	`may_store` integer NOT NULL,
	`may_query` integer NOT NULL,
	`may_retrieve` integer NOT NULL,
	`description` text,
	`created_at` integer NOT NULL
);
