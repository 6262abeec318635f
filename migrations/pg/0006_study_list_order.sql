DROP INDEX "studies_date";--> statement-breakpoint
CREATE INDEX "studies_date" ON "studies" USING btree ("study_date" DESC NULLS LAST,"study_time" DESC NULLS LAST,"study_uid" DESC NULLS LAST);