CREATE TABLE `trash_entries` (
	`id` text PRIMARY KEY NOT NULL,
	`deleted_at` integer NOT NULL,
	`purge_after` integer NOT NULL,
	`study_uid` text NOT NULL,
	`series_uid` text,
	`sop_uid` text,
	`reason` text NOT NULL,
	`credential` text NOT NULL,
	`patient_id` text,
	`study_json` text NOT NULL,
	`rows` text NOT NULL,
	`instances` integer NOT NULL,
	`bytes` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `trash_entries_purge` ON `trash_entries` (`purge_after`);--> statement-breakpoint
CREATE INDEX `trash_entries_deleted` ON `trash_entries` (`deleted_at`);--> statement-breakpoint
CREATE TABLE `trash_instances` (
	`entry_id` text NOT NULL,
	`sop_uid` text NOT NULL,
	`object_key` text NOT NULL,
	`row` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `trash_instances_entry` ON `trash_instances` (`entry_id`);--> statement-breakpoint
CREATE INDEX `trash_instances_sop` ON `trash_instances` (`sop_uid`);