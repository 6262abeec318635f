CREATE TABLE `integrity_passes` (
	`name` text PRIMARY KEY NOT NULL,
	`owner` text,
	`lease_until` integer NOT NULL,
	`started_at` integer NOT NULL,
	`cursor` text NOT NULL,
	`progress` text NOT NULL,
	`last` text
);
--> statement-breakpoint
ALTER TABLE `instances` ADD `damage` text;--> statement-breakpoint
ALTER TABLE `instances` ADD `damage_found_at` integer;--> statement-breakpoint
CREATE INDEX `instances_damage` ON `instances` (`damage`);