CREATE TABLE "instances" (
	"sop_uid" text COLLATE "C" PRIMARY KEY NOT NULL,
	"series_uid" text COLLATE "C" NOT NULL,
	"study_uid" text COLLATE "C" NOT NULL,
	"sop_class_uid" text COLLATE "C" NOT NULL,
	"instance_number" bigint,
	"transfer_syntax_uid" text NOT NULL,
	"number_of_frames" bigint NOT NULL,
	"rows" bigint,
	"columns" bigint,
	"object_key" text NOT NULL,
	"size" bigint NOT NULL,
	"sha256" text NOT NULL,
	"inflated" boolean DEFAULT false NOT NULL,
	"frames" text NOT NULL,
	"json" text NOT NULL,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "series" (
	"series_uid" text COLLATE "C" PRIMARY KEY NOT NULL,
	"study_uid" text COLLATE "C" NOT NULL,
	"modality" text COLLATE "C",
	"series_number" bigint,
	"series_description" text COLLATE "C",
	"series_date" text COLLATE "C",
	"series_time" text COLLATE "C",
	"body_part_examined" text COLLATE "C",
	"pps_start_date" text COLLATE "C",
	"num_instances" integer DEFAULT 0 NOT NULL,
	"json" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "studies" (
	"study_uid" text COLLATE "C" PRIMARY KEY NOT NULL,
	"patient_id" text COLLATE "C",
	"patient_name_alphabetic" text COLLATE "C",
	"patient_name_ideographic" text COLLATE "C",
	"patient_name_phonetic" text COLLATE "C",
	"patient_birth_date" text COLLATE "C",
	"patient_sex" text COLLATE "C",
	"study_date" text COLLATE "C",
	"study_time" text COLLATE "C",
	"accession_number" text COLLATE "C",
	"study_id" text COLLATE "C",
	"study_description" text COLLATE "C",
	"referring_physician_name" text COLLATE "C",
	"modalities" text COLLATE "C" DEFAULT '' NOT NULL,
	"num_series" integer DEFAULT 0 NOT NULL,
	"num_instances" integer DEFAULT 0 NOT NULL,
	"json" text NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE INDEX "instances_series" ON "instances" USING btree ("series_uid","instance_number");--> statement-breakpoint
CREATE INDEX "instances_study" ON "instances" USING btree ("study_uid");--> statement-breakpoint
CREATE INDEX "series_study" ON "series" USING btree ("study_uid","series_number");--> statement-breakpoint
CREATE INDEX "studies_patient_id" ON "studies" USING btree ("patient_id");--> statement-breakpoint
CREATE INDEX "studies_date" ON "studies" USING btree ("study_date","study_time");--> statement-breakpoint
CREATE INDEX "studies_accession" ON "studies" USING btree ("accession_number");--> statement-breakpoint
CREATE INDEX "studies_name" ON "studies" USING btree ("patient_name_alphabetic");