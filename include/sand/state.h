/* SPDX-License-Identifier: MIT */
/*
 * The state file: DIR/sand.json, one JSON object with a section per module
 * ("disks", "nbd", "iscsi" ...) and a format version:
 *
 *	{ "version": 1, "disks": [ ... ], "nbd": { ... } }
 *
 * It holds what the operator configured, so that after a restart everything
 * comes back as it was. Every change is written at once and atomically:
 * write DIR/sand.json.tmp, fsync it, rename it over sand.json, fsync DIR.
 * A crash leaves either the old file or the new one, never a mix.
 *
 * A state file that does not parse, is not an object or has a newer version
 * is refused at start (state_open fails and says why); it is never silently
 * replaced. Thread-safe; the control thread is the usual caller.
 */
#ifndef SAND_STATE_H
#define SAND_STATE_H

#include <jansson.h>

#define STATE_FILE		"sand.json"
#define STATE_VERSION		1

/* Load DIR/sand.json (an absent file is an empty state). -EINVAL with
 * a logged reason for a corrupt file; msg (if not NULL) gets the reason. */
int state_open(const char *dir, char *msg, size_t msglen);
void state_close(void);
/* A new reference to a deep copy of the section, or NULL if it is absent. */
json_t *state_get(const char *section);
/* Replace a section (value NULL: delete it) and save. On error the
 * in-memory state and the file are as they were. Does not steal value. */
int state_set(const char *section, json_t *value);
/* Write the current state again. */
int state_save(void);
/* The file's path, for messages. */
const char *state_path(void);

#endif
