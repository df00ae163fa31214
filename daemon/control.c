/* SPDX-License-Identifier: MIT */
/*
 * The control thread: the JSON-RPC unix socket and the signals, on one
 * ev_loop of their own.
 *
 * Clients send one JSON text per line and get one response line per request,
 * in order. Everything is nonblocking and edge-triggered (read and write
 * until EAGAIN), and nothing a client does can stall the others:
 *  - a line longer than LINE_MAX is answered with an error and the client is
 *    closed;
 *  - output is buffered up to OUT_MAX per client; a client that never reads
 *    its responses goes past it and is dropped;
 *  - a client that sends nothing (or half a line) and reads nothing for the
 *    idle timeout is dropped;
 *  - beyond max_clients, new connections are closed at once.
 *
 * Signals arrive through a signalfd on this loop (main blocks them in every
 * thread before any thread starts). SIGTERM/SIGINT close the listener and
 * every client, stop the loop and run the shutdown hooks on this thread;
 * SIGHUP reopens the log file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "sand/common.h"
#include "sand/daemon.h"
#include "sand/ev.h"
#include "sand/log.h"
#include "sand/rpc.h"

#define LINE_MAX_BYTES	(1u << 20)	/* a request line, newline excluded */
#define OUT_MAX		(4u << 20)	/* unsent responses per client */
#define READ_CHUNK	65536

struct client {
	struct list_head link;
	struct ev_io	io;
	int		fd;
	unsigned	id;
	char		*in;
	size_t		inlen, incap;
	char		*out;
	size_t		outlen, outoff, outcap;
	uint64_t	last_active;
	bool		eof;		/* peer sent EOF: close once drained */
	bool		want_write;
};

struct control {
	char		*path;
	enum ev_backend	backend;
	uint64_t	idle_ns;
	unsigned	max_clients;
	int		lfd, sfd;
	struct ev_io	lio, sio;
	struct ev_timer	sweep;
	struct ev_loop	*loop;
	struct list_head clients;
	unsigned	nclients, next_id;
	pthread_t	thread;
	int		start_rc;
	bool		started;
	pthread_mutex_t	lock;
	pthread_cond_t	cond;
};

static struct control *ctl;

/* ------------------------------------------------- daemon-wide small state */

struct hook {
	char	*name;
	void	(*fn)(void *arg);
	void	*arg;
};
static struct hook *hooks;
static size_t nhooks;
static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t start_ns;
static char *g_state_dir;

int daemon_on_shutdown(const char *name, void (*fn)(void *arg), void *arg)
{
	struct hook *h;
	int rc = 0;

	pthread_mutex_lock(&hooks_lock);
	h = realloc(hooks, (nhooks + 1) * sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto unlock;
	}
	hooks = h;
	h[nhooks].name = strdup(name ? name : "?");
	if (!h[nhooks].name) {
		rc = -ENOMEM;
		goto unlock;
	}
	h[nhooks].fn = fn;
	h[nhooks].arg = arg;
	nhooks++;
unlock:
	pthread_mutex_unlock(&hooks_lock);
	return rc;
}

void daemon_run_shutdown_hooks(void)
{
	pthread_mutex_lock(&hooks_lock);
	while (nhooks) {
		struct hook h = hooks[--nhooks];

		pthread_mutex_unlock(&hooks_lock);
		LOG_INFO(LS_CORE, "shutdown: %s", h.name);
		h.fn(h.arg);
		free(h.name);
		pthread_mutex_lock(&hooks_lock);
	}
	free(hooks);
	hooks = NULL;
	pthread_mutex_unlock(&hooks_lock);
}

void daemon_set_state_dir(const char *dir)
{
	free(g_state_dir);
	g_state_dir = dir ? strdup(dir) : NULL;
	if (!start_ns)
		start_ns = now_ns();
}

const char *daemon_state_dir(void) { return g_state_dir ? g_state_dir : ""; }
const char *daemon_control_path(void) { return ctl ? ctl->path : ""; }
uint64_t daemon_uptime_ns(void) { return start_ns ? now_ns() - start_ns : 0; }
struct ev_loop *daemon_control_loop(void) { return ctl ? ctl->loop : NULL; }

/* ---------------------------------------------------------------- clients */

static void client_close(struct client *c, const char *why)
{
	if (why)
		LOG_INFO(LS_RPC, "client %u: %s", c->id, why);
	else
		LOG_DBG(LS_RPC, "client %u: closed", c->id);
	ev_io_stop(ctl->loop, &c->io);
	close(c->fd);
	list_del(&c->link);
	ctl->nclients--;
	free(c->in);
	free(c->out);
	free(c);
}

