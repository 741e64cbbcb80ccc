-- The original's two tables (its Prisma schema: ChatGroup and Chats), in a schema of their
-- own so they sit next to QuickChat's in the benchmark database.
CREATE SCHEMA IF NOT EXISTS peer;
CREATE TABLE IF NOT EXISTS peer.chat_group (
  id uuid PRIMARY KEY,
  title text NOT NULL,
  passcode text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS peer.chats (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  group_id uuid NOT NULL REFERENCES peer.chat_group (id) ON DELETE CASCADE,
  message text,
  name text NOT NULL,
  file text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS chats_created_at_idx ON peer.chats (created_at);
