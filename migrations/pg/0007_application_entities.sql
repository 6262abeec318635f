CREATE TABLE "application_entities" (
	"ae_title" text COLLATE "C" PRIMARY KEY NOT NULL,
	"host" text,
	"port" integer,
	"may_store" boolean NOT NULL,
	"may_query" boolean NOT NULL,
	"may_retrieve" boolean NOT NULL,
	"description" text,
	"created_at" bigint NOT NULL
);
