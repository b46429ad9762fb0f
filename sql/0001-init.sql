-- 0001-init: the hsmvault schema. Applied by `hsmvault migrate` inside one
-- transaction and recorded in hv_migrations. No plaintext secret, DEK or
-- API key is ever stored: only ciphertext, wrapped DEKs and HMACs.

CREATE TABLE workspaces (
	id          uuid PRIMARY KEY,
	name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
	created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE workspaces IS 'tenants; an API key belongs to exactly one';

CREATE TABLE credentials (
	id            uuid PRIMARY KEY,
	workspace_id  uuid NOT NULL REFERENCES workspaces(id),
	service       text NOT NULL CHECK (length(service) BETWEEN 1 AND 64),
	name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	auth_type     text NOT NULL CHECK (auth_type IN
	                ('api_key', 'bearer', 'basic', 'oauth2', 'custom_headers')),
	scope         text NOT NULL CHECK (scope IN
	                ('personal', 'workspace', 'organization')),
	owner_user    text,
	notes         text NOT NULL DEFAULT '' CHECK (length(notes) <= 10000),
	injection     jsonb NOT NULL,
	status        text NOT NULL DEFAULT 'active' CHECK (status IN
	                ('active', 'expired', 'failing', 'revoked')),
	version       integer NOT NULL DEFAULT 1 CHECK (version >= 1),
	base_url      text,
	expires_at    timestamptz,
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now(),
	last_used_at  timestamptz,
	created_by    text NOT NULL,
	CHECK (scope <> 'personal' OR owner_user IS NOT NULL)
);
COMMENT ON TABLE credentials IS 'credential metadata; secrets live in credential_versions, encrypted';
COMMENT ON COLUMN credentials.owner_user IS 'user label of the creating key; personal credentials are visible to that user only';
CREATE INDEX credentials_ws_order ON credentials (workspace_id, created_at, id);
CREATE INDEX credentials_org ON credentials (scope) WHERE scope = 'organization';

CREATE TABLE credential_versions (
	credential_id  uuid NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
	version        integer NOT NULL CHECK (version >= 1),
	kek_version    integer NOT NULL CHECK (kek_version >= 1),
	wrapped_dek    bytea NOT NULL CHECK (length(wrapped_dek) BETWEEN 1 AND 256),
	nonce          bytea NOT NULL CHECK (length(nonce) = 12),
	ciphertext     bytea NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (credential_id, version)
);
COMMENT ON TABLE credential_versions IS 'one row per secret version: AES-256-GCM ciphertext and its DEK wrapped by KEK kek_version inside the key store';
CREATE INDEX credential_versions_kek ON credential_versions (kek_version);

CREATE TABLE api_keys (
	id              uuid PRIMARY KEY,
	workspace_id    uuid NOT NULL REFERENCES workspaces(id),
	name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	user_label      text CHECK (user_label IS NULL OR length(user_label) BETWEEN 1 AND 200),
	scopes          text[] NOT NULL,
	credential_ids  uuid[],
	key_hmac        bytea NOT NULL UNIQUE CHECK (length(key_hmac) = 32),
	created_at      timestamptz NOT NULL DEFAULT now(),
	expires_at      timestamptz,
	revoked_at      timestamptz,
	last_used_at    timestamptz,
	created_by      text NOT NULL
);
COMMENT ON TABLE api_keys IS 'vault API keys: only the key store HMAC of the key is kept';
COMMENT ON COLUMN api_keys.credential_ids IS 'allow-list; NULL means all credentials';
CREATE INDEX api_keys_ws ON api_keys (workspace_id, created_at, id);

-- The audit log is a set of hash chains: each row carries an HMAC (key
-- store HMAC key) over its content and the previous row's HMAC of the same
-- chain. Several chains let concurrent writers append without one global
-- lock; each chain's head row is locked by its appender.
CREATE TABLE audit_chains (
	chain     integer PRIMARY KEY CHECK (chain >= 0),
	seq       bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
	head_mac  bytea NOT NULL CHECK (length(head_mac) = 32)
);
COMMENT ON TABLE audit_chains IS 'head of each audit chain: last seq and mac';

CREATE TABLE audit_log (
	id             bigserial PRIMARY KEY,
	chain          integer NOT NULL CHECK (chain >= 0),
	seq            bigint NOT NULL CHECK (seq >= 1),
	at             timestamptz NOT NULL,
	workspace_id   uuid,
	actor_id       uuid,
	actor_name     text CHECK (length(actor_name) <= 200),
	action         text NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
	credential_id  uuid,
	outcome        text NOT NULL CHECK (length(outcome) BETWEEN 1 AND 32),
	request_id     text CHECK (length(request_id) <= 128),
	remote_addr    text CHECK (length(remote_addr) <= 128),
	detail         text CHECK (length(detail) <= 1000),
	prev_mac       bytea NOT NULL CHECK (length(prev_mac) = 32),
	mac            bytea NOT NULL CHECK (length(mac) = 32),
	UNIQUE (chain, seq)
);
COMMENT ON TABLE audit_log IS 'tamper-evident audit rows; never holds a secret';
CREATE INDEX audit_log_ws_at ON audit_log (workspace_id, id);
CREATE INDEX audit_log_cred ON audit_log (credential_id, id);
COMMENT ON COLUMN audit_log.mac IS 'HMAC (key store) over the length-prefixed canonical row and prev_mac; see docs/audit.md';
