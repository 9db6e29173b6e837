-- fuzz/sql_setup.sql: the database fuzz_sql meets (fuzz/run.sh loads it
-- into its throwaway server with psql -v base=... -f).  The extension, the
-- examples' org (Acme Sales) and user (Ada), the two secrets the examples'
-- endpoints use, and every example sequence with its endpoints, functions
-- and context sources, so step definitions can name things that exist.
-- Endpoints point at a closed port: fuzz_sql never sends a request.
CREATE EXTENSION orchestrator;
INSERT INTO orchestrator.orgs (id, name) VALUES ('00000000-0000-0000-0000-00000000000a', 'Acme Sales');
INSERT INTO orchestrator.users (id, org_id, display_name)
VALUES ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'Ada');
SELECT orch_set_secret('service_key', 'fuzz-service-key');
SELECT orch_set_secret('slack_bot_token', 'xoxb-fuzz-token');
\ir ../examples/sequences/all.sql
