/* SPDX-License-Identifier: MIT */
/*
 * nbd-test-server: the NBD server on its own, for functional tests until
 * the daemon's RPCs can set it up.
 *
 *   nbd-test-server [-r REACTORS] [-E uring|epoll] [-d] -l ADDR [-l ADDR...]
 *                   -e NAME=mem:SIZE[,bs=N][,ro][,desc=TEXT]
 *                   -e NAME=file:PATH[,size=SIZE][,ro][,desc=TEXT]
 *
 * Prints "listening BOUND" per listener and then "ready" on stdout, serves
 * until SIGTERM or SIGINT, shuts down cleanly (nbd_shutdown, reactors_stop,
 * devices closed) and exits 0.
 *
 * Commands on stdin, one per line, each answered "ok ..." or "err ...":
 *   add SPEC (as -e) | remove NAME | listen ADDR | unlisten ADDR |
 *   list (one "export NAME clients N" line per export, then "ok")
 *
 * The file device here is a test helper: synchronous pread/pwrite in the
 * reactor, completed on the next loop turn, fdatasync for FLUSH and FUA,
 * fallocate for TRIM and WRITE_ZEROES. The real backends live in backends/.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>
#include "sand/blkdev.h"
#include "sand/log.h"
#include "sand/nbd.h"
#include "sand/reactor.h"

struct tfile {
	struct blkdev	bd;
	int		fd;
};

struct tfile_bio {
	int	status;
};

static void tfile_close(struct blkdev *bd)
{
	struct tfile *f = container_of(bd, struct tfile, bd);

	close(f->fd);
	free(f);
}

static bool tfile_supports(struct blkdev *bd, enum bio_op op)
{
	return op < BIO_OP_MAX;
}

static void tfile_done(struct ev_task *t)
{
	struct bio *bio = container_of(t, struct bio, task);
	struct tfile_bio *tb = bio_ctx(bio);

	bio_complete(bio, tb->status);
}

static int tfile_do(struct tfile *f, struct bio *bio)
{
	uint64_t off = bio->offset;
	ssize_t n;
	int mode;

	switch (bio->op) {
	case BIO_READ:
	case BIO_WRITE:
		for (int i = 0; i < bio->iovcnt; i++) {
			size_t done = 0;

			while (done < bio->iov[i].iov_len) {
				char *p = (char *)bio->iov[i].iov_base + done;
				size_t len = bio->iov[i].iov_len - done;

				n = bio->op == BIO_READ ? pread(f->fd, p, len, (off_t)off)
							: pwrite(f->fd, p, len, (off_t)off);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					return -errno;
				if (n == 0) {	/* read past EOF of a short file */
					memset(p, 0, len);
					n = (ssize_t)len;
				}
				done += (size_t)n;
				off += (uint64_t)n;
			}
		}
		break;
	case BIO_DISCARD:
	case BIO_WRITE_ZEROES:
		mode = bio->flags & BIO_NOUNMAP ? FALLOC_FL_ZERO_RANGE
						: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		if (fallocate(f->fd, mode, (off_t)bio->offset, (off_t)bio->len) < 0)
			return -errno;
		break;
	case BIO_FLUSH:
		break;
	default:
		return -EINVAL;
	}
	if (bio->op == BIO_FLUSH || (bio->flags & BIO_FUA))
		if (fdatasync(f->fd) < 0)
			return -errno;
	return 0;
}

static int tfile_submit(struct blkdev *bd, struct blkchan *ch, struct bio *bio)
{
	struct tfile_bio *tb = bio_ctx(bio);

	tb->status = tfile_do(container_of(bd, struct tfile, bd), bio);
	ev_defer(ch->loop, &bio->task, tfile_done);
	return 0;
}

static const struct blkdev_ops tfile_ops = {
	.name = "testfile",
	.bio_ctx_size = sizeof(struct tfile_bio),
	.close = tfile_close,
	.supports = tfile_supports,
	.submit = tfile_submit,
};

static int tfile_open(const char *name, const char *path, uint64_t size, struct blkdev **out)
{
	struct tfile *f = calloc(1, sizeof(*f));
	struct stat st;

	if (!f)
		return -ENOMEM;
	f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f->fd < 0 || fstat(f->fd, &st) < 0) {
		int rc = -errno;

		free(f);
		return rc;
	}
	if (size && (uint64_t)st.st_size < size && ftruncate(f->fd, (off_t)size) < 0) {
		int rc = -errno;

		close(f->fd);
		free(f);
		return rc;
	}
	blkdev_init(&f->bd, &tfile_ops, name);
	f->bd.size = (size ? size : (uint64_t)st.st_size) & ~511ull;
	f->bd.block_size = 512;
	snprintf(f->bd.path, sizeof(f->bd.path), "%s", path);
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
	} else if (!strcmp(type, "file")) {
		rc = tfile_open(spec, arg, size, &bd);
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
