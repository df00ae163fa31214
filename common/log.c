/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "sand/common.h"
#include "sand/log.h"

static const char *const subsys_names[LS_MAX] = {
	[LS_CORE] = "core", [LS_EV] = "ev", [LS_BLK] = "blk", [LS_RPC] = "rpc",
	[LS_NBD] = "nbd", [LS_ISCSI] = "iscsi", [LS_SCSI] = "scsi",
	[LS_RAID] = "raid", [LS_THIN] = "thin", [LS_FAULT] = "fault",
	[LS_BENCH] = "bench",
};
static const char *const level_names[] = { "error", "warn", "info", "debug" };

static unsigned debug_mask;		/* read racily on the data path: fine */
static enum log_level max_level = LOG_INFO;
static int log_fd = 2;
static char *log_path;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

const char *log_subsys_name(enum log_subsys ss)
{
	return ss < LS_MAX ? subsys_names[ss] : "?";
}

bool log_debug_on(enum log_subsys ss)
{
	return __atomic_load_n(&debug_mask, __ATOMIC_RELAXED) & (1u << ss);
}

void log_set_level(enum log_level lvl)
{
	__atomic_store_n(&max_level, lvl, __ATOMIC_RELAXED);
}

int log_set_debug(const char *list)
{
	unsigned mask = 0;
	char *copy, *tok, *save = NULL;

	if (!list)
		return -EINVAL;
	copy = strdup(list);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		unsigned i;

		if (!strcmp(tok, "all")) {
			mask = (1u << LS_MAX) - 1;
			continue;
		}
		for (i = 0; i < LS_MAX; i++)
			if (!strcmp(tok, subsys_names[i]))
				break;
		if (i == LS_MAX) {
			free(copy);
			return -EINVAL;
		}
		mask |= 1u << i;
	}
	free(copy);
	__atomic_store_n(&debug_mask, mask, __ATOMIC_RELAXED);
	return 0;
}

void log_get_debug(char *buf, unsigned len)
{
	unsigned mask = __atomic_load_n(&debug_mask, __ATOMIC_RELAXED);
	size_t used = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (unsigned i = 0; i < LS_MAX; i++) {
		if (!(mask & (1u << i)))
			continue;
		int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", subsys_names[i]);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
}

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_set_file(const char *path)
{
	int fd = 2;
	char *p = NULL;

	if (path) {
		fd = open_log(path);
		if (fd < 0)
			return -errno;
		p = strdup(path);
	}
	pthread_mutex_lock(&log_lock);
	if (log_fd != 2)
		close(log_fd);
	free(log_path);
	log_fd = fd;
	log_path = p;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

int log_reopen(void)
{
	int fd, rc = 0;

	pthread_mutex_lock(&log_lock);
	if (log_path) {
		fd = open_log(log_path);
		if (fd < 0) {
			rc = -errno;
		} else {
			close(log_fd);
			log_fd = fd;
		}
	}
	pthread_mutex_unlock(&log_lock);
	return rc;
}

void log_msg(enum log_level lvl, enum log_subsys ss, const char *fmt, ...)
{
	char line[1024];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n, m;

	if (lvl > __atomic_load_n(&max_level, __ATOMIC_RELAXED) &&
	    !(lvl == LOG_DEBUG && log_debug_on(ss)))
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ sand[%d] %s %s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, (long)tv.tv_usec / 1000, (int)getpid(),
		     level_names[lvl], log_subsys_name(ss));
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	pthread_mutex_lock(&log_lock);
	if (write(log_fd, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
	pthread_mutex_unlock(&log_lock);
}

/* A call site's counters are shared by every thread that passes it. */
bool log_ratelimit_ok(uint64_t *window_start, unsigned *count, unsigned burst)
{
	uint64_t now = now_ns();
	uint64_t ws = __atomic_load_n(window_start, __ATOMIC_RELAXED);

	if (now - ws > 1000000000ull &&
	    __atomic_compare_exchange_n(window_start, &ws, now, false,
					__ATOMIC_RELAXED, __ATOMIC_RELAXED))
		__atomic_store_n(count, 0, __ATOMIC_RELAXED);
	return __atomic_fetch_add(count, 1, __ATOMIC_RELAXED) < burst;
}
