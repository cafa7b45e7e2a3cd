#pragma once
/*
 * What of a persistent sandbox outlives the daemon: under --state-dir, sandboxes/ID/ holds its record
 * (sandbox.json: its settings, metadata and creation time; the file's mtime is its last use) and fs/, the
 * mount point of a tmpfs of its disk size holding its work/, tmp/ and shm/. The record is the commit
 * point: a directory with one is a whole sandbox; without one (a crash while it was being made or
 * removed) it is cleanly removed at the next start. docs/ARCHITECTURE.md, "State on disk".
 *
 * The tmpfs mounts live in the daemon's mount namespace, so they survive a restart of the daemon
 * (SIGTERM, a crash, kill -9) but not of the host. Only root may mount: an unprivileged daemon keeps no
 * state (lms_store_open gives NULL), and its sandboxes end with it. Thread-safe: calls touch one
 * sandbox's directory each.
 */
#include <jansson.h>
#include <stdint.h>

#include "core/error.h"

struct lms_store;

/* Opens (creating) STATE_DIR/sandboxes as a private mount. *out is NULL, with 0, when the daemon is not
 * root (logged). */
int lms_store_open(const char *state_dir, struct lms_store **out, struct lms_error **err);
void lms_store_free(struct lms_store *st);

/* Makes id's directory and its sized tmpfs with work/, tmp/ and shm/ owned by the sandbox's root; *storage
 * is the host path a sandbox spec takes (caller frees). Not yet committed: lms_store_commit. */
int lms_store_make(struct lms_store *st, const char *id, uint64_t disk_mb, char **storage, struct lms_error **err);

/* The host path of id's storage (what lms_store_make gave; caller frees). */
char *lms_store_path(const struct lms_store *st, const char *id);

/* The host path of id's audit log (history.h; caller frees): in its directory, so it goes with it. */
char *lms_store_history_path(const struct lms_store *st, const char *id);

/* Writes the record (atomically: a temporary file, fsync, rename): from now on the sandbox is whole. */
int lms_store_commit(struct lms_store *st, const char *id, const json_t *record, struct lms_error **err);

/* Records a use now (the record's mtime). Failures are logged: a use is not worth failing a command. */
void lms_store_touch(struct lms_store *st, const char *id);

/* Removes the record first (from then on the sandbox is gone, even after a crash), then its tmpfs and
 * its directory. */
int lms_store_remove(struct lms_store *st, const char *id, struct lms_error **err);

/* Copies from's files into to's (made, not committed): a fork. */
int lms_store_copy(struct lms_store *st, const char *from, const char *to, struct lms_error **err);

/* At start: fn for each whole sandbox (its record, parsed, and the time of its last use, seconds since
 * the epoch); what is not whole (no record, an unreadable record, no tmpfs mounted: a reboot) is removed and
 * logged. fn returns < 0 to have the sandbox removed too. Returns how many were kept. */
typedef int (*lms_store_found_fn)(void *userdata, const char *id, json_t *record, double used_s);
int lms_store_load(struct lms_store *st, lms_store_found_fn fn, void *userdata);
