-- 0002-search-index: trigram indexes for the credential search
-- (GET /v1/credentials?q=, statement cred_list in src/vault_cred.c, which
-- matches lower(col) LIKE '%' || lower(escaped q) || '%').
--
-- The indexes need the pg_trgm extension. It ships with PostgreSQL (in
-- Debian in the postgresql-NN package itself) and is trusted since
-- PostgreSQL 13, so a role with CREATE on the database may create it. When
-- it is not installed, or this role may not create it, the migration still
-- succeeds without the indexes: the search gives the same answers, only
-- through a sequential scan (docs/storage.md says how to add them later).
--
-- Applied by `hsmvault migrate` inside one transaction through the simple
-- query protocol, so a DO block works; CREATE INDEX CONCURRENTLY cannot run
-- in a transaction, so these are plain CREATE INDEX (a short write lock on
-- credentials while they build).

DO $$
DECLARE
	trgm_schema name;
BEGIN
	SELECT n.nspname INTO trgm_schema
	    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
	    WHERE e.extname = 'pg_trgm';
	IF trgm_schema IS NULL AND NOT EXISTS (
	    SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
		RAISE NOTICE 'pg_trgm is not installed: credential search stays unindexed';
		RETURN;
	END IF;
	-- All or nothing: an error below rolls back the extension and every
	-- index this block made, never the migration.
	BEGIN
		IF trgm_schema IS NULL THEN
			CREATE EXTENSION IF NOT EXISTS pg_trgm;
			SELECT n.nspname INTO STRICT trgm_schema
			    FROM pg_extension e
			    JOIN pg_namespace n ON n.oid = e.extnamespace
			    WHERE e.extname = 'pg_trgm';
		END IF;
		-- The operator class is named with the extension's schema, which
		-- need not be on the search_path (a DBA may have put pg_trgm
		-- elsewhere). The name comes from the catalog, quoted by %I.
		EXECUTE format('CREATE INDEX IF NOT EXISTS credentials_name_trgm '
		    'ON credentials USING gin (lower(name) %I.gin_trgm_ops)',
		    trgm_schema);
		EXECUTE format('CREATE INDEX IF NOT EXISTS credentials_service_trgm '
		    'ON credentials USING gin (lower(service) %I.gin_trgm_ops)',
		    trgm_schema);
		EXECUTE format('CREATE INDEX IF NOT EXISTS credentials_notes_trgm '
		    'ON credentials USING gin (lower(notes) %I.gin_trgm_ops)',
		    trgm_schema);
		COMMENT ON INDEX credentials_name_trgm IS
		    'credential search (cred_list): lower(name) LIKE ''%q%''';
		COMMENT ON INDEX credentials_service_trgm IS
		    'credential search (cred_list): lower(service) LIKE ''%q%''';
		COMMENT ON INDEX credentials_notes_trgm IS
		    'credential search (cred_list): lower(notes) LIKE ''%q%''';
	EXCEPTION
		-- may not create the extension (it needs CREATE on the
		-- database; a superuser before PostgreSQL 13), or may not use
		-- the schema a DBA installed it in
		WHEN insufficient_privilege THEN
			RAISE NOTICE 'pg_trgm not usable (%): credential search stays unindexed', SQLERRM;
		-- listed, but its script or library is missing
		WHEN undefined_file THEN
			RAISE NOTICE 'pg_trgm not fully installed (%): credential search stays unindexed', SQLERRM;
	END;
END
$$;
