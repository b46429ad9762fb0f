-- 0004-change-notify-sql: the caches of every hsmvault instance hear of
-- changes made in SQL too, not only of those made through hsmvault.
--
-- API keys: hsmvault's own revoke sends pg_notify('hv_apikey_revoked', id)
-- in its transaction (src/vault_apikey.c); an operator's UPDATE (say
-- revoked_at = now() in an emergency), DELETE or TRUNCATE of api_keys sent
-- nothing, and a verified key stayed cached for up to a minute. Now a
-- trigger notifies the key's id for every committed change of an api_keys
-- row other than last_used_at alone (written in batches every second),
-- and an empty payload for a TRUNCATE, on which every instance clears its
-- whole key cache (src/vault.c, drain_notifies).
--
-- Credentials: sql/0003's row trigger does not fire for TRUNCATE; a
-- statement trigger now notifies an empty payload on hv_credential_changed,
-- on which every instance clears its whole metadata cache.
--
-- As in 0003: NOTIFY is delivered at commit, never for a rolled-back
-- change, and a duplicate (hsmvault's revoke notifies twice now) is
-- harmless: an eviction of what is already gone.

CREATE FUNCTION hv_apikey_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM pg_notify('hv_apikey_revoked', '');
	ELSIF TG_OP = 'DELETE' THEN
		PERFORM pg_notify('hv_apikey_revoked', OLD.id::text);
	ELSIF (to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM
	      (to_jsonb(NEW) - 'last_used_at') THEN
		PERFORM pg_notify('hv_apikey_revoked', OLD.id::text);
		IF NEW.id <> OLD.id THEN
			PERFORM pg_notify('hv_apikey_revoked', NEW.id::text);
		END IF;
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed
	AFTER UPDATE OR DELETE ON api_keys
	FOR EACH ROW EXECUTE FUNCTION hv_apikey_changed();

CREATE TRIGGER api_keys_truncated
	AFTER TRUNCATE ON api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION hv_apikey_changed();

CREATE FUNCTION hv_credentials_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('hv_credential_changed', '');
	RETURN NULL;
END
$$;

CREATE TRIGGER credentials_truncated
	AFTER TRUNCATE ON credentials
	FOR EACH STATEMENT EXECUTE FUNCTION hv_credentials_truncated();
