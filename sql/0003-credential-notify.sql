-- 0003-credential-notify: every committed change of a credentials row
-- NOTIFYs its id on channel hv_credential_changed, so that each hsmvault
-- instance drops its cached copy of that row's metadata (src/credcache.h,
-- docs/performance.md). A use that only moves last_used_at does not notify
-- (uses are frequent; cached copies show last_used_at at most
-- cred_cache_ttl_ms late on other instances). A trigger rather than a
-- NOTIFY in each code path: no writer, including a manual UPDATE by an
-- operator, can forget it. NOTIFY is delivered at commit, never for a
-- rolled-back change.

CREATE FUNCTION hv_credential_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		PERFORM pg_notify('hv_credential_changed', OLD.id::text);
	ELSIF (to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM
	      (to_jsonb(NEW) - 'last_used_at') THEN
		PERFORM pg_notify('hv_credential_changed', OLD.id::text);
		IF NEW.id <> OLD.id THEN
			PERFORM pg_notify('hv_credential_changed', NEW.id::text);
		END IF;
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER credentials_changed
	AFTER UPDATE OR DELETE ON credentials
	FOR EACH ROW EXECUTE FUNCTION hv_credential_changed();