static int out_append(struct client *c, const char *buf, size_t len)
{
	if (c->outoff && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen - c->outoff + len > OUT_MAX)
		return -ENOBUFS;
	if (c->outlen + len > c->outcap) {
		size_t cap;
		char *p;

		if (c->outoff) {	/* compact first */
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		cap = c->outcap ? c->outcap : 4096;
		while (cap < c->outlen + len)	/* double: appends stay O(1) amortized */
			cap *= 2;
		if (cap > c->outcap) {
			p = realloc(c->out, cap);
			if (!p)
				return -ENOMEM;
			c->out = p;
			c->outcap = cap;
		}
	}
	memcpy(c->out + c->outlen, buf, len);
	c->outlen += len;
	return 0;
}

/* Write until EAGAIN; 0, or -errno when the client is gone. */
static int client_flush(struct client *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		c->outoff += (size_t)n;
		c->last_active = now_ns();
	}
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if ((c->outlen != 0) != c->want_write) {
		c->want_write = c->outlen != 0;
		ev_io_modify(ctl->loop, &c->io, EV_READ | (c->want_write ? EV_WRITE : 0));
	}
	return 0;
}

/* Answer one line; -errno when the client must be dropped. */
static int client_line(struct client *c, char *line, size_t len)
{
	char *resp;
	size_t rlen = 0;
	int rc;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	while (len && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	if (!len)
		return 0;
	resp = rpc_handle_line(line, len, &rlen);
	if (!resp)
		return 0;
	rc = out_append(c, resp, rlen);
	free(resp);
	return rc;
}

/* Handle every complete line in c->in. */
static int client_process(struct client *c)
{
	size_t start = 0;
	int rc = 0;

	while (start < c->inlen) {
		char *nl = memchr(c->in + start, '\n', c->inlen - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start));
		rc = client_line(c, c->in + start, len);
		start += len + 1;
		if (rc)
			break;
	}
	if (start) {
		memmove(c->in, c->in + start, c->inlen - start);
		c->inlen -= start;
	}
	return rc;
}

static void client_too_long(struct client *c)
{
	char msg[128];
	char *line;
	size_t len = 0;

	snprintf(msg, sizeof(msg), "invalid request: line longer than %u bytes", LINE_MAX_BYTES);
	line = rpc_error_line(RPC_INVALID_REQUEST, msg, &len);
	if (line && !out_append(c, line, len))
		client_flush(c);
	free(line);
	client_close(c, "request line too long: dropped");
}

static void client_read(struct client *c)
{
	int rc;

	for (;;) {
		ssize_t n;

		if (c->incap - c->inlen < READ_CHUNK) {
			size_t cap = c->incap ? c->incap * 2 : READ_CHUNK * 2;
			char *p;

			if (cap > LINE_MAX_BYTES + 2 * READ_CHUNK)
				cap = LINE_MAX_BYTES + 2 * READ_CHUNK;
			if (cap <= c->incap) {	/* full: no newline in a whole line's worth */
				client_too_long(c);
				return;
			}
			p = realloc(c->in, cap);
			if (!p) {
				client_close(c, "out of memory: dropped");
				return;
			}
			c->in = p;
			c->incap = cap;
		}
		n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_close(c, strerror(errno));
			return;
		}
		if (n == 0) {
			c->eof = true;
			break;
		}
		c->inlen += (size_t)n;
		c->last_active = now_ns();
		rc = client_process(c);
		if (rc) {
			client_close(c, rc == -ENOBUFS ? "not reading its responses: dropped"
						      : "out of memory: dropped");
			return;
		}
		if (c->inlen > LINE_MAX_BYTES) {
			client_too_long(c);
			return;
		}
	}
	if (c->eof && c->inlen) {	/* a last line without its newline */
		rc = client_line(c, c->in, c->inlen);
		c->inlen = 0;
		if (rc) {
			client_close(c, "not reading its responses: dropped");
			return;
		}
	}
	if (client_flush(c) < 0) {
		client_close(c, NULL);
		return;
	}
	if (c->eof && !c->outlen)
		client_close(c, NULL);
}

static void client_event(struct ev_io *io, uint32_t revents)
{
	struct client *c = container_of(io, struct client, io);

	if (revents & EV_WRITE) {
		if (client_flush(c) < 0) {
			client_close(c, NULL);
			return;
		}
		if (c->eof && !c->outlen) {
			client_close(c, NULL);
			return;
		}
	}
	if (revents & (EV_READ | EV_HUP | EV_ERROR))
		client_read(c);
}

