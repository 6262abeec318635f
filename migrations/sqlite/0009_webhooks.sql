CREATE TABLE `study_announcements` (
	`study_uid` text PRIMARY KEY NOT NULL,
	`version` integer NOT NULL,
	`announced_version` integer NOT NULL,
	`changed_at` integer NOT NULL,
	`removed` integer NOT NULL,
	`patient_id` text,
	`accession_number` text
);
--> statement-breakpoint
CREATE INDEX `study_announcements_pending` ON `study_announcements` (`changed_at`) WHERE "study_announcements"."announced_version" < "study_announcements"."version";--> statement-breakpoint
CREATE TABLE `webhook_deliveries` (
	`id` text PRIMARY KEY NOT NULL,
	`webhook_id` text NOT NULL,
	`event_type` text NOT NULL,
	`study_uid` text NOT NULL,
	`body` text NOT NULL,
	`created_at` integer NOT NULL,
	`status` text NOT NULL,
	`attempts` integer NOT NULL,
	`next_attempt_at` integer NOT NULL,
	`give_up_at` integer NOT NULL,
	`last_status` integer,
	`last_error` text,
	`last_attempt_at` integer,
	`delivered_at` integer,
	`lease_owner` text,
	`lease_until` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `webhook_deliveries_due` ON `webhook_deliveries` (`status`,`next_attempt_at`);--> statement-breakpoint
CREATE INDEX `webhook_deliveries_webhook` ON `webhook_deliveries` (`webhook_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `webhooks` (
	`id` text PRIMARY KEY NOT NULL,
	`url` text NOT NULL,
	`secret` text NOT NULL,
	`events` text NOT NULL,
	`allow_local` integer NOT NULL,
	`description` text,
	`created_at` integer NOT NULL
);
