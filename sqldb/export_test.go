package sqldb

// Queued is how many transactions wait for the write lock.
func Queued(db *DB) int { return db.group.queued() }
