-- The state schema of llamafarm 0.1.0 as Base.metadata.create_all made it on SQLite, before
-- migrations existed (captured from its sqlite_master / DDL). Frozen: never edit.
CREATE TABLE dataset_files (
	id INTEGER NOT NULL,
	namespace VARCHAR(64) NOT NULL,
	project VARCHAR(64) NOT NULL,
	dataset VARCHAR(64) NOT NULL,
	file_hash VARCHAR(64) NOT NULL,
	filename VARCHAR(512) NOT NULL,
	size INTEGER NOT NULL,
	uploaded_at DOUBLE NOT NULL,
	fingerprint VARCHAR(64),
	chunk_count INTEGER NOT NULL,
	processed_at DOUBLE,
	PRIMARY KEY (id),
	UNIQUE (namespace, project, dataset, file_hash)
);
CREATE TABLE tasks (
	task_id VARCHAR(64) NOT NULL,
	namespace VARCHAR(64) NOT NULL,
	project VARCHAR(64) NOT NULL,
	dataset VARCHAR(64) NOT NULL,
	created_at DOUBLE NOT NULL,
	cancelled_at DOUBLE,
	cancel_report JSON,
	PRIMARY KEY (task_id)
);
CREATE TABLE worker_heartbeats (
	worker VARCHAR(255) NOT NULL,
	pid INTEGER NOT NULL,
	last_seen DOUBLE NOT NULL,
	PRIMARY KEY (worker)
);
CREATE TABLE chat_sessions (
	id INTEGER NOT NULL,
	namespace VARCHAR(64) NOT NULL,
	project VARCHAR(64) NOT NULL,
	session_id VARCHAR(128) NOT NULL,
	created_at DOUBLE NOT NULL,
	last_used_at DOUBLE NOT NULL,
	ttl DOUBLE NOT NULL,
	next_seq INTEGER NOT NULL,
	lock_owner VARCHAR(64),
	lock_expires DOUBLE,
	PRIMARY KEY (id),
	UNIQUE (namespace, project, session_id)
);
CREATE INDEX ix_chat_sessions_last_used ON chat_sessions (last_used_at);
CREATE TABLE event_logs (
	id INTEGER NOT NULL,
	event_id VARCHAR(96) NOT NULL,
	namespace VARCHAR(64) NOT NULL,
	project VARCHAR(64) NOT NULL,
	type VARCHAR(32) NOT NULL,
	timestamp DOUBLE NOT NULL,
	summary JSON NOT NULL,
	data JSON NOT NULL,
	sub_events JSON NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (event_id)
);
CREATE INDEX ix_event_logs_time ON event_logs (timestamp);
CREATE INDEX ix_event_logs_project_time ON event_logs (namespace, project, timestamp);
CREATE TABLE task_files (
	id INTEGER NOT NULL,
	task_id VARCHAR(64) NOT NULL,
	file_hash VARCHAR(64) NOT NULL,
	filename VARCHAR(512) NOT NULL,
	state VARCHAR(16) NOT NULL,
	chunks INTEGER NOT NULL,
	error TEXT,
	error_type VARCHAR(64),
	traceback TEXT,
	worker VARCHAR(255),
	attempts INTEGER NOT NULL,
	started_at DOUBLE,
	finished_at DOUBLE,
	PRIMARY KEY (id),
	FOREIGN KEY(task_id) REFERENCES tasks (task_id) ON DELETE CASCADE
);
CREATE INDEX ix_task_files_task ON task_files (task_id);
CREATE TABLE chat_messages (
	id INTEGER NOT NULL,
	session_pk INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	role VARCHAR(16) NOT NULL,
	content TEXT NOT NULL,
	created_at DOUBLE NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (session_pk, seq),
	FOREIGN KEY(session_pk) REFERENCES chat_sessions (id) ON DELETE CASCADE
);
