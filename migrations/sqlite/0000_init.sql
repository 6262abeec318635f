CREATE TABLE `instances` (
	`sop_uid` text PRIMARY KEY NOT NULL,
	`series_uid` text NOT NULL,
	`study_uid` text NOT NULL,
	`sop_class_uid` text NOT NULL,
	`instance_number` integer,
	`transfer_syntax_uid` text NOT NULL,
	`number_of_frames` integer NOT NULL,
	`rows` integer,
	`columns` integer,
	`object_key` text NOT NULL,
	`size` integer NOT NULL,
	`sha256` text NOT NULL,
	`inflated` integer DEFAULT false NOT NULL,
	`frames` text NOT NULL,
	`json` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `instances_series` ON `instances` (`series_uid`,`instance_number`);--> statement-breakpoint
CREATE INDEX `instances_study` ON `instances` (`study_uid`);--> statement-breakpoint
CREATE TABLE `series` (
	`series_uid` text PRIMARY KEY NOT NULL,
	`study_uid` text NOT NULL,
	`modality` text,
	`series_number` integer,
	`series_description` text,
	`series_date` text,
	`series_time` text,
	`body_part_examined` text,
	`pps_start_date` text,
	`num_instances` integer DEFAULT 0 NOT NULL,
	`json` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `series_study` ON `series` (`study_uid`,`series_number`);--> statement-breakpoint
CREATE TABLE `studies` (
	`study_uid` text PRIMARY KEY NOT NULL,
	`patient_id` text,
	`patient_name_alphabetic` text,
	`patient_name_ideographic` text,
	`patient_name_phonetic` text,
	`patient_birth_date` text,
	`patient_sex` text,
	`study_date` text,
	`study_time` text,
	`accession_number` text,
	`study_id` text,
	`study_description` text,
	`referring_physician_name` text,
	`modalities` text DEFAULT '' NOT NULL,
	`num_series` integer DEFAULT 0 NOT NULL,
	`num_instances` integer DEFAULT 0 NOT NULL,
	`json` text NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `studies_patient_id` ON `studies` (`patient_id`);--> statement-breakpoint
CREATE INDEX `studies_date` ON `studies` (`study_date`,`study_time`);--> statement-breakpoint
CREATE INDEX `studies_accession` ON `studies` (`accession_number`);--> statement-breakpoint
CREATE INDEX `studies_name` ON `studies` (`patient_name_alphabetic`);