DROP INDEX `studies_date`;--> statement-breakpoint
CREATE INDEX `studies_date` ON `studies` (`study_date`,`study_time`,`study_uid`);