CREATE TABLE "sessions" (
	"id_hash" text PRIMARY KEY NOT NULL,
	"user_id" text NOT NULL,
	"created_at" bigint NOT NULL,
	"last_seen_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" text PRIMARY KEY NOT NULL,
	"login" text NOT NULL,
	"display_name" text NOT NULL,
	"roles" text NOT NULL,
	"password_hash" text NOT NULL,
	"must_change_password" integer NOT NULL,
	"created_at" bigint NOT NULL,
	"disabled_at" bigint,
	"failed_sign_ins" integer NOT NULL,
	"locked_until" bigint
);
--> statement-breakpoint
CREATE INDEX "sessions_user" ON "sessions" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "users_login" ON "users" USING btree ("login");