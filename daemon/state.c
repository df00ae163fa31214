/* SPDX-License-Identifier: MIT */
/*
 * The state file, written atomically (see include/sand/state.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sand/common.h"
#include "sand/log.h"
#include "sand/state.h"

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *state_root;
static char *state_dir;
static char *state_file;

const char *state_path(void)
{
	return state_file ? state_file : STATE_FILE;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* write tmp, fsync, rename, fsync the directory */
static int save_locked(json_t *root)
{
	char tmp[PATH_MAX];
	char *text;
	int fd, dfd, rc;

	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text)
		return -ENOMEM;
	snprintf(tmp, sizeof(tmp), "%s.tmp", state_file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto free_text;
	}
	rc = write_all(fd, text, strlen(text));
	if (!rc)
		rc = write_all(fd, "\n", 1);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		goto unlink_tmp;
	if (rename(tmp, state_file) < 0) {
		rc = -errno;
		goto unlink_tmp;
	}
	dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		rc = -errno;
	if (dfd >= 0)
		close(dfd);
	free(text);
	if (rc)
		LOG_ERR(LS_CORE, "fsync of %s: %s", state_dir, strerror(-rc));
	return rc;
unlink_tmp:
	unlink(tmp);
free_text:
	free(text);
	LOG_ERR(LS_CORE, "writing %s: %s", state_file, strerror(-rc));
	return rc;
}

int state_open(const char *dir, char *msg, size_t msglen)
{
	char buf[PATH_MAX];
	json_error_t jerr;
	json_t *root, *ver;
	struct stat st;
	int rc;

	if (!msg || !msglen) {
		msg = buf;
		msglen = sizeof(buf);
	}
	msg[0] = '\0';
	state_close();
	if (asprintf(&state_file, "%s/%s", dir, STATE_FILE) < 0) {
		state_file = NULL;
		return -ENOMEM;
	}
	state_dir = strdup(dir);
	if (!state_dir) {
		rc = -ENOMEM;
		goto fail;
	}
	if (stat(state_file, &st) < 0) {
		if (errno != ENOENT) {
			rc = -errno;
			snprintf(msg, msglen, "cannot read state file %s: %s", state_file,
				 strerror(errno));
			goto fail;
		}
		root = json_pack("{s:i}", "version", STATE_VERSION);
		if (!root) {
			rc = -ENOMEM;
			goto fail;
		}
		goto done;
	}
	root = json_load_file(state_file, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(msg, msglen, "state file %s is corrupt (line %d column %d: %s); "
			 "not starting: repair it or move it away", state_file,
			 jerr.line, jerr.column, jerr.text);
		rc = -EINVAL;
		goto fail;
	}
	ver = json_object_get(root, "version");
	if (!json_is_object(root) || !json_is_integer(ver) || json_integer_value(ver) < 1) {
		snprintf(msg, msglen, "state file %s is corrupt (not an object with a "
			 "\"version\"); not starting: repair it or move it away", state_file);
		json_decref(root);
		rc = -EINVAL;
		goto fail;
	}
	if (json_integer_value(ver) > STATE_VERSION) {
		snprintf(msg, msglen, "state file %s has version %lld, newer than this sand "
			 "understands (%d); not starting", state_file,
			 (long long)json_integer_value(ver), STATE_VERSION);
		json_decref(root);
		rc = -EINVAL;
		goto fail;
	}
done:
	pthread_mutex_lock(&state_lock);
	state_root = root;
	pthread_mutex_unlock(&state_lock);
	return 0;
fail:
	if (msg[0])
		LOG_ERR(LS_CORE, "%s", msg);
	free(state_dir);
	free(state_file);
	state_dir = state_file = NULL;
	return rc;
}

void state_close(void)
{
	pthread_mutex_lock(&state_lock);
	json_decref(state_root);
	state_root = NULL;
	free(state_dir);
	free(state_file);
	state_dir = state_file = NULL;
	pthread_mutex_unlock(&state_lock);
}

json_t *state_get(const char *section)
{
	json_t *v = NULL;

	pthread_mutex_lock(&state_lock);
	if (state_root)
		v = json_deep_copy(json_object_get(state_root, section));
	pthread_mutex_unlock(&state_lock);
	return v;
}

int state_set(const char *section, json_t *value)
{
	json_t *next;
	int rc = 0;

	if (!strcmp(section, "version"))
		return -EINVAL;
	pthread_mutex_lock(&state_lock);
	if (!state_root) {
		rc = -EBADF;
		goto unlock;
	}
	next = json_copy(state_root);	/* shallow: sections are shared, not changed */
	if (!next) {
		rc = -ENOMEM;
		goto unlock;
	}
	if (value)
		rc = json_object_set_new(next, section, json_deep_copy(value)) ? -ENOMEM : 0;
	else
		json_object_del(next, section);	/* absent already: fine */
	if (!rc)
		rc = save_locked(next);
	if (rc) {
		json_decref(next);
		goto unlock;
	}
	json_decref(state_root);
	state_root = next;
unlock:
	pthread_mutex_unlock(&state_lock);
	return rc;
}

int state_save(void)
{
	int rc;

	pthread_mutex_lock(&state_lock);
	rc = state_root ? save_locked(state_root) : -EBADF;
	pthread_mutex_unlock(&state_lock);
	return rc;
}
