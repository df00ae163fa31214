/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include "sand/common.h"

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	switch (toupper((unsigned char)*end)) {
	case '\0': break;
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	case 'P': shift = 50; end++; break;
	case 'B': break;
	default: return -EINVAL;
	}
	if (shift && (end[0] == 'i' || end[0] == 'I') && toupper((unsigned char)end[1]) == 'B')
		end += 2;
	else if (toupper((unsigned char)end[0]) == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "BKMGTPE";
	unsigned u = 0;
	double v = (double)bytes;

	while (v >= 1024 && u < sizeof(units) - 2) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
	else
		snprintf(buf, len, "%.1f%c", v, units[u]);
	return buf;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned bind_wait_ms;

void bind_retry_window(unsigned ms)
{
	__atomic_store_n(&bind_wait_ms, ms, __ATOMIC_RELAXED);
}

int bind_listener(int fd, const struct sockaddr *sa, unsigned len)
{
	uint64_t deadline = now_ns() +
		(uint64_t)__atomic_load_n(&bind_wait_ms, __ATOMIC_RELAXED) * 1000000ull;

	while (bind(fd, sa, len)) {
		if (errno != EADDRINUSE || now_ns() >= deadline)
			return -errno;
		usleep(50 * 1000);
	}
	return 0;
}

/*
 * copy_guarded: the thread's jump buffer while it copies; the SIGBUS of a
 * fault inside the copy is synchronous and goes to the faulting thread, so
 * a thread-local pointer is all the handler needs. SA_NODEFER: the
 * siglongjmp leaves the handler without restoring the signal mask, and
 * SIGBUS must not stay blocked after it (a blocked synchronous SIGBUS kills
 * the process at once), and raise() below must deliver at once.
 */
static __thread sigjmp_buf *volatile guard_jb;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void guard_sigbus(int sig, siginfo_t *si, void *uctx)
{
	sigjmp_buf *jb = guard_jb;
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	(void)si;
	(void)uctx;
	if (jb)
		siglongjmp(*jb, 1);
	/* not a guarded copy (or sent by kill): the default action */
	sigaction(sig, &dfl, NULL);
	raise(sig);
}

static void guard_install(void)
{
	struct sigaction sa = { .sa_sigaction = guard_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

int copy_guarded(void *dst, const void *src, size_t len)
{
	sigjmp_buf jb;

	pthread_once(&guard_once, guard_install);
	if (sigsetjmp(jb, 0)) {
		guard_jb = NULL;
		return -EFAULT;
	}
	guard_jb = &jb;
	__asm__ __volatile__("" ::: "memory");
	memcpy(dst, src, len);
	__asm__ __volatile__("" ::: "memory");
	guard_jb = NULL;
	return 0;
}
