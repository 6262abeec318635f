CREATE TABLE "study_announcements" (
	"study_uid" text COLLATE "C" PRIMARY KEY NOT NULL,
	"version" integer NOT NULL,
	"announced_version" integer NOT NULL,
	"changed_at" bigint NOT NULL,
	"removed" boolean NOT NULL,
	"patient_id" text COLLATE "C",
	"accession_number" text COLLATE "C"
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"id" text PRIMARY KEY NOT NULL,
	"webhook_id" text NOT NULL,
	"event_type" text NOT NULL,
	"study_uid" text COLLATE "C" NOT NULL,
	"body" text NOT NULL,
	"created_at" bigint NOT NULL,
	"status" text NOT NULL,
	"attempts" integer NOT NULL,
	"next_attempt_at" bigint NOT NULL,
	"give_up_at" bigint NOT NULL,
	"last_status" integer,
	"last_error" text,
	"last_attempt_at" bigint,
	"delivered_at" bigint,
	"lease_owner" text,
	"lease_until" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhooks" (
	"id" text PRIMARY KEY NOT NULL,
	"url" text NOT NULL,
	"secret" text NOT NULL,
	"events" text NOT NULL,
	"allow_local" boolean NOT NULL,
	"description" text,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE INDEX "study_announcements_pending" ON "study_announcements" USING btree ("changed_at") WHERE "study_announcements"."announced_version" < "study_announcements"."version";--> statement-breakpoint
CREATE INDEX "webhook_deliveries_due" ON "webhook_deliveries" USING btree ("status","next_attempt_at");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_webhook" ON "webhook_deliveries" USING btree ("webhook_id","created_at");