-- Monthly partitions of personalization_event (PostgreSQL 13+), for sites with hundreds of millions of events.
-- docs/deployment.md ("Partitioning the event table") says when, and what changes; tests/integration/
-- test_partitioning.py runs this file against PostgreSQL and then ingests, de-duplicates, queries and drops a month.
--
-- Run it once, in a quiet moment, with `psql -v ON_ERROR_STOP=1 -1 -f scripts/partition_events.sql` (one
-- transaction). Pause the flush task first (the Redis buffer keeps the events meanwhile) or accept that web
-- processes writing directly wait for the lock. Rows are copied, so plan for the table's size in time and disk;
-- the old table is kept as personalization_event_unpartitioned until you drop it.
--
-- Afterwards, every month (cron or a beat task), create the coming months' partitions:
--     SELECT personalization_event_ensure_partitions(now(), now() + interval '3 months');
-- and drop a month past the retention period in one statement instead of deleting its rows:
--     DROP TABLE personalization_event_2025_01;

LOCK TABLE personalization_event IN ACCESS EXCLUSIVE MODE;
ALTER TABLE personalization_event RENAME TO personalization_event_unpartitioned;

-- Index and constraint names are per schema: free Django's names for the new table.
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'personalization_event_unpartitioned'::regclass AND contype IN ('p', 'u') LOOP
        EXECUTE format('ALTER TABLE personalization_event_unpartitioned RENAME CONSTRAINT %I TO %I',
                       r.conname, r.conname || '_unpartitioned');
    END LOOP;
    FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'personalization_event_unpartitioned'::regclass
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, r.relname || '_unpartitioned');
    END LOOP;
END $$;

-- Same columns, partitioned by the event's time. A partitioned table (before PostgreSQL 17) cannot have an
-- identity column: id takes its values from a sequence continuing after the old table's largest id.
CREATE TABLE personalization_event (
    LIKE personalization_event_unpartitioned INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMMENTS
) PARTITION BY RANGE (occurred_at);
CREATE SEQUENCE personalization_event_partitioned_id_seq AS bigint OWNED BY personalization_event.id;
SELECT setval('personalization_event_partitioned_id_seq',
              COALESCE((SELECT max(id) FROM personalization_event_unpartitioned), 0) + 1, false);
ALTER TABLE personalization_event ALTER COLUMN id SET DEFAULT nextval('personalization_event_partitioned_id_seq');

-- Unique constraints of a partitioned table must hold the partition key: the event id is unique per time.
ALTER TABLE personalization_event ADD CONSTRAINT personalization_event_pkey PRIMARY KEY (id, occurred_at);
ALTER TABLE personalization_event ADD CONSTRAINT personalization_event_event_id_key UNIQUE (event_id, occurred_at);
-- Django's index names, so later migrations find them.
CREATE INDEX pers_event_time ON personalization_event (occurred_at);
CREATE INDEX pers_event_visitor ON personalization_event (visitor_id, occurred_at);
CREATE INDEX pers_event_user ON personalization_event (user_id, occurred_at);
CREATE INDEX pers_event_item ON personalization_event (item_key, occurred_at);
CREATE INDEX pers_event_type ON personalization_event (event_type, occurred_at);
CREATE INDEX pers_event_rec ON personalization_event (recommendation_id) WHERE NOT recommendation_id::text = '';

-- One partition per calendar month (UTC), named personalization_event_YYYY_MM; existing ones are kept.
CREATE OR REPLACE FUNCTION personalization_event_ensure_partitions(since timestamptz, until timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    month timestamp := date_trunc('month', since AT TIME ZONE 'UTC');
    created integer := 0;
    name text;
BEGIN
    WHILE month <= until AT TIME ZONE 'UTC' LOOP
        name := 'personalization_event_' || to_char(month, 'YYYY_MM');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF personalization_event FOR VALUES FROM (%L) TO (%L)',
                           name, month AT TIME ZONE 'UTC', (month + interval '1 month') AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END $$;

-- Months of the existing rows up to three months ahead; anything else (a clock far off) lands in the default.
SELECT personalization_event_ensure_partitions(
    COALESCE((SELECT min(occurred_at) FROM personalization_event_unpartitioned), now()), now() + interval '3 months');
CREATE TABLE personalization_event_default PARTITION OF personalization_event DEFAULT;

INSERT INTO personalization_event SELECT * FROM personalization_event_unpartitioned;
-- When the counts match: DROP TABLE personalization_event_unpartitioned;
