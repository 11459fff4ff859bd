-- The pgveil demo database "clinic": realistic but entirely fake personal data.
-- Deterministic (no random()): the same rows on every machine, so tests can rely on them.
-- Run as a superuser in database clinic after examples/demo-roles.sql.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

DROP TABLE IF EXISTS invoices, appointments, patients CASCADE;

CREATE TABLE patients (
  id                 bigserial PRIMARY KEY,
  full_name          text NOT NULL,
  email              text NOT NULL,
  phone              text NOT NULL,
  national_id        text NOT NULL,
  birth_date         date NOT NULL,
  address            text NOT NULL,
  nationality        text NOT NULL,
  religion           text,
  sexual_orientation text,
  created_at         timestamptz NOT NULL
);

CREATE TABLE appointments (
  id           bigserial PRIMARY KEY,
  patient_id   bigint NOT NULL REFERENCES patients(id),
  doctor       text NOT NULL,
  scheduled_at timestamptz NOT NULL,
  notes        text
);

CREATE TABLE invoices (
  id          bigserial PRIMARY KEY,
  patient_id  bigint NOT NULL REFERENCES patients(id),
  amount      numeric(10,2) NOT NULL,
  iban        text NOT NULL,
  card_number text,
  paid_at     timestamptz
);

-- Luhn check digit for a string of digits (used to make card numbers valid).
CREATE FUNCTION pg_temp.luhn_digit(digits text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
  SELECT ((10 - sum(CASE WHEN (length(digits) - i) % 2 = 0
                         THEN (d * 2) - CASE WHEN d * 2 > 9 THEN 9 ELSE 0 END
                         ELSE d END) % 10) % 10)::int
  FROM (SELECT i, substr(digits, i, 1)::int AS d FROM generate_series(1, length(digits)) AS i) s
$$;

WITH names AS (
  SELECT ARRAY['James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda','David','Elizabeth',
               'William','Barbara','Richard','Susan','Joseph','Jessica','Thomas','Sarah','Charles','Karen',
               'Amara','Kenji','Fatima','Mateo','Ingrid','Ravi','Chloe','Dmitri','Aisha','Lucas',
               'Sofia','Noah','Yara','Liam','Mei','Omar','Elena','Tariq','Hannah','Pierre'] AS first,
         ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez',
               'Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin',
               'Okafor','Tanaka','Haddad','Silva','Larsen','Patel','Dubois','Ivanov','Mensah','Schmidt',
               'Rossi','Nguyen','Cohen','Kowalski','Chen','Farouk','Popescu','Yilmaz','Novak','Laurent'] AS last,
         ARRAY['Main St','Oak Avenue','Pine Road','Maple Drive','Cedar Lane','Elm Street','Lake View',
               'Hillside Court','Park Place','River Road'] AS street,
         ARRAY['Springfield','Riverton','Lakewood','Fairview','Georgetown','Ashford','Brookside','Milton'] AS city,
         ARRAY['US','US','US','CA','MX','FR','DE','NG','IN','JP','BR','GB'] AS nationality,
         ARRAY['Christian','Muslim','Jewish','Hindu','Buddhist','None','Sikh','Other'] AS religion,
         ARRAY['heterosexual','heterosexual','heterosexual','gay','lesbian','bisexual','asexual','prefer not to say'] AS orientation,
         ARRAY['example.com','example.org','example.net','mail.example'] AS domain
)
INSERT INTO patients (full_name, email, phone, national_id, birth_date, address, nationality, religion,
                      sexual_orientation, created_at)
SELECT n.first[1 + (g * 7) % 40] || ' ' || n.last[1 + (g * 13) % 40],
       lower(n.first[1 + (g * 7) % 40]) || '.' || lower(n.last[1 + (g * 13) % 40]) || g || '@' || n.domain[1 + g % 4],
       '+1-' || (201 + (g * 37) % 780) || '-555-' || lpad(((g * 7919) % 10000)::text, 4, '0'),
       lpad((101 + (g * 31) % 664)::text, 3, '0') || '-' || lpad((10 + (g * 17) % 89)::text, 2, '0') || '-' ||
         lpad((1000 + (g * 7907) % 8999)::text, 4, '0'),
       date '1935-01-01' + ((g * 2903) % 27000),
       (1 + (g * 11) % 9800) || ' ' || n.street[1 + (g * 3) % 10] || ', ' || n.city[1 + (g * 5) % 8],
       n.nationality[1 + (g * 19) % 12],
       CASE WHEN g % 9 = 0 THEN NULL ELSE n.religion[1 + (g * 23) % 8] END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE n.orientation[1 + (g * 29) % 8] END,
       timestamptz '2020-01-01 00:00:00+00' + ((g::bigint * 104729) % 157680000) * interval '1 second'
FROM generate_series(1, 200000) AS g, names AS n;

INSERT INTO appointments (patient_id, doctor, scheduled_at, notes)
SELECT 1 + (g * 7) % 200000,
       (ARRAY['Dr. Alvarez','Dr. Brooks','Dr. Chen','Dr. Diallo','Dr. Evans','Dr. Fischer'])[1 + g % 6],
       timestamptz '2024-01-01 08:00:00+00' + ((g * 7841) % 63072000) * interval '1 second',
       CASE
         WHEN g % 5 = 0 THEN 'Patient asked to be contacted at ' || p.email || ' about the results.'
         WHEN g % 7 = 0 THEN 'Call back on ' || p.phone || ' to reschedule the follow-up.'
         WHEN g % 11 = 0 THEN NULL
         ELSE (ARRAY['Routine check-up, no concerns.','Blood pressure slightly elevated; recheck in 3 months.',
                     'Prescribed physiotherapy twice a week.','Discussed lab results; all within range.',
                     'Follow-up for seasonal allergies.'])[1 + g % 5]
       END
FROM generate_series(1, 200000) AS g
JOIN patients p ON p.id = 1 + (g * 7) % 200000;

INSERT INTO invoices (patient_id, amount, iban, card_number, paid_at)
SELECT 1 + (g * 3) % 200000,
       round((20 + (g * 7919) % 98000 / 100.0)::numeric, 2),
       'DE' || lpad((98 - (bban || '131400')::numeric % 97)::int::text, 2, '0') || bban,
       CASE WHEN g % 4 = 0 THEN NULL ELSE card || pg_temp.luhn_digit(card) END,
       CASE WHEN g % 6 = 0 THEN NULL
            ELSE timestamptz '2024-01-01 00:00:00+00' + ((g::bigint * 15485863) % 63072000) * interval '1 second' END
FROM generate_series(1, 150000) AS g,
     LATERAL (SELECT lpad((10000000 + (g * 7121) % 89999999)::text, 8, '0') ||
                     lpad(((g::bigint * 104723) % 9999999999)::text, 10, '0') AS bban,
                     '4' || lpad(((g::bigint * 982451653) % 100000000000000)::text, 14, '0') AS card) AS x;

CREATE INDEX ON appointments (patient_id);
CREATE INDEX ON invoices (patient_id);
ANALYZE patients;
ANALYZE appointments;
ANALYZE invoices;

GRANT SELECT ON patients, appointments, invoices TO admin, support, analyst, intern, app;
GRANT INSERT, UPDATE ON patients, appointments, invoices TO app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app;
