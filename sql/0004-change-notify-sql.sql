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
-- One function serves every one of these triggers, 0003's included: its
-- function is renamed (the trigger follows it, enabled or not, as triggers
-- name their function by oid) and replaced by the general one, which
-- takes the channel from the table it fires on.
--
-- As in 0003: NOTIFY is delivered at commit, never for a rolled-back
-- change. hsmvault's own revoke notifies from its statement and from the
-- trigger in one transaction: PostgreSQL folds identical notifications of
-- one transaction into one, and a second would only evict nothing.

ALTER FUNCTION hv_credential_changed() RENAME TO hv_row_changed;

CREATE OR REPLACE FUNCTION hv_row_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	channel text;
BEGIN
	CASE TG_TABLE_NAME
	WHEN 'credentials' THEN channel := 'hv_credential_changed';
	WHEN 'api_keys' THEN channel := 'hv_apikey_revoked';
	END CASE; -- any other table: CASE_NOT_FOUND, the change fails
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM pg_notify(channel, '');
	ELSIF TG_OP = 'DELETE' THEN
		PERFORM pg_notify(channel, OLD.id::text);
	ELSIF (to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM
	      (to_jsonb(NEW) - 'last_used_at') THEN
		PERFORM pg_notify(channel, OLD.id::text);
		IF NEW.id <> OLD.id THEN
			PERFORM pg_notify(channel, NEW.id::text);
		END IF;
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER credentials_truncated
	AFTER TRUNCATE ON credentials
	FOR EACH STATEMENT EXECUTE FUNCTION hv_row_changed();

CREATE TRIGGER api_keys_changed
	AFTER UPDATE OR DELETE ON api_keys
	FOR EACH ROW EXECUTE FUNCTION hv_row_changed();

CREATE TRIGGER api_keys_truncated
	AFTER TRUNCATE ON api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION hv_row_changed();
