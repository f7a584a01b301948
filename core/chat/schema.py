"""The chat database's schema, as the steps that build it: a step is appended, never edited or reordered
(``PRAGMA user_version`` records how many ran on a database, so a step's position is its version)."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: chats and messages
    """
    CREATE TABLE chats (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: front ends key widgets by id
        title TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        system_prompt TEXT NOT NULL DEFAULT '',
        params TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: front ends key widgets by id
        chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        stats TEXT,
        complete INTEGER NOT NULL DEFAULT 1,
        created REAL NOT NULL
    );
    CREATE INDEX messages_by_chat ON messages(chat_id, id);
    CREATE INDEX chats_by_updated ON chats(updated DESC);
    """,
    # 2: the unsent text of each chat's prompt
    "ALTER TABLE chats ADD COLUMN draft TEXT NOT NULL DEFAULT ''",
    # 3: the model that wrote each reply ('' for user messages and for replies kept before this version)
    "ALTER TABLE messages ADD COLUMN model TEXT NOT NULL DEFAULT ''",
    # the chat's LoRA adapter GGUF ('' for none) and load settings (a JSON object of [load] keys and lora_scale,
    # the values the chat was loaded with), and the adapter that wrote each reply
    """
    ALTER TABLE chats ADD COLUMN adapter TEXT NOT NULL DEFAULT '';
    ALTER TABLE chats ADD COLUMN load TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE messages ADD COLUMN adapter TEXT NOT NULL DEFAULT '';
    """,
    # full-text search over messages (core/chat/search.py): an FTS5 index of messages.content that the triggers keep
    # in step, filled from the rows already there. An SQLite without FTS5 skips this step (ChatStore._migrate).
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
    """,
    # branches (core/chat/branches.py): each message's parent (NULL for a chat's first) and each chat's current
    # leaf; the messages of a chat kept before this version follow each other in one branch
    """
    ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE;
    ALTER TABLE chats ADD COLUMN leaf_id INTEGER;
    UPDATE messages SET parent_id = (SELECT MAX(p.id) FROM messages p
                                     WHERE p.chat_id = messages.chat_id AND p.id < messages.id);
    UPDATE chats SET leaf_id = (SELECT MAX(id) FROM messages WHERE messages.chat_id = chats.id);
    CREATE INDEX messages_by_parent ON messages(parent_id, id);
    """,
]
