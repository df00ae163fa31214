/* SPDX-License-Identifier: MIT */
/*
 * Logging: to stderr (or a file reopened on SIGHUP), one line per message:
 *   2026-11-26T17:00:00.123Z sand[pid] LEVEL subsys: message
 * Messages are lower case with no full stop. Debug messages are switched on
 * per subsystem at run time (--debug nbd,raid or the log.debug RPC).
 * On the data path use LOG_RATELIMIT so a failing disk cannot flood the log.
 */
#ifndef SAND_LOG_H
#define SAND_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Subsystems with their own debug flag. Keep log.c's names in step. */
enum log_subsys {
	LS_CORE = 0, LS_EV, LS_BLK, LS_RPC, LS_NBD, LS_ISCSI, LS_SCSI,
	LS_RAID, LS_THIN, LS_FAULT, LS_BENCH, LS_MAX
};

void log_msg(enum log_level lvl, enum log_subsys ss, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool log_debug_on(enum log_subsys ss);
/* "nbd,raid", "all" or "" (none). Returns 0 or -EINVAL naming nothing. */
int log_set_debug(const char *list);
/* The current debug list as "nbd,raid" into buf. */
void log_get_debug(char *buf, unsigned len);
/* Log to this file instead of stderr (NULL: stderr); log_reopen() on SIGHUP. */
int log_set_file(const char *path);
int log_reopen(void);
void log_set_level(enum log_level lvl);	/* messages above it are dropped */
const char *log_subsys_name(enum log_subsys ss);

#define LOG_ERR(ss, ...)	log_msg(LOG_ERROR, ss, __VA_ARGS__)
#define LOG_WARN(ss, ...)	log_msg(LOG_WARN, ss, __VA_ARGS__)
#define LOG_INFO(ss, ...)	log_msg(LOG_INFO, ss, __VA_ARGS__)
#define LOG_DBG(ss, ...) \
	do { if (log_debug_on(ss)) log_msg(LOG_DEBUG, ss, __VA_ARGS__); } while (0)

/* At most `burst` messages per second from this call site. */
bool log_ratelimit_ok(uint64_t *window_start, unsigned *count, unsigned burst);
#define LOG_RATELIMIT(lvl, ss, ...) do { \
		static uint64_t __rl_ws; static unsigned __rl_n; \
		if (log_ratelimit_ok(&__rl_ws, &__rl_n, 10)) \
			log_msg(lvl, ss, __VA_ARGS__); \
	} while (0)

#endif
