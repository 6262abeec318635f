CREATE TABLE "upload_studies" (
	"upload_id" text NOT NULL,
	"study_uid" text COLLATE "C" NOT NULL,
	"patient_id" text COLLATE "C"
);
--> statement-breakpoint
CREATE TABLE "uploads" (
	"id" text PRIMARY KEY NOT NULL,
	"at" bigint NOT NULL,
	"door" text NOT NULL,
	"credential" text NOT NULL,
	"ip" text,
	"stored" integer NOT NULL,
	"present" integer NOT NULL,
	"refused" integer NOT NULL,
	"refusals" text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "upload_studies_upload" ON "upload_studies" USING btree ("upload_id","study_uid");--> statement-breakpoint
CREATE INDEX "upload_studies_study" ON "upload_studies" USING btree ("study_uid");--> statement-breakpoint
CREATE INDEX "upload_studies_patient" ON "upload_studies" USING btree ("patient_id");--> statement-breakpoint
CREATE INDEX "uploads_at" ON "uploads" USING btree ("at");