static void accept_ready(struct ev_io *io, uint32_t revents)
{
	for (;;) {
		int fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				LOG_RATELIMIT(LOG_WARN, LS_RPC, "accept: %s", strerror(errno));
			return;
		}
		if (ctl->nclients >= ctl->max_clients) {
			LOG_RATELIMIT(LOG_WARN, LS_RPC, "%u control clients already: refusing one",
				      ctl->nclients);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->id = ++ctl->next_id;
		c->last_active = now_ns();
		if (ev_io_start(ctl->loop, &c->io, fd, EV_READ, client_event)) {
			close(fd);
			free(c);
			continue;
		}
		list_add_tail(&c->link, &ctl->clients);
		ctl->nclients++;
		LOG_DBG(LS_RPC, "client %u: connected", c->id);
	}
}

static void sweep_arm(void);

static void sweep_fn(struct ev_timer *t)
{
	struct list_head *pos, *tmp;
	uint64_t now = now_ns();

	list_for_each_safe(pos, tmp, &ctl->clients) {
		struct client *c = list_entry(pos, struct client, link);

		if (now - c->last_active > ctl->idle_ns)
			client_close(c, c->outlen ? "not reading its responses: dropped"
						  : "idle: dropped");
	}
	sweep_arm();
}

static void sweep_arm(void)
{
	uint64_t d = ctl->idle_ns / 4;

	d = MAX(d, 50000000ull);
	d = MIN(d, 1000000000ull);
	ev_timer_start(ctl->loop, &ctl->sweep, d, sweep_fn);
}

/* ---------------------------------------------------------------- signals */

static void stop_serving(void)
{
	struct list_head *pos, *tmp;

	if (ctl->lfd >= 0) {
		ev_io_stop(ctl->loop, &ctl->lio);
		close(ctl->lfd);
		ctl->lfd = -1;
	}
	list_for_each_safe(pos, tmp, &ctl->clients)
		client_close(list_entry(pos, struct client, link), NULL);
	ev_timer_stop(ctl->loop, &ctl->sweep);
	ev_stop(ctl->loop);
}

static void signal_ready(struct ev_io *io, uint32_t revents)
{
	struct signalfd_siginfo si;

	for (;;) {
		ssize_t n = read(ctl->sfd, &si, sizeof(si));

		if (n != sizeof(si)) {
			if (n < 0 && errno == EINTR)
				continue;
			return;
		}
		switch (si.ssi_signo) {
		case SIGHUP:
		{
			int rc = log_reopen();

			if (rc < 0)
				LOG_ERR(LS_CORE, "sighup: reopening the log: %s", strerror(-rc));
			else
				LOG_INFO(LS_CORE, "sighup: log reopened");
			break;
		}
		case SIGTERM:
		case SIGINT:
			if (ctl->lfd >= 0) {
				LOG_INFO(LS_CORE, "%s: shutting down",
					 si.ssi_signo == SIGTERM ? "sigterm" : "sigint");
				stop_serving();
			}
			break;
		default:
			break;
		}
	}
}

/* ----------------------------------------------------------------- thread */

static void *control_main(void *arg)
{
	int rc;

	pthread_setname_np(pthread_self(), "sand-ctl");
	rc = ev_loop_new(ctl->backend, 256, &ctl->loop);
	if (!rc)
		rc = ev_io_start(ctl->loop, &ctl->sio, ctl->sfd, EV_READ, signal_ready);
	if (!rc) {
		rc = ev_io_start(ctl->loop, &ctl->lio, ctl->lfd, EV_READ, accept_ready);
		if (rc)
			ev_io_stop(ctl->loop, &ctl->sio);
	}
	pthread_mutex_lock(&ctl->lock);
	ctl->start_rc = rc;
	ctl->started = true;
	pthread_cond_broadcast(&ctl->cond);
	pthread_mutex_unlock(&ctl->lock);
	if (rc) {
		if (ctl->loop) {
			for (int i = 0; i < 100 && ev_inflight(ctl->loop); i++)
				ev_run_once(ctl->loop, 10);
			ev_loop_free(ctl->loop);
			ctl->loop = NULL;
		}
		return NULL;
	}
	sweep_arm();
	ev_run(ctl->loop);

	daemon_run_shutdown_hooks();

	ev_io_stop(ctl->loop, &ctl->sio);
	/* let cancelled polls complete before the loop goes */
	for (int i = 0; i < 100; i++)
		if (ev_run_once(ctl->loop, i ? 10 : 0) <= 0 && !ev_inflight(ctl->loop))
			break;
	return NULL;
}

