CREATE TABLE "trash_entries" (
	"id" text PRIMARY KEY NOT NULL,
	"deleted_at" bigint NOT NULL,
	"purge_after" bigint NOT NULL,
	"study_uid" text COLLATE "C" NOT NULL,
	"series_uid" text COLLATE "C",
	"sop_uid" text COLLATE "C",
	"reason" text NOT NULL,
	"credential" text NOT NULL,
	"patient_id" text COLLATE "C",
	"study_json" text NOT NULL,
	"rows" text NOT NULL,
	"instances" integer NOT NULL,
	"bytes" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "trash_instances" (
	"entry_id" text NOT NULL,
	"sop_uid" text COLLATE "C" NOT NULL,
	"object_key" text NOT NULL,
	"row" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "trash_entries_purge" ON "trash_entries" USING btree ("purge_after");--> statement-breakpoint
CREATE INDEX "trash_entries_deleted" ON "trash_entries" USING btree ("deleted_at");--> statement-breakpoint
CREATE INDEX "trash_instances_entry" ON "trash_instances" USING btree ("entry_id");--> statement-breakpoint
CREATE INDEX "trash_instances_sop" ON "trash_instances" USING btree ("sop_uid");