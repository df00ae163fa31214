// SPDX-License-Identifier: MIT
/*
 * nbd-floor: the least an NBD server can do per request, as a yardstick for
 * bench/nbd. One thread, one client at a time, a blocking recv of whatever
 * has arrived, every whole request in it handled (a write is a memcpy into
 * the file's shared mapping, a read points at it), and the replies to all of
 * them in one sendmsg. No options but GO/INFO/EXPORT_NAME, simple replies
 * only, no trim, no zeroes, no TLS, nothing checked that a real server must
 * check, and a file that shrinks under it kills it (SIGBUS). Its CPU time per
 * I/O is what the kernel's TCP and page cache cost on this machine, so
 * bench/nbd prints its ratios as the most a server can show here.
 *
 * The cheapest of the designs measured (bench/README.md): a pwrite per write
 * cost 0.5 us more per 4 KiB write on tmpfs; io_uring (a multishot recv into
 * provided buffers, sendmsg through the ring) 1.1-1.3x the CPU per I/O of
 * the blocking recv, which sleeps and wakes inside the recv itself.
 *
 *     nbd-floor PORT FILE
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_LEN		(32u << 20)
#define BUF_LEN		(MAX_LEN + 4096)
#define MAX_BATCH	256

static int file_fd;
static uint64_t file_size;
static char *map;

static int recv_all(int fd, void *b, size_t n)
{
	for (size_t o = 0; o < n;) {
		ssize_t r = recv(fd, (char *)b + o, n - o, 0);
		if (r <= 0)
			return -1;
		o += (size_t)r;
	}
	return 0;
}

static int send_all(int fd, const void *b, size_t n)
{
	return send(fd, b, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

static int opt_reply(int fd, uint32_t opt, uint32_t type, const void *d, uint32_t len)
{
	unsigned char h[20];
	uint64_t magic = htobe64(0x3e889045565a9ULL);
	uint32_t v;

	memcpy(h, &magic, 8);
	v = htobe32(opt);
	memcpy(h + 8, &v, 4);
	v = htobe32(type);
	memcpy(h + 12, &v, 4);
	v = htobe32(len);
	memcpy(h + 16, &v, 4);
	if (send_all(fd, h, sizeof(h)))
		return -1;
	return len ? send_all(fd, d, len) : 0;
}

/* Fixed newstyle; GO/INFO/EXPORT_NAME on any name, everything else unsupported. */
static int handshake(int fd)
{
	unsigned char g[18], opt_hdr[16], info[12], buf[4096];
	uint64_t v64 = htobe64(0x4e42444d41474943ULL);
	uint16_t v16 = htobe16(1 | 2);	/* FIXED_NEWSTYLE | NO_ZEROES */
	uint16_t tflags = htobe16(1 | 4);	/* HAS_FLAGS | SEND_FLUSH */
	uint32_t cflags;

	memcpy(g, &v64, 8);
	v64 = htobe64(0x49484156454F5054ULL);
	memcpy(g + 8, &v64, 8);
	memcpy(g + 16, &v16, 2);
	if (send_all(fd, g, sizeof(g)) || recv_all(fd, &cflags, 4))
		return -1;
	v64 = htobe64(file_size);
	for (;;) {
		uint32_t opt, len;

		if (recv_all(fd, opt_hdr, sizeof(opt_hdr)))
			return -1;
		memcpy(&opt, opt_hdr + 8, 4);
		memcpy(&len, opt_hdr + 12, 4);
		opt = be32toh(opt);
		len = be32toh(len);
		if (len > sizeof(buf) || recv_all(fd, buf, len))
			return -1;
		if (opt == 1) {	/* EXPORT_NAME: size, flags, no zeroes */
			memcpy(info, &v64, 8);
			memcpy(info + 8, &tflags, 2);
			memset(buf, 0, 124);
			return send_all(fd, info, 10) || ((be32toh(cflags) & 2) ? 0 : send_all(fd, buf, 124));
		}
		if (opt == 6 || opt == 7) {	/* INFO, GO */
			memset(info, 0, 2);
			memcpy(info + 2, &v64, 8);
			memcpy(info + 10, &tflags, 2);
			if (opt_reply(fd, opt, 3, info, 12) || opt_reply(fd, opt, 1, NULL, 0))
				return -1;
			if (opt == 7)
				return 0;
		} else if (opt == 2) {	/* ABORT */
			return -1;
		} else if (opt_reply(fd, opt, 0x80000001u, NULL, 0)) {	/* ERR_UNSUP */
			return -1;
		}
	}
}

