-- Cluster-wide demo roles (password = role name). Idempotent; run as a superuser.
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['admin', 'support', 'analyst', 'intern', 'app'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', r, r);
    END IF;
  END LOOP;
END $$;
-- pgveil's own service connection (reads the catalog: relations, columns, views, roles).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgveil_catalog') THEN
    CREATE ROLE pgveil_catalog LOGIN PASSWORD 'pgveil_catalog';
  END IF;
END $$;
