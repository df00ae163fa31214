/* SPDX-License-Identifier: MIT */
/*
 * nbd-test-server: the NBD server on its own, for functional tests until
 * the daemon's RPCs can set it up.
 *
 *   nbd-test-server [-r REACTORS] [-E uring|epoll] [-d] -l ADDR [-l ADDR...]
 *                   -e NAME=mem:SIZE[,bs=N][,ro][,desc=TEXT]
 *                   -e NAME=flaky:SIZE  (mem, refusing some I/O with EAGAIN)
 *                   -e NAME=file:PATH[,size=SIZE][,backend=B][,ro][,desc=TEXT]
 *
 * Prints "listening BOUND" per listener and then "ready" on stdout, serves
 * until SIGTERM or SIGINT, shuts down cleanly (nbd_shutdown, reactors_stop,
 * devices closed) and exits 0.
 *
 * Commands on stdin, one per line, each answered "ok ..." or "err ...":
 *   add SPEC (as -e) | remove NAME | listen ADDR | unlisten ADDR |
 *   list (one "export NAME clients N" line per export, then "ok")
 *
 * File devices use the real backends (blk_file_open: B is auto, uring, aio
 * or psync); with size=, a missing file is created sparse.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/log.h"
#include "sand/nbd.h"
#include "sand/reactor.h"

/*
 * "flaky": a memory device that refuses every third submission with
 * -EAGAIN while other I/O is in flight, to exercise the exports' retry
 * queue (backpressure from the block layer).
 */
struct flaky {
	struct blkdev	bd;
	struct blkdev	*inner;
	unsigned	n;		/* submissions, atomically counted */
	unsigned	refused;
};

static struct blkdev_ops flaky_ops;

static void flaky_close(struct blkdev *bd)
{
	struct flaky *f = container_of(bd, struct flaky, bd);

	fprintf(stderr, "flaky %s: %u of %u submissions refused with EAGAIN\n", bd->name,
		f->refused, f->n);
	blkdev_close(f->inner);
	free(f);
}

static bool flaky_supports(struct blkdev *bd, enum bio_op op)
{
	return blkdev_supports(container_of(bd, struct flaky, bd)->inner, op);
}

static int flaky_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct flaky *f = container_of(bd, struct flaky, bd);

	if (__atomic_add_fetch(&f->n, 1, __ATOMIC_RELAXED) % 3 == 0 && ch->inflight > 1) {
		__atomic_add_fetch(&f->refused, 1, __ATOMIC_RELAXED);
		return -EAGAIN;
	}
	return f->inner->ops->submit(f->inner, ch, bio);
}

static int flaky_create(const char *name, uint64_t size, struct blkdev **out)
{
	struct flaky *f = calloc(1, sizeof(*f));
	int rc;

	if (!f)
		return -ENOMEM;
	rc = blk_mem_create(name, size, 512, &f->inner);
	if (rc) {
		free(f);
		return rc;
	}
	flaky_ops = (struct blkdev_ops){
		.name = "flaky",
		.bio_ctx_size = f->inner->ops->bio_ctx_size,
		.close = flaky_close,
		.supports = flaky_supports,
		.submit = flaky_submit,
	};
	blkdev_init(&f->bd, &flaky_ops, name);
	f->bd.size = size;
	f->bd.block_size = 512;
	*out = &f->bd;
	return 0;
}

#define MAX_DEVS 16

static struct blkdev *devs[MAX_DEVS];
static unsigned ndevs;

static int add_export(char *spec)
{
	char *eq = strchr(spec, '='), *type, *arg, *opt, *save = NULL;
	char *desc = NULL;
	uint64_t size = 0;
	uint32_t bs = 512;
	bool ro = false;
	struct blk_file_opts fo = { .backend = BLK_FILE_AUTO };
	struct blkdev *bd;
	int rc;

	if (!eq || ndevs == MAX_DEVS)
		return -EINVAL;
	*eq = 0;
	type = eq + 1;
	arg = strchr(type, ':');
	if (!arg)
		return -EINVAL;
	*arg++ = 0;
	arg = strtok_r(arg, ",", &save);
	while ((opt = strtok_r(NULL, ",", &save))) {
		if (!strcmp(opt, "ro"))
			ro = true;
		else if (!strncmp(opt, "bs=", 3))
			bs = (uint32_t)strtoul(opt + 3, NULL, 0);
		else if (!strncmp(opt, "size=", 5) && parse_size(opt + 5, &size) == 0)
			;
		else if (!strncmp(opt, "backend=", 8) && blk_file_backend_parse(opt + 8, &fo.backend) == 0)
			;
		else if (!strncmp(opt, "desc=", 5))
			desc = opt + 5;
		else
			return -EINVAL;
	}
	if (!arg)
		return -EINVAL;
	if (!strcmp(type, "mem")) {
		if (parse_size(arg, &size))
			return -EINVAL;
		rc = blk_mem_create(spec, size, bs, &bd);
	} else if (!strcmp(type, "flaky")) {
		if (parse_size(arg, &size))
			return -EINVAL;
		rc = flaky_create(spec, size, &bd);
	} else if (!strcmp(type, "file")) {
		fo.create_size = size;
		rc = blk_file_open(spec, arg, &fo, &bd);
	} else {
		return -EINVAL;
	}
	if (rc)
		return rc;
	devs[ndevs++] = bd;
	return nbd_export_add(spec, bd, ro, desc);
}