struct reply {
	unsigned char hdr[16];
};

static void set_reply(struct reply *r, const unsigned char *cookie, uint32_t err)
{
	uint32_t m = htobe32(0x67446698);

	err = htobe32(err);
	memcpy(r->hdr, &m, 4);
	memcpy(r->hdr + 4, &err, 4);
	memcpy(r->hdr + 8, cookie, 8);
}

/* Serve one client until it leaves or misbehaves. */
static void serve(int fd, unsigned char *in)
{
	static struct reply rep[MAX_BATCH];
	static struct iovec iov[2 * MAX_BATCH];
	size_t have = 0;

	for (;;) {
		ssize_t r = recv(fd, in + have, BUF_LEN - have, 0);
		size_t off = 0;
		int n = 0, nr = 0;

		if (r <= 0)
			return;
		have += (size_t)r;
		while (have - off >= 28 && nr < MAX_BATCH) {
			const unsigned char *p = in + off;
			uint32_t magic, len, err = 0;
			uint16_t type;
			uint64_t o;
			size_t need;

			memcpy(&magic, p, 4);
			memcpy(&type, p + 6, 2);
			memcpy(&o, p + 16, 8);
			memcpy(&len, p + 24, 4);
			type = be16toh(type);
			o = be64toh(o);
			len = be32toh(len);
			if (be32toh(magic) != 0x25609513 || len > MAX_LEN)
				return;
			need = 28 + (type == 1 ? len : 0);
			if (have - off < need)
				break;
			if (type == 2)	/* DISC */
				return;
			if ((type == 0 || type == 1) && (o > file_size || len > file_size - o))
				err = EINVAL;
			else if (type == 1)
				memcpy(map + o, p + 28, len);
			else if (type == 3 && fdatasync(file_fd))
				err = EIO;
			else if (type > 3)
				err = EINVAL;
			set_reply(&rep[nr], p + 8, err);
			iov[n++] = (struct iovec){ rep[nr++].hdr, 16 };
			if (type == 0 && !err)
				iov[n++] = (struct iovec){ (void *)(map + o), len };
			off += need;
		}
		if (n) {
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
			size_t total = 0;

			for (int i = 0; i < n; i++)
				total += iov[i].iov_len;
			/* blocking socket: sendmsg returns when all of it is queued */
			if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)total)
				return;
		}
		memmove(in, in + off, have - off);
		have -= off;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	unsigned char *in;
	struct stat st;
	int ls, one = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: nbd-floor PORT FILE\n");
		return 2;
	}
	a.sin_port = htons((uint16_t)atoi(argv[1]));
	file_fd = open(argv[2], O_RDWR);
	if (file_fd < 0 || fstat(file_fd, &st) || st.st_size <= 0) {
		fprintf(stderr, "nbd-floor: %s: %s\n", argv[2], strerror(errno ? errno : EINVAL));
		return 1;
	}
	file_size = (uint64_t)st.st_size;
	map = mmap(NULL, file_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, file_fd, 0);
	in = malloc(BUF_LEN);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (map == MAP_FAILED || !in || ls < 0 ||
	    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 16)) {
		perror("nbd-floor");
		return 1;
	}
	for (;;) {
		int fd = accept(ls, NULL, NULL);

		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!handshake(fd))
			serve(fd, in);
		close(fd);
	}
}
