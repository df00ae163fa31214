/* SPDX-License-Identifier: MIT */
/*
 * sand: the daemon. Runs in the foreground (systemd style), logs to stderr
 * or --log-file, serves JSON-RPC 2.0 on a unix socket, and stops cleanly on
 * SIGTERM/SIGINT. See doc/sand.8 and include/sand/daemon.h for the order of
 * start-up and shutdown.
 */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sand/common.h"
#include "sand/daemon.h"
#include "sand/iscsi.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/reactor.h"
#include "sand/rpc.h"
#include "sand/state.h"

/* Every module's RPC init: add yours here (it calls rpc_register()). */
static void (*const rpc_modules[])(void) = {
	status_rpc_init,
	log_rpc_init,
	disk_rpc_init,
	pool_rpc_init,		/* before the exports: its shutdown hook runs after theirs */
	iscsi_rpc_init,
	nbd_rpc_init,
};

/* Restore what the state file says, in dependency order (disks before the
 * pools built on them, pools before exports). */
static void (*const restore_steps[])(void) = {
	disk_restore,
	pool_restore,
	iscsi_restore,
	nbd_restore,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sand --state-dir DIR [options]\n"
		"\n"
		"Serve block storage; controlled with volctl over a unix socket.\n"
		"\n"
		"  --state-dir DIR      state directory (sand.json, sand.lock, the socket)\n"
		"  --control PATH       control socket (default DIR/sand.sock)\n"
		"  --reactors N         reactor threads (default: one per online CPU)\n"
		"  --loop auto|uring|epoll\n"
		"                       event loop backend (default auto)\n"
		"  --debug LIST         debug messages for subsystems, e.g. nbd,raid or all\n"
		"  --log-file PATH      log here instead of stderr (reopened on SIGHUP)\n"
		"  --idle-timeout SECS  drop control clients idle that long (default 60)\n"
		"  --help               this text\n"
		"  --version            print the version\n");
}

static int die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "sand: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'sand --help'.\n");
	return 2;
}

/* One daemon per state directory: an flock on DIR/sand.lock. */
static int lock_state_dir(const char *dir, int *fdp)
{
	char path[PATH_MAX], buf[32];
	int fd, n;

	if (snprintf(path, sizeof(path), "%s/sand.lock", dir) >= (int)sizeof(path)) {
		fprintf(stderr, "sand: state directory %s: path too long\n", dir);
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "sand: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = (int)pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		fprintf(stderr, "sand: state directory %s is in use by another sand (pid %s): "
			"not starting\n", dir, buf[0] ? buf : "?");
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		/* the lock is what matters */
	}
	*fdp = fd;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "control", required_argument, NULL, 'c' },
		{ "reactors", required_argument, NULL, 'r' },
		{ "loop", required_argument, NULL, 'l' },
		{ "debug", required_argument, NULL, 'd' },
		{ "log-file", required_argument, NULL, 'L' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *state_dir_arg = NULL, *control = NULL, *log_file = NULL, *debug = NULL;
	char state_dir[PATH_MAX], sock[PATH_MAX], msg[PATH_MAX + 256];
	struct control_opts copts = { 0 };
	enum ev_backend backend = EV_AUTO;
	unsigned nreactors = 0;
	int opt, lock_fd = -1, rc, status = 1;
	sigset_t set;
	char *end;
	/* Keep freed I/O buffers (up to 1 MiB+ per request) in the heap instead
	 * of unmapping them on free and faulting fresh zeroed pages in on the
	 * next request: each per-request buffer cost 256 page faults that way. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's': state_dir_arg = optarg; break;
		case 'c': control = optarg; break;
		case 'L': log_file = optarg; break;
		case 'd': debug = optarg; break;
		case 'r': {
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || optarg[0] == '-' || v > 1024)
				return die_usage("--reactors: not a number from 0 to 1024: '%s'", optarg);
			nreactors = (unsigned)v;
			break;
		}
		case 'i': {
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || !*optarg || optarg[0] == '-' || !v || v > 86400)
				return die_usage("--idle-timeout: not a number of seconds from 1 to 86400: '%s'",
						 optarg);
			copts.idle_timeout_ms = (unsigned)v * 1000;
			break;
		}
		case 'l':
			if (!strcmp(optarg, "auto"))
				backend = EV_AUTO;
			else if (!strcmp(optarg, "uring") || !strcmp(optarg, "io_uring"))
				backend = EV_URING;
			else if (!strcmp(optarg, "epoll"))
				backend = EV_EPOLL;
			else
				return die_usage("--loop: must be auto, uring or epoll, not '%s'", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sand %s\n", SAND_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'sand --help'.\n");
			return 2;
		}
	}
	if (optind < argc)
		return die_usage("unexpected argument '%s'", argv[optind]);
	if (!state_dir_arg)
		return die_usage("%s", "--state-dir DIR is required");
	if (debug && log_set_debug(debug))
		return die_usage("--debug: unknown subsystem in '%s'", debug);
	if (log_file && (rc = log_set_file(log_file))) {
		fprintf(stderr, "sand: --log-file %s: %s\n", log_file, strerror(-rc));
		return 1;
	}

	if (mkdir(state_dir_arg, 0700) < 0 && errno != EEXIST) {
		LOG_ERR(LS_CORE, "state directory %s: %s", state_dir_arg, strerror(errno));
		goto close_log;
	}
	if (!realpath(state_dir_arg, state_dir)) {
		LOG_ERR(LS_CORE, "state directory %s: %s", state_dir_arg, strerror(errno));
		goto close_log;
	}
	if (lock_state_dir(state_dir, &lock_fd) < 0)
		goto close_log;
	daemon_set_state_dir(state_dir);
	if (snprintf(sock, sizeof(sock), "%s%s", control ? control : state_dir,
		     control ? "" : "/sand.sock") >= (int)sizeof(sock)) {
		LOG_ERR(LS_CORE, "control socket path too long");
		goto unlock;
	}
	if (state_open(state_dir, msg, sizeof(msg))) {
		fprintf(stderr, "sand: %s\n", msg[0] ? msg : "cannot load the state file");
		goto unlock;
	}

	/* Signals go to the control loop's signalfd: block them in every thread. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	LOG_INFO(LS_CORE, "sand %s starting, state %s", SAND_VERSION, state_dir);
	rc = reactors_start(nreactors, backend);
	if (rc)
		goto close_state;
	for (size_t i = 0; i < ARRAY_SIZE(rpc_modules); i++)
		rpc_modules[i]();
	/* after a crash the dead daemon's listeners may linger a moment */
	bind_retry_window(5000);
	for (size_t i = 0; i < ARRAY_SIZE(restore_steps); i++)
		restore_steps[i]();
	bind_retry_window(0);

	copts.path = sock;
	copts.backend = backend;
	rc = control_start(&copts);
	if (rc)
		goto run_hooks;
	LOG_INFO(LS_CORE, "ready: pid %d, control socket %s", (int)getpid(), sock);
	control_wait();		/* until SIGTERM/SIGINT; the hooks have run */
	status = 0;
run_hooks:
	daemon_run_shutdown_hooks();	/* no-op when the control thread ran them */
	disk_close_all();
	reactors_stop();
	control_unlink();
	LOG_INFO(LS_CORE, "stopped");
close_state:
	rpc_unregister_all();
	state_close();
unlock:
	daemon_free();
	close(lock_fd);
close_log:
	log_set_file(NULL);
	if (status && log_file)
		fprintf(stderr, "sand: not started; see %s\n", log_file);
	return status;
}