/*
 * Whether whoever accepted on fd is a live daemon: it answers a status
 * call within 2 s. A daemon killed a moment ago may still have its socket
 * listening (io_uring lets go of a dead process's files asynchronously):
 * the connection is accepted by the kernel, and nobody answers.
 */
static bool answers(int fd)
{
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"method\":\"status\",\"id\":1}\n";
	struct timeval tv = { .tv_sec = 2 };
	char c;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
		return false;
	return recv(fd, &c, 1, 0) == 1;
}

/* -1 when nothing is there, 0 stale socket removed, -errno to refuse */
static int check_stale(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		LOG_ERR(LS_CORE, "%s exists and is not a socket: not removing it", path);
		return -EEXIST;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc == 0 && answers(fd)) {
		close(fd);
		LOG_ERR(LS_CORE, "another sand is running on %s: not starting", path);
		return -EADDRINUSE;
	}
	close(fd);
	if (rc == 0)
		LOG_WARN(LS_CORE, "%s accepts but does not answer: the socket of a daemon that died",
			 path);
	LOG_INFO(LS_CORE, "removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, rc;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, SOMAXCONN) < 0) {
		rc = -errno;
		LOG_ERR(LS_CORE, "control socket %s: %s", path, strerror(-rc));
		close(fd);
		return rc;
	}
	return fd;
}

int control_start(const struct control_opts *o)
{
	sigset_t set;
	int rc;

	if (strlen(o->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		LOG_ERR(LS_CORE, "control socket path %s is too long (at most %zu bytes)",
			o->path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -ENAMETOOLONG;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->path = strdup(o->path);
	if (!ctl->path) {
		rc = -ENOMEM;
		goto free_ctl;
	}
	ctl->backend = o->backend;
	ctl->idle_ns = (o->idle_timeout_ms ? o->idle_timeout_ms : 60000) * 1000000ull;
	ctl->max_clients = o->max_clients ? o->max_clients : 128;
	list_init(&ctl->clients);
	pthread_mutex_init(&ctl->lock, NULL);
	pthread_cond_init(&ctl->cond, NULL);
	ctl->lfd = ctl->sfd = -1;

	rc = check_stale(ctl->path);
	if (rc)
		goto free_path;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	ctl->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ctl->sfd < 0) {
		rc = -errno;
		LOG_ERR(LS_CORE, "signalfd: %s", strerror(-rc));
		goto free_path;
	}
	rc = listen_on(ctl->path);
	if (rc < 0)
		goto close_sfd;
	ctl->lfd = rc;
	rc = -pthread_create(&ctl->thread, NULL, control_main, NULL);
	if (rc) {
		LOG_ERR(LS_CORE, "starting the control thread: %s", strerror(-rc));
		goto close_lfd;
	}
	pthread_mutex_lock(&ctl->lock);
	while (!ctl->started)
		pthread_cond_wait(&ctl->cond, &ctl->lock);
	pthread_mutex_unlock(&ctl->lock);
	rc = ctl->start_rc;
	if (rc) {
		LOG_ERR(LS_CORE, "control loop: %s", strerror(-rc));
		pthread_join(ctl->thread, NULL);
		goto close_lfd;
	}
	LOG_INFO(LS_RPC, "control socket %s", ctl->path);
	return 0;
close_lfd:
	close(ctl->lfd);
	unlink(ctl->path);
close_sfd:
	close(ctl->sfd);
free_path:
	pthread_mutex_destroy(&ctl->lock);
	pthread_cond_destroy(&ctl->cond);
	free(ctl->path);
free_ctl:
	free(ctl);
	ctl = NULL;
	return rc;
}

void control_wait(void)
{
	if (!ctl)
		return;
	pthread_join(ctl->thread, NULL);
	ev_loop_free(ctl->loop);
	ctl->loop = NULL;
	close(ctl->sfd);
	pthread_mutex_destroy(&ctl->lock);
	pthread_cond_destroy(&ctl->cond);
}

void control_unlink(void)
{
	if (!ctl)
		return;
	if (unlink(ctl->path) < 0 && errno != ENOENT)
		LOG_WARN(LS_CORE, "removing %s: %s", ctl->path, strerror(errno));
	free(ctl->path);
	free(ctl);
	ctl = NULL;
}

void daemon_free(void)
{
	free(g_state_dir);
	g_state_dir = NULL;
}
