-- The schema the first release (commit 9a6c00a, backend/services/db.py) created with create_all on SQLite:
-- SELECT sql FROM sqlite_master, in creation order. Used to build a round-1 database in tests.

CREATE TABLE sessions (
	id VARCHAR(64) NOT NULL, 
	owner VARCHAR(128), 
	title VARCHAR(200), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_sessions_owner ON sessions (owner);

CREATE TABLE turns (
	id INTEGER NOT NULL, 
	session_id VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	text TEXT NOT NULL, 
	emotion JSON, 
	timings JSON, 
	duration_s FLOAT, 
	interrupted BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_turns_role CHECK (role IN ('user', 'assistant')), 
	FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE INDEX ix_turns_session_id_id ON turns (session_id, id);