static void print_listener(const struct nbd_listener_info *l, void *arg)
{
	(void)arg;
	printf("listening %s\n", l->bound);
}

static void print_export(const struct nbd_export_info *e, void *arg)
{
	(void)arg;
	printf("export %s clients %u size %llu%s\n", e->name, e->clients,
	       (unsigned long long)e->size, e->readonly ? " ro" : "");
}

static void command(char *line)
{
	char *arg = strchr(line, ' ');
	int rc;

	line[strcspn(line, "\r\n")] = 0;
	if (arg)
		*arg++ = 0;
	if (!strcmp(line, "list")) {
		nbd_export_foreach(print_export, NULL);
		rc = 0;
	} else if (!arg) {
		rc = -EINVAL;
	} else if (!strcmp(line, "add")) {
		rc = add_export(arg);
	} else if (!strcmp(line, "remove")) {
		rc = nbd_export_remove(arg);
	} else if (!strcmp(line, "listen")) {
		rc = nbd_listen(arg);
		if (!rc)
			nbd_listener_foreach(print_listener, NULL);
	} else if (!strcmp(line, "unlisten")) {
		rc = nbd_unlisten(arg);
	} else {
		rc = -EINVAL;
	}
	if (rc)
		printf("err %s\n", strerror(-rc));
	else
		printf("ok %s\n", line);
	fflush(stdout);
}

/* Until SIGTERM/SIGINT; commands from stdin meanwhile. */
static int serve(const sigset_t *set)
{
	struct pollfd pfd[2];
	char line[512];
	size_t len = 0;
	int sfd = signalfd(-1, set, SFD_CLOEXEC);

	if (sfd < 0)
		return -errno;
	pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents && read(sfd, &si, sizeof(si)) == sizeof(si)) {
			fprintf(stderr, "nbd-test-server: signal %u, shutting down\n", si.ssi_signo);
			break;
		}
		if (!pfd[1].revents)
			continue;
		n = read(STDIN_FILENO, line + len, sizeof(line) - 1 - len);
		if (n <= 0) {
			pfd[1].fd = -1;		/* EOF: signals only from now on */
			continue;
		}
		len += (size_t)n;
		line[len] = 0;
		for (char *nl; (nl = strchr(line, '\n')); ) {
			*nl = 0;
			command(line);
			len -= (size_t)(nl + 1 - line);
			memmove(line, nl + 1, len + 1);
		}
		if (len == sizeof(line) - 1)
			len = 0;	/* an absurd line: drop it */
	}
	close(sfd);
	return 0;
}

int main(int argc, char **argv)
{
	enum ev_backend backend = EV_AUTO;
	unsigned nreactors = 2;
	char *listens[16], *exports[MAX_DEVS];
	unsigned nl = 0, ne = 0;
	sigset_t set;
	int opt, rc;

	while ((opt = getopt(argc, argv, "r:E:l:e:d")) != -1) {
		switch (opt) {
		case 'r':
			nreactors = (unsigned)atoi(optarg);
			break;
		case 'E':
			backend = !strcmp(optarg, "epoll") ? EV_EPOLL : EV_URING;
			break;
		case 'l':
			if (nl < ARRAY_SIZE(listens))
				listens[nl++] = optarg;
			break;
		case 'e':
			if (ne < ARRAY_SIZE(exports))
				exports[ne++] = optarg;
			break;
		case 'd':
			log_set_debug("nbd");
			break;
		default:
			fprintf(stderr, "usage: %s [-r N] [-E uring|epoll] [-d] -l ADDR -e NAME=mem:SIZE|file:PATH\n",
				argv[0]);
			return 2;
		}
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);	/* reactors inherit the mask */
	signal(SIGPIPE, SIG_IGN);

	rc = reactors_start(nreactors, backend);
	if (rc) {
		fprintf(stderr, "reactors_start: %s\n", strerror(-rc));
		return 1;
	}
	for (unsigned i = 0; i < ne && !rc; i++) {
		rc = add_export(exports[i]);
		if (rc)
			fprintf(stderr, "export %s: %s\n", exports[i], strerror(-rc));
	}
	for (unsigned i = 0; i < nl && !rc; i++) {
		rc = nbd_listen(listens[i]);
		if (rc)
			fprintf(stderr, "listen %s: %s\n", listens[i], strerror(-rc));
	}
	if (!rc) {
		nbd_listener_foreach(print_listener, NULL);
		printf("ready\n");
		fflush(stdout);
		rc = serve(&set);
	}
	nbd_shutdown();
	reactors_stop();
	for (unsigned i = 0; i < ndevs; i++) {
		int crc = blkdev_close(devs[i]);

		if (crc) {
			fprintf(stderr, "closing %s: %s\n", devs[i]->name, strerror(-crc));
			rc = rc ? rc : crc;
		}
	}
	return rc ? 1 : 0;
}
