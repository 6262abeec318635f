CREATE TABLE "integrity_passes" (
	"name" text PRIMARY KEY NOT NULL,
	"owner" text,
	"lease_until" bigint NOT NULL,
	"started_at" bigint NOT NULL,
	"cursor" text COLLATE "C" NOT NULL,
	"progress" text NOT NULL,
	"last" text
);
--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "damage" text;--> statement-breakpoint
ALTER TABLE "instances" ADD COLUMN "damage_found_at" bigint;--> statement-breakpoint
CREATE INDEX "instances_damage" ON "instances" USING btree ("damage");