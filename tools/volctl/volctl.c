/* SPDX-License-Identifier: MIT */
/*
 * volctl: the command-line client of sand. Every verb is one JSON-RPC
 * method on the daemon's unix socket.
 *
 * Adding a verb: write a `static int cmd_x(struct ctx *c, int argc, char
 * **argv)` that checks its arguments (usage_error() for mistakes), calls
 * call() and prints the result (c->json: print_json() instead), then add a
 * line to verbs[] below. argv[0] is the verb's last word; options after the
 * verb are parsed with getopt_long by the function itself (opt_parse()).
 * Verbs that only take positional names are one line with simple_verb();
 * print_human() is a default printer for any result (key/value lines for
 * an object, a table for an array of objects).
 *
 * Exit status: 0 done, 1 the daemon refused or could not be reached,
 * 2 usage error (nothing was sent).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <jansson.h>
#include "sand/common.h"
#include "tools/volctl/offline.h"

#define DEFAULT_SOCKET	"/var/lib/sand/sand.sock"
#define RESP_MAX	(64u << 20)

struct verb;

struct ctx {
	const char	*socket;
	bool		json;
	int		fd;
	int		next_id;
	const struct verb *verb;
};

struct verb {
	const char	*name;
	const char	*sub;		/* second word, or NULL */
	int		(*fn)(struct ctx *c, int argc, char **argv);
	const char	*args;		/* after the verb's words */
	const char	*summary;
	const char	*help;		/* details for VERB --help */
};

static const struct verb verbs[];

/* ------------------------------------------------------------- messages */

static void verb_usage(FILE *f, const struct verb *v)
{
	fprintf(f, "usage: volctl [--socket PATH] [--json] %s%s%s%s%s\n", v->name,
		v->sub ? " " : "", v->sub ? v->sub : "", v->args[0] ? " " : "", v->args);
}

static int usage_error(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "volctl: ");
	if (c && c->verb)
		fprintf(stderr, "%s%s%s: ", c->verb->name, c->verb->sub ? " " : "",
			c->verb->sub ? c->verb->sub : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c && c->verb)
		verb_usage(stderr, c->verb);
	else
		fprintf(stderr, "Try 'volctl --help'.\n");
	return 2;
}

/* ---------------------------------------------------------------- the wire */

static int connect_daemon(struct ctx *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 120 };

	if (c->fd >= 0)
		return 0;
	if (strlen(c->socket) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "volctl: socket path %s is too long\n", c->socket);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->socket);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "volctl: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "volctl: cannot reach sand at %s: %s (is the daemon running? "
			"use --socket PATH or SAND_SOCKET)\n", c->socket, strerror(errno));
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return 0;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

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

/* One response line, malloc'd, or NULL. */
static char *read_line(struct ctx *c)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *p;

	if (!buf)
		return NULL;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			if (cap >= RESP_MAX) {
				fprintf(stderr, "volctl: response from %s too long\n", c->socket);
				goto fail;
			}
			p = realloc(buf, cap * 2);
			if (!p)
				goto fail;
			buf = p;
			cap *= 2;
		}
		n = recv(c->fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "volctl: no response from sand at %s: %s\n", c->socket,
				n < 0 ? strerror(errno) : "connection closed");
			goto fail;
		}
		p = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (p) {
			*p = '\0';
			return buf;
		}
	}
fail:
	free(buf);
	return NULL;
}

/*
 * Call a method: the result (a new reference), or NULL after printing the
 * daemon's error (or why it could not be reached). Steals params.
 */
static json_t *call(struct ctx *c, const char *method, json_t *params)
{
	json_t *req, *resp = NULL, *result = NULL, *error;
	json_error_t jerr;
	char *text = NULL, *line = NULL;
	int id = ++c->next_id;

	req = json_pack("{s:s,s:s,s:o,s:i}", "jsonrpc", "2.0", "method", method,
			"params", params ? params : json_object(), "id", id);
	if (!req)
		return NULL;
	if (connect_daemon(c))
		goto out;
	text = json_dumps(req, JSON_COMPACT);
	if (!text || send_all(c->fd, text, strlen(text)) || send_all(c->fd, "\n", 1)) {
		fprintf(stderr, "volctl: sending to sand at %s: %s\n", c->socket, strerror(errno));
		goto out;
	}
	line = read_line(c);
	if (!line)
		goto out;
	resp = json_loads(line, 0, &jerr);
	if (!json_is_object(resp)) {
		fprintf(stderr, "volctl: bad response from sand: %s\n", jerr.text);
		goto out;
	}
	error = json_object_get(resp, "error");
	if (error) {
		json_t *data = json_object_get(error, "data");

		fprintf(stderr, "volctl: %s\n", json_string_value(json_object_get(error, "message")) ?
			json_string_value(json_object_get(error, "message")) : "unknown error");
		if (c->json) {
			char *e = json_dumps(error, JSON_COMPACT);

			fprintf(stderr, "%s\n", e ? e : "");
			free(e);
		} else if (data && getenv("VOLCTL_DEBUG")) {
			char *e = json_dumps(data, JSON_COMPACT);

			fprintf(stderr, "volctl: code %lld, data %s\n",
				(long long)json_integer_value(json_object_get(error, "code")),
				e ? e : "");
			free(e);
		}
		goto out;
	}
	result = json_object_get(resp, "result");
	if (!result)
		fprintf(stderr, "volctl: response without a result\n");
	json_incref(result);
out:
	json_decref(resp);
	json_decref(req);
	free(text);
	free(line);
	return result;
}

static int print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

	if (!s)
		return 1;
	printf("%s\n", s);
	free(s);
	return 0;
}

/* ------------------------------------------------------------------ tables */

struct table {
	unsigned	ncols;
	char		**cells;	/* row-major, header first */
	size_t		nrows, cap;
};

static void table_init(struct table *t, unsigned ncols, ...)
{
	va_list ap;

	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->cap = 8;
	t->cells = calloc(t->cap * ncols, sizeof(char *));
	va_start(ap, ncols);
	for (unsigned i = 0; i < ncols; i++)
		t->cells[i] = strdup(va_arg(ap, const char *));
	va_end(ap);
	t->nrows = 1;
}

/* ncols strings; NULL prints as "-" */
static void table_row(struct table *t, ...)
{
	va_list ap;

	if (t->nrows == t->cap) {
		t->cap *= 2;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
		if (!t->cells)
			abort();
	}
	va_start(ap, t);
	for (unsigned i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);

		t->cells[t->nrows * t->ncols + i] = strdup(s && *s ? s : "-");
	}
	va_end(ap);
	t->nrows++;
}

static void table_print(struct table *t)
{
	size_t w[16] = { 0 };

	for (size_t r = 0; r < t->nrows; r++)
		for (unsigned i = 0; i < t->ncols && i < 16; i++)
			w[i] = MAX(w[i], strlen(t->cells[r * t->ncols + i]));
	for (size_t r = 0; r < t->nrows; r++) {
		for (unsigned i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];

			if (i + 1 == t->ncols)
				printf("%s\n", s);
			else
				printf("%-*s  ", (int)w[i], s);
		}
	}
	for (size_t k = 0; k < t->nrows * t->ncols; k++)
		free(t->cells[k]);
	free(t->cells);
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static const char *jsize(json_t *o, const char *key, char *buf, size_t len)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return "-";
	return format_size((uint64_t)json_integer_value(v), buf, len);
}

static const char *jint(json_t *o, const char *key, char *buf, size_t len)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return "-";
	snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	return buf;
}

static const char *jyes(json_t *o, const char *key)
{
	return json_is_true(json_object_get(o, key)) ? "yes" : "no";
}

/* -------------------------------------------------------------- arguments */

/* getopt_long over a verb's arguments; returns the option or -1 when done,
 * '?' after printing the usage error. */
static int opt_parse(struct ctx *c, int argc, char **argv, const struct option *opts)
{
	int o;

	opterr = 0;
	o = getopt_long(argc, argv, "", opts, NULL);
	if (o == '?') {
		if (optopt)
			usage_error(c, "option '%s' needs a value or is not known",
				    argv[optind - 1]);
		else
			usage_error(c, "unknown option '%s'", argv[optind - 1]);
	}
	return o;
}

static void opt_reset(void)
{
	optind = 0;	/* glibc: full re-initialisation */
}

static int parse_size_arg(struct ctx *c, const char *what, const char *s, uint64_t *out)
{
	if (parse_size(s, out))
		return usage_error(c, "%s: not a size: '%s' (e.g. 4096, 512K, 10G)", what, s);
	return 0;
}

/* A scalar as text for tables ("-" for null). */
static void scalar_text(json_t *v, char *buf, size_t len)
{
	char *s;

	if (!v || json_is_null(v)) {
		snprintf(buf, len, "-");
	} else if (json_is_string(v)) {
		snprintf(buf, len, "%s", json_string_value(v));
	} else if (json_is_true(v) || json_is_false(v)) {
		snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
	} else {
		s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(buf, len, "%s", s ? s : "?");
		free(s);
	}
}

/*
 * Default human output for a result: an object prints as "key  value"
 * lines, an array of objects as a table with the first object's keys as
 * columns (upper-cased), anything else as JSON. New verbs can start with
 * this and get a tailored printer later.
 */
static void print_human(json_t *r)
{
	if (json_is_object(r)) {
		const char *key;
		json_t *v;
		size_t w = 0;
		char buf[1024];

		json_object_foreach(r, key, v)
			w = MAX(w, strlen(key));
		json_object_foreach(r, key, v) {
			scalar_text(v, buf, sizeof(buf));
			printf("%-*s  %s\n", (int)w, key, buf);
		}
	} else if (json_is_array(r) && json_is_object(json_array_get(r, 0))) {
		json_t *first = json_array_get(r, 0), *row, *v;
		unsigned ncols = (unsigned)MIN(json_object_size(first), 16);
		const char *keys[16], *key;
		char *cells[16];
		struct table t;
		unsigned i = 0;
		size_t k;

		json_object_foreach(first, key, v)
			if (i < ncols)
				keys[i++] = key;
		memset(&t, 0, sizeof(t));
		t.ncols = ncols;
		t.cap = json_array_size(r) + 1;
		t.cells = calloc(t.cap * ncols, sizeof(char *));
		if (!t.cells)
			return;
		for (i = 0; i < ncols; i++) {
			char *h = strdup(keys[i]);

			for (char *p = h; p && *p; p++)
				*p = *p == '_' ? '-' : (char)toupper((unsigned char)*p);
			t.cells[i] = h;
		}
		t.nrows = 1;
		json_array_foreach(r, k, row) {
			for (i = 0; i < ncols; i++) {
				char buf[1024];

				scalar_text(json_object_get(row, keys[i]), buf, sizeof(buf));
				cells[i] = strdup(buf);
			}
			memcpy(&t.cells[t.nrows * ncols], cells, ncols * sizeof(char *));
			t.nrows++;
		}
		table_print(&t);
	} else if (json_is_array(r) && !json_array_size(r)) {
		printf("(none)\n");
	} else {
		print_json(r);
	}
}

/*
 * The common verb shape: no options, positional arguments that map in order
 * to the named string params (NULL-terminated; a name starting with '?' is
 * optional), then print the result (default printer, or the message `done`,
 * where "%s" stands for the first argument, when not NULL and not --json):
 *	return simple_verb(c, argc, argv, "disk.remove", "disk %s removed", "name", NULL);
 */
static int simple_verb(struct ctx *c, int argc, char **argv, const char *method,
		       const char *done, ...) __attribute__((sentinel));
static int simple_verb(struct ctx *c, int argc, char **argv, const char *method,
		       const char *done, ...)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	json_t *params, *r;
	const char *name, *first = NULL;
	va_list ap;

	opt_reset();
	if (opt_parse(c, argc, argv, opts) != -1)
		return 2;
	params = json_object();
	va_start(ap, done);
	while ((name = va_arg(ap, const char *))) {
		bool optional = name[0] == '?';

		name += optional;
		if (optind >= argc) {
			if (optional)
				continue;
			va_end(ap);
			json_decref(params);
			{
				char up[64];
				size_t i;

				for (i = 0; name[i] && i < sizeof(up) - 1; i++)
					up[i] = (char)toupper((unsigned char)name[i]);
				up[i] = '\0';
				return usage_error(c, "missing %s", up);
			}
		}
		if (!first)
			first = argv[optind];
		json_object_set_new(params, name, json_string(argv[optind++]));
	}
	va_end(ap);
	if (optind < argc) {
		json_decref(params);
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	}
	r = call(c, method, params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else if (done) {		/* "%s" in done is the first argument */
		const char *p = strstr(done, "%s");

		if (p)
			printf("%.*s%s%s\n", (int)(p - done), done, first ? first : "", p + 2);
		else
			printf("%s\n", done);
	} else {
		print_human(r);
	}
	json_decref(r);
	return 0;
}

/* ------------------------------------------------------------------- verbs */

/*
 * A verb that takes no options or arguments: call METHOD with PARAMS (NULL
 * for none; always consumed). Returns its result
 * for the caller to render, or NULL with *rc set: 2 for a usage error, 1 when
 * the call failed, 0 when --json already printed the result.
 */
static json_t *call_plain(struct ctx *c, int argc, char **argv, const char *method,
			  json_t *params, int *rc)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	json_t *r;

	opt_reset();
	*rc = 2;
	if (opt_parse(c, argc, argv, opts) != -1) {
		json_decref(params);
		return NULL;
	}
	if (optind < argc) {
		json_decref(params);
		*rc = usage_error(c, "unexpected argument '%s'", argv[optind]);
		return NULL;
	}
	*rc = 1;
	r = call(c, method, params);
	if (r && c->json) {
		print_json(r);
		json_decref(r);
		*rc = 0;
		return NULL;
	}
	return r;
}

static int cmd_status(struct ctx *c, int argc, char **argv)
{
	json_t *r, *v;
	char up[64];
	size_t i;
	int rc;

	r = call_plain(c, argc, argv, "status", NULL, &rc);
	if (!r)
		return rc;
	{
		double s = (double)json_integer_value(json_object_get(r, "uptime_ms")) / 1000;
		unsigned long t = (unsigned long)s;

		if (t >= 86400)
			snprintf(up, sizeof(up), "%lud %luh %lum", t / 86400, t % 86400 / 3600,
				 t % 3600 / 60);
		else if (t >= 3600)
			snprintf(up, sizeof(up), "%luh %lum %lus", t / 3600, t % 3600 / 60, t % 60);
		else if (t >= 60)
			snprintf(up, sizeof(up), "%lum %lus", t / 60, t % 60);
		else
			snprintf(up, sizeof(up), "%.1fs", s);
	}
	printf("%-10s %s\n", "version", jstr(r, "version") ? jstr(r, "version") : "?");
	printf("%-10s %lld\n", "pid", (long long)json_integer_value(json_object_get(r, "pid")));
	printf("%-10s %s\n", "uptime", up);
	printf("%-10s %s\n", "state dir", jstr(r, "state_dir") ? jstr(r, "state_dir") : "?");
	printf("%-10s %s\n", "socket", jstr(r, "socket") ? jstr(r, "socket") : "?");
	v = json_object_get(r, "reactors");
	printf("%-10s %lld on %s\n", "reactors",
	       (long long)json_integer_value(json_object_get(v, "count")),
	       jstr(v, "loop") ? jstr(v, "loop") : "?");
	printf("%-10s", "backends");
	json_array_foreach(json_object_get(r, "backends"), i, v)
		printf(" %s", json_string_value(v));
	printf("\n");
	printf("%-10s %s\n", "debug", jstr(r, "debug") && *jstr(r, "debug") ? jstr(r, "debug")
									   : "-");
	json_decref(r);
	return 0;
}

static int cmd_disk_list(struct ctx *c, int argc, char **argv)
{
	struct table t;
	json_t *r, *d;
	size_t i;
	int rc;

	r = call_plain(c, argc, argv, "disk.list", NULL, &rc);
	if (!r)
		return rc;
	table_init(&t, 9, "NAME", "BACKEND", "SIZE", "BLOCK", "RO", "DIRECT", "STATE",
		   "CLAIMED-BY", "PATH");
	json_array_foreach(r, i, d) {
		char sz[32], bs[32];
		const char *state = jstr(d, "state");
		char st[600];

		if (jstr(d, "error"))
			snprintf(st, sizeof(st), "%s: %s", state ? state : "?", jstr(d, "error"));
		else
			snprintf(st, sizeof(st), "%s", state ? state : "?");
		table_row(&t, jstr(d, "name"), jstr(d, "backend"), jsize(d, "size", sz, sizeof(sz)),
			  jint(d, "block_size", bs, sizeof(bs)), jyes(d, "readonly"),
			  jyes(d, "direct"), st, jstr(d, "claimed_by"), jstr(d, "path"));
	}
	table_print(&t);
	json_decref(r);
	return 0;
}

static int cmd_disk_add(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "size", required_argument, NULL, 's' },
		{ "block-size", required_argument, NULL, 'B' },
		{ "readonly", no_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 }
	};
	static const char *const backends[] = { "auto", "uring", "aio", "psync", "mem", "null" };
	const char *backend = NULL, *name, *path = NULL;
	uint64_t size = 0, bs = 0;
	bool ro = false, mem, known = false;
	char abspath[PATH_MAX], sz[32];
	json_t *params, *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 'b': backend = optarg; break;
		case 's':
			if (parse_size_arg(c, "--size", optarg, &size))
				return 2;
			break;
		case 'B':
			if (parse_size_arg(c, "--block-size", optarg, &bs))
				return 2;
			break;
		case 'r': ro = true; break;
		default: return 2;
		}
	}
	if (backend) {
		for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
			known |= !strcmp(backend, backends[i]);
		if (!known)
			return usage_error(c, "--backend must be auto, uring, aio, psync, mem "
					   "or null, not '%s'", backend);
	}
	mem = backend && (!strcmp(backend, "mem") || !strcmp(backend, "null"));
	if (optind >= argc)
		return usage_error(c, "missing NAME");
	name = argv[optind++];
	if (optind < argc && !mem)
		path = argv[optind++];
	if (optind < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (!mem && !path)
		return usage_error(c, "missing PATH (a file or block device)");
	if (mem && !size)
		return usage_error(c, "--size is required with --backend %s", backend);
	if (bs > UINT32_MAX)
		return usage_error(c, "--block-size too large");
	if (path && path[0] != '/') {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(abspath, sizeof(abspath), "%s/%s", cwd, path) >= (int)sizeof(abspath))
			return usage_error(c, "cannot make '%s' absolute", path);
		path = abspath;
	}
	params = json_pack("{s:s,s:b}", "name", name, "readonly", ro);
	if (backend)
		json_object_set_new(params, "backend", json_string(backend));
	if (path)
		json_object_set_new(params, "path", json_string(path));
	if (size)
		json_object_set_new(params, "size", json_integer((json_int_t)size));
	if (bs)
		json_object_set_new(params, "block_size", json_integer((json_int_t)bs));
	r = call(c, "disk.add", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("disk %s added: %s, %s, block size %lld%s\n", name,
		       jstr(r, "backend") ? jstr(r, "backend") : "?", jsize(r, "size", sz, sizeof(sz)),
		       (long long)json_integer_value(json_object_get(r, "block_size")),
		       json_is_true(json_object_get(r, "readonly")) ? ", read-only" : "");
	json_decref(r);
	return 0;
}

static int cmd_disk_remove(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "disk.remove", "disk %s removed", "name", NULL);
}

/* iscsi portal add GROUP ADDR:PORT | remove|disable|enable ADDR:PORT */
static int cmd_iscsi_portal(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	unsigned long tpg;
	char *end;
	json_t *r;

	if (argc >= 2 && !strcmp(argv[1], "remove"))
		return simple_verb(c, argc - 1, argv + 1, "iscsi.portal_remove",
				   "portal %s removed", "address", NULL);
	if (argc >= 2 && !strcmp(argv[1], "disable"))
		return simple_verb(c, argc - 1, argv + 1, "iscsi.portal_disable",
				   "portal %s disabled", "address", NULL);
	if (argc >= 2 && !strcmp(argv[1], "enable"))
		return simple_verb(c, argc - 1, argv + 1, "iscsi.portal_enable",
				   "portal %s enabled", "address", NULL);
	opt_reset();
	if (opt_parse(c, argc, argv, opts) != -1)
		return 2;
	if (optind >= argc || strcmp(argv[optind], "add"))
		return usage_error(c, "expected 'add' or 'remove'");
	if (argc - optind != 3)
		return usage_error(c, argc - optind < 3 ? "missing TPG or ADDR:PORT" :
				   "unexpected argument '%s'", argv[optind + 3]);
	errno = 0;
	tpg = strtoul(argv[optind + 1], &end, 10);
	if (argv[optind + 1][0] >= '0' && argv[optind + 1][0] <= '9' &&
	    (errno || *end || !tpg || tpg > 65535))
		return usage_error(c, "GROUP must be a name or a number from 1 to 65535, not '%s'",
				   argv[optind + 1]);
	if (*end)	/* a named group: the daemon gives it a tag */
		r = call(c, "iscsi.portal_add", json_pack("{s:s,s:s}", "address",
							    argv[optind + 2], "group",
							    argv[optind + 1]));
	else
		r = call(c, "iscsi.portal_add", json_pack("{s:s,s:i}", "address",
							    argv[optind + 2], "tpg",
							    (json_int_t)tpg));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("portal %s (group %s, tpg %lld) listening on port %lld\n",
		       argv[optind + 2], argv[optind + 1],
		       (long long)json_integer_value(json_object_get(r, "tpg")),
		       (long long)json_integer_value(json_object_get(r, "port")));
	json_decref(r);
	return 0;
}

/* iscsi target delete IQN [--force] */
static int iscsi_target_delete(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { "force", no_argument, NULL, 'f' },
					      { NULL, 0, NULL, 0 } };
	bool force = false;
	json_t *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o != 'f')
			return 2;
		force = true;
	}
	if (optind >= argc)
		return usage_error(c, "missing IQN");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	r = call(c, "iscsi.target_delete", json_pack("{s:s,s:b}", "iqn", argv[optind],
						       "force", force));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("target %s deleted\n", argv[optind]);
	json_decref(r);
	return 0;
}

/* iscsi target create IQN | delete IQN [--force] */
static int cmd_iscsi_target(struct ctx *c, int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "create"))
		return simple_verb(c, argc - 1, argv + 1, "iscsi.target_create",
				   "target %s created", "iqn", NULL);
	if (argc >= 2 && !strcmp(argv[1], "delete"))
		return iscsi_target_delete(c, argc - 1, argv + 1);
	return usage_error(c, "expected 'create IQN' or 'delete IQN [--force]'");
}

/* iscsi acl add|remove IQN INITIATOR_IQN */
static int cmd_iscsi_acl(struct ctx *c, int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "add"))
		return simple_verb(c, argc - 1, argv + 1, "iscsi.acl_add",
				   "target %s: initiator admitted", "target", "initiator", NULL);
	if (argc >= 2 && !strcmp(argv[1], "remove"))
		return simple_verb(c, argc - 1, argv + 1, "iscsi.acl_remove",
				   "target %s: initiator removed", "target", "initiator", NULL);
	return usage_error(c, "expected 'add IQN INITIATOR_IQN' or 'remove IQN INITIATOR_IQN'");
}

/* USER:SECRET into params under ukey/skey; the secret is never echoed. */
static int cred_arg(struct ctx *c, const char *opt, const char *v, json_t *params,
		    const char *ukey, const char *skey)
{
	const char *colon = strchr(v, ':');

	if (!colon || colon == v || !colon[1])
		return usage_error(c, "%s takes USER:SECRET (both non-empty)", opt);
	json_object_set_new(params, ukey, json_stringn(v, (size_t)(colon - v)));
	json_object_set_new(params, skey, json_string(colon + 1));
	return 0;
}

/* iscsi auth set IQN|--discovery --chap USER:SECRET [--mutual USER:SECRET]
 * iscsi auth clear IQN|--discovery */
static int cmd_iscsi_auth(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "discovery", no_argument, NULL, 'd' },
		{ "chap", required_argument, NULL, 'c' },
		{ "mutual", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 }
	};
	bool set, disc = false, chap = false;
	json_t *params, *r;
	const char *iqn = NULL;
	int o;

	if (argc < 2 || (strcmp(argv[1], "set") && strcmp(argv[1], "clear")))
		return usage_error(c, "expected 'set' or 'clear'");
	set = !strcmp(argv[1], "set");
	argc--;
	argv++;
	params = json_object();
	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 'd': disc = true; break;
		case 'c':
		case 'm':
			if (!set) {
				json_decref(params);
				return usage_error(c, "'clear' takes no credentials");
			}
			if (cred_arg(c, o == 'c' ? "--chap" : "--mutual", optarg, params,
				     o == 'c' ? "user" : "mutual_user",
				     o == 'c' ? "secret" : "mutual_secret")) {
				json_decref(params);
				return 2;
			}
			chap |= o == 'c';
			break;
		default:
			json_decref(params);
			return 2;
		}
	}
	if (optind < argc)
		iqn = argv[optind++];
	if (optind < argc || (!iqn == !disc)) {
		json_decref(params);
		return usage_error(c, optind < argc ? "unexpected argument" :
				   "give IQN or --discovery");
	}
	if (set && !chap) {
		json_decref(params);
		return usage_error(c, "--chap USER:SECRET is required");
	}
	if (iqn)
		json_object_set_new(params, "target", json_string(iqn));
	else
		json_object_set_new(params, "discovery", json_true());
	r = call(c, set ? "iscsi.auth_set" : "iscsi.auth_clear", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else if (set)
		printf("%s%s: chap user %s%s%s\n", iqn ? "target " : "discovery", iqn ? iqn : "",
		       jstr(r, "user"), jstr(r, "mutual_user") ? ", mutual as " : "",
		       jstr(r, "mutual_user") ? jstr(r, "mutual_user") : "");
	else
		printf("%s%s: no chap\n", iqn ? "target " : "discovery", iqn ? iqn : "");
	json_decref(r);
	return 0;
}

/* unexport iscsi IQN --lun N [--force] */
static int cmd_unexport_iscsi(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "lun", required_argument, NULL, 'l' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 }
	};
	long lun = -1;
	bool force = false;
	char *end;
	json_t *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 'l':
			errno = 0;
			lun = strtol(optarg, &end, 10);
			if (errno || *end || lun < 0 || lun > 255)
				return usage_error(c, "--lun must be 0 to 255, not '%s'", optarg);
			break;
		case 'f': force = true; break;
		default: return 2;
		}
	}
	if (optind >= argc)
		return usage_error(c, "missing IQN");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if (lun < 0)
		return usage_error(c, "--lun N is required");
	r = call(c, "iscsi.unexport", json_pack("{s:s,s:i,s:b}", "target", argv[optind],
						  "lun", (json_int_t)lun, "force", force));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("target %s lun %ld (disk %s) unexported\n", argv[optind], lun,
		       jstr(r, "disk") ? jstr(r, "disk") : "?");
	json_decref(r);
	return 0;
}

static int cmd_iscsi_sessions(struct ctx *c, int argc, char **argv)
{
	json_t *r, *e, *cn;
	size_t i, j;
	int rc;

	r = call_plain(c, argc, argv, "iscsi.sessions", json_object(), &rc);
	if (!r)
		return rc;
	json_array_foreach(r, i, e) {
		json_t *p = json_object_get(e, "params");

		printf("session %s isid %s tsih %lld %s %s%s%s\n", jstr(e, "initiator"),
		       jstr(e, "isid"), (long long)json_integer_value(json_object_get(e, "tsih")),
		       jstr(e, "type"), jstr(e, "target") ? "to " : "",
		       jstr(e, "target") ? jstr(e, "target") : "", "");
		json_array_foreach(json_object_get(e, "connections"), j, cn)
			printf("  connection %lld from %s to portal %s\n",
			       (long long)json_integer_value(json_object_get(cn, "cid")),
			       jstr(cn, "peer"), jstr(cn, "portal"));
		printf("  params: digests %s/%s, mrdsl %lld (ours %lld), burst %lld/%lld, "
		       "immediate %s, initial r2t %s, max r2t %lld, erl %lld, max connections %lld\n",
		       json_is_true(json_object_get(p, "header_digest")) ? "CRC32C" : "None",
		       json_is_true(json_object_get(p, "data_digest")) ? "CRC32C" : "None",
		       (long long)json_integer_value(json_object_get(p, "max_xmit_dsl")),
		       (long long)json_integer_value(json_object_get(p, "max_recv_dsl")),
		       (long long)json_integer_value(json_object_get(p, "first_burst")),
		       (long long)json_integer_value(json_object_get(p, "max_burst")),
		       jyes(p, "immediate_data"), jyes(p, "initial_r2t"),
		       (long long)json_integer_value(json_object_get(p, "max_outstanding_r2t")),
		       (long long)json_integer_value(json_object_get(p, "error_recovery_level")),
		       (long long)json_integer_value(json_object_get(p, "max_connections")));
	}
	if (!json_array_size(r))
		printf("no sessions\n");
	json_decref(r);
	return 0;
}

/* "IQN isid ISID tpg N" (or "all ports") of a registration */
static void print_nexus(json_t *g)
{
	json_t *tpg = json_object_get(g, "tpg");

	printf("%s", jstr(g, "initiator"));
	if (jstr(g, "isid") && *jstr(g, "isid"))
		printf(" isid %s", jstr(g, "isid"));
	if (json_is_integer(tpg))
		printf(" tpg %lld", (long long)json_integer_value(tpg));
	else
		printf(" (all target ports)");
}

static int cmd_iscsi_reservations(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	json_t *r, *res, *g;
	size_t i;

	opt_reset();
	if (opt_parse(c, argc, argv, opts) != -1)
		return 2;
	if (optind >= argc)
		return usage_error(c, "missing VOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	r = call(c, "iscsi.reservations", json_pack("{s:s}", "volume", argv[optind]));
	if (!r)
		return 1;
	if (c->json) {
		print_json(r);
		json_decref(r);
		return 0;
	}
	printf("volume %s: target %s lun %lld, generation %lld%s\n", jstr(r, "volume"),
	       jstr(r, "target"), (long long)json_integer_value(json_object_get(r, "lun")),
	       (long long)json_integer_value(json_object_get(r, "generation")),
	       json_is_true(json_object_get(r, "aptpl")) ? ", persists (APTPL)" : "");
	res = json_object_get(r, "reservation");
	if (json_is_object(res)) {
		printf("reservation %s held by ", jstr(res, "type"));
		if (json_is_object(json_object_get(res, "holder")))
			print_nexus(json_object_get(res, "holder"));
		else
			printf("every registrant");
		printf("\n");
	} else {
		printf("no reservation\n");
	}
	json_array_foreach(json_object_get(r, "registrations"), i, g) {
		printf("  key %s ", jstr(g, "key"));
		print_nexus(g);
		printf("%s\n", json_is_true(json_object_get(g, "holder")) ? " (holder)" : "");
	}
	if (!json_array_size(json_object_get(r, "registrations")))
		printf("no registrations\n");
	json_decref(r);
	return 0;
}

/* iscsi tpg set GROUP --alua STATE | list */
static int cmd_iscsi_tpg(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { "alua", required_argument, NULL, 'a' },
					      { NULL, 0, NULL, 0 } };
	const char *alua = NULL;
	json_t *r, *g, *p;
	size_t i, j;
	int o, rc;

	if (argc >= 2 && !strcmp(argv[1], "list")) {
		r = call_plain(c, argc - 1, argv + 1, "iscsi.tpg_list", json_object(), &rc);
		if (!r)
			return rc;
		json_array_foreach(json_object_get(r, "groups"), i, g) {
			printf("group %s tpg %lld %s\n", jstr(g, "name"),
			       (long long)json_integer_value(json_object_get(g, "id")),
			       jstr(g, "alua"));
			json_array_foreach(json_object_get(g, "portals"), j, p)
				printf("  portal %s %s\n", jstr(p, "address"), jstr(p, "state"));
		}
		json_decref(r);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "set"))
		return usage_error(c, "expected 'set' or 'list'");
	opt_reset();
	argc--;
	argv++;
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o == '?')
			return 2;
		alua = optarg;
	}
	if (optind >= argc)
		return usage_error(c, "missing GROUP");
	if (argc - optind > 1)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if (!alua)
		return usage_error(c, "--alua active-optimized|active-nonoptimized|standby|"
				   "unavailable is required");
	r = call(c, "iscsi.tpg_set", json_pack("{s:s,s:s}", "group", argv[optind], "alua", alua));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("group %s (tpg %lld): %s\n", jstr(r, "group"),
		       (long long)json_integer_value(json_object_get(r, "id")), jstr(r, "alua"));
	json_decref(r);
	return 0;
}

/* iscsi sanitize [--rate RATE] */
static int cmd_iscsi_sanitize(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { "rate", required_argument, NULL, 'r' },
					      { NULL, 0, NULL, 0 } };
	json_t *params = json_object(), *r;
	uint64_t rate;
	char a[32];
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o != 'r' || parse_size_arg(c, "--rate", optarg, &rate)) {
			json_decref(params);
			return 2;
		}
		json_object_set_new(params, "rate", json_integer((json_int_t)rate));
	}
	if (optind < argc) {
		json_decref(params);
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	}
	r = call(c, "iscsi.sanitize", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else if (json_integer_value(json_object_get(r, "rate")))
		printf("sanitize rate %s/s\n", jsize(r, "rate", a, sizeof(a)));
	else
		printf("sanitize rate not limited\n");
	json_decref(r);
	return 0;
}

/* iscsi timeouts [--nop-interval MS] [--nop-misses N] [--login MS] */
static int cmd_iscsi_timeouts(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { "nop-interval", required_argument, NULL, 'i' },
					      { "nop-misses", required_argument, NULL, 'm' },
					      { "login", required_argument, NULL, 'l' },
					      { NULL, 0, NULL, 0 } };
	json_t *params = json_object(), *r;
	unsigned long v;
	char *end;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o == '?') {
			json_decref(params);
			return 2;
		}
		errno = 0;
		v = strtoul(optarg, &end, 10);
		if (errno || *end || !*optarg || v > 3600000) {
			json_decref(params);
			return usage_error(c, "'%s' is not a number of milliseconds or pings", optarg);
		}
		json_object_set_new(params, o == 'i' ? "nop_interval_ms" : o == 'm' ? "nop_misses" :
				    "login_ms", json_integer((json_int_t)v));
	}
	if (optind < argc) {
		json_decref(params);
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	}
	r = call(c, "iscsi.timeouts", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("nop-interval %lld ms, nop-misses %lld, login %lld ms\n",
		       (long long)json_integer_value(json_object_get(r, "nop_interval_ms")),
		       (long long)json_integer_value(json_object_get(r, "nop_misses")),
		       (long long)json_integer_value(json_object_get(r, "login_ms")));
	json_decref(r);
	return 0;
}

static int cmd_iscsi_list(struct ctx *c, int argc, char **argv)
{
	json_t *r, *e, *l, *a;
	size_t i, j;
	int rc;

	r = call_plain(c, argc, argv, "iscsi.list", json_object(), &rc);
	if (!r)
		return rc;
	json_array_foreach(json_object_get(r, "portals"), i, e)
		printf("portal %s tpg %lld %s%s%s\n", jstr(e, "address"),
		       (long long)json_integer_value(json_object_get(e, "tpg")), jstr(e, "state"),
		       jstr(e, "error") ? ": " : "", jstr(e, "error") ? jstr(e, "error") : "");
	if ((a = json_object_get(r, "discovery_auth")))
		printf("discovery chap user %s%s%s\n", jstr(a, "user"),
		       jstr(a, "mutual_user") ? ", mutual as " : "",
		       jstr(a, "mutual_user") ? jstr(a, "mutual_user") : "");
	json_array_foreach(json_object_get(r, "targets"), i, e) {
		printf("target %s%s%s\n", jstr(e, "iqn"), jstr(e, "error") ? " failed: " : "",
		       jstr(e, "error") ? jstr(e, "error") : "");
		if ((a = json_object_get(e, "auth")))
			printf("  chap user %s%s%s\n", jstr(a, "user"),
			       jstr(a, "mutual_user") ? ", mutual as " : "",
			       jstr(a, "mutual_user") ? jstr(a, "mutual_user") : "");
		json_array_foreach(json_object_get(e, "acl"), j, l)
			printf("  admits %s\n", json_string_value(l));
		json_array_foreach(json_object_get(e, "luns"), j, l)
			printf("  lun %lld disk %s%s %s%s%s\n",
			       (long long)json_integer_value(json_object_get(l, "lun")),
			       jstr(l, "disk"), json_is_true(json_object_get(l, "readonly")) ?
			       " read-only" : "", jstr(l, "state"), jstr(l, "error") ? ": " : "",
			       jstr(l, "error") ? jstr(l, "error") : "");
	}
	json_decref(r);
	return 0;
}

/* export iscsi DISK --target IQN [--lun N] [--readonly] */
static int cmd_export_iscsi(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "lun", required_argument, NULL, 'l' },
		{ "readonly", no_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 }
	};
	const char *target = NULL, *disk;
	long lun = -1;
	bool ro = false;
	char *end;
	json_t *params, *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 't': target = optarg; break;
		case 'l':
			errno = 0;
			lun = strtol(optarg, &end, 10);
			if (errno || *end || lun < 0 || lun > 255)
				return usage_error(c, "--lun must be 0 to 255, not '%s'", optarg);
			break;
		case 'r': ro = true; break;
		default: return 2;
		}
	}
	if (optind >= argc)
		return usage_error(c, "missing DISK");
	disk = argv[optind++];
	if (optind < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (!target)
		return usage_error(c, "--target IQN is required");
	params = json_pack("{s:s,s:s,s:b}", "disk", disk, "target", target, "readonly", ro);
	if (lun >= 0)
		json_object_set_new(params, "lun", json_integer(lun));
	r = call(c, "iscsi.export", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("disk %s exported as %s lun %lld%s\n", disk, target,
		       (long long)json_integer_value(json_object_get(r, "lun")),
		       ro ? " (read-only)" : "");
	json_decref(r);
	return 0;
}

/* ------------------------------------------------------ pools and volumes */

/* pool create POOL --raid LEVEL [--strip SIZE] [--chunk SIZE] DISK... */
/* --low-space PCT: 0..99, an optional '%'; -1 (after usage_error) if not. */
static long parse_pct(struct ctx *c, const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*end == '%')
		end++;
	if (errno || end == s || *end || v < 0 || v > 99) {
		usage_error(c, "--low-space takes a percentage of the data space, 0 (off) to 99, "
			    "not '%s'", s);
		return -1;
	}
	return v;
}

/* pool set POOL --low-space PCT */
static int cmd_pool_set(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "low-space", required_argument, NULL, 'l' },
		{ "rebuild-rate", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 }
	};
	char a[32];
	long low = -1;
	uint64_t rate = 0;
	bool have_rate = false;
	json_t *params, *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 'l':
			low = parse_pct(c, optarg);
			if (low < 0)
				return 2;
			break;
		case 'r':
			if (parse_size_arg(c, "--rebuild-rate", optarg, &rate))
				return 2;
			have_rate = true;
			break;
		default:
			return 2;
		}
	}
	if (optind >= argc)
		return usage_error(c, "missing POOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if (low < 0 && !have_rate)
		return usage_error(c, "nothing to set: --low-space PCT, --rebuild-rate RATE");
	params = json_pack("{s:s}", "name", argv[optind]);
	if (low >= 0)
		json_object_set_new(params, "low_space", json_integer(low));
	if (have_rate)
		json_object_set_new(params, "rebuild_rate", json_integer((json_int_t)rate));
	r = call(c, "pool.set", params);
	if (!r)
		return 1;
	if (c->json) {
		print_json(r);
	} else {
		if (low >= 0)
			printf("pool %s: low space below %s free (%ld%%)%s\n", argv[optind],
			       jsize(r, "low_space_threshold", a, sizeof(a)), low,
			       json_is_true(json_object_get(r, "low_space")) ? ": LOW NOW" : "");
		if (have_rate && rate)
			printf("pool %s: rebuild rate %s/s per disk\n", argv[optind],
			       jsize(r, "rebuild_rate", a, sizeof(a)));
		else if (have_rate)
			printf("pool %s: rebuild rate not limited\n", argv[optind]);
	}
	json_decref(r);
	return 0;
}

static int cmd_pool_create(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "raid", required_argument, NULL, 'r' },
		{ "strip", required_argument, NULL, 's' },
		{ "chunk", required_argument, NULL, 'c' },
		{ "low-space", required_argument, NULL, 'l' },
		{ "spare", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 }
	};
	const char *name, *level = NULL;
	uint64_t strip = 0, chunk = 0;
	long low = -1;
	char sz[32], used[32];
	json_t *params, *members, *r, *spares = json_array();
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 'r': level = optarg; break;
		case 's':
			if (parse_size_arg(c, "--strip", optarg, &strip))
				goto bad;
			break;
		case 'c':
			if (parse_size_arg(c, "--chunk", optarg, &chunk))
				goto bad;
			break;
		case 'l':
			low = parse_pct(c, optarg);
			if (low < 0)
				goto bad;
			break;
		case 'S':
			json_array_append_new(spares, json_string(optarg));
			break;
		default: goto bad;
		}
	}
	if (!level) {
		json_decref(spares);
		return usage_error(c, "--raid LEVEL is required (0, 1, 10, 5 or 6)");
	}
	if (strcmp(level, "0") && strcmp(level, "1") && strcmp(level, "10") &&
	    strcmp(level, "5") && strcmp(level, "6")) {
		json_decref(spares);
		return usage_error(c, "--raid must be 0, 1, 10, 5 or 6, not '%s'", level);
	}
	if (optind + 1 >= argc) {
		json_decref(spares);
		return usage_error(c, optind >= argc ? "missing POOL" : "missing DISK (at least one)");
	}
	name = argv[optind++];
	members = json_array();
	while (optind < argc)
		json_array_append_new(members, json_string(argv[optind++]));
	params = json_pack("{s:s,s:i,s:o}", "name", name, "level", atoi(level), "members", members);
	if (json_array_size(spares))
		json_object_set(params, "spares", spares);
	if (strip)
		json_object_set_new(params, "strip", json_integer((json_int_t)strip));
	if (chunk)
		json_object_set_new(params, "chunk", json_integer((json_int_t)chunk));
	if (low >= 0)
		json_object_set_new(params, "low_space", json_integer(low));
	r = call(c, "pool.create", params);
	if (!r) {
		json_decref(spares);
		return 1;
	}
	if (c->json) {
		print_json(r);
	} else {
		printf("pool %s created: %s over %zu disks, %s of data, %s used\n", name,
		       jstr(r, "level") ? jstr(r, "level") : "?",
		       json_array_size(json_object_get(r, "members")) - json_array_size(spares),
		       jsize(r, "data_total", sz, sizeof(sz)), jsize(r, "data_used", used, sizeof(used)));
		if (jstr(r, "note"))
			printf("%s\n", jstr(r, "note"));
	}
	json_decref(r);
	json_decref(spares);
	return 0;
bad:
	json_decref(spares);
	return 2;
}

static int cmd_pool_list(struct ctx *c, int argc, char **argv)
{
	struct table t;
	json_t *r, *p;
	size_t i;
	int rc;

	r = call_plain(c, argc, argv, "pool.list", NULL, &rc);
	if (!r)
		return rc;
	table_init(&t, 8, "NAME", "LEVEL", "DISKS", "CHUNK", "SIZE", "USED", "VOLUMES", "STATE");
	json_array_foreach(r, i, p) {
		char n[32], ch[32], sz[32], u[32], v[32], st[600];

		if (jstr(p, "error"))
			snprintf(st, sizeof(st), "%s: %s", jstr(p, "state"), jstr(p, "error"));
		else
			snprintf(st, sizeof(st), "%s", jstr(p, "state") ? jstr(p, "state") : "?");
		table_row(&t, jstr(p, "name"), jstr(p, "level"), jint(p, "members", n, sizeof(n)),
			  jsize(p, "chunk", ch, sizeof(ch)), jsize(p, "data_total", sz, sizeof(sz)),
			  jsize(p, "data_used", u, sizeof(u)), jint(p, "volumes", v, sizeof(v)), st);
	}
	table_print(&t);
	json_decref(r);
	return 0;
}

/* "rebuild  slot 1 on d5: 42.0% (420M of 1G), 180M/s, ETA 0:03" and the last job. */
static void print_job(json_t *j)
{
	const char *kind = jstr(j, "kind");
	json_t *l = json_object_get(j, "last");
	char a[32], b[32], rate[32];

	if (kind && strcmp(kind, "none")) {
		long long eta = (long long)json_integer_value(json_object_get(j, "eta"));
		char what[96];

		if (!strcmp(kind, "rebuild"))
			snprintf(what, sizeof(what), "slot %s on %s%s", jint(j, "slot", a, sizeof(a)),
				 jstr(j, "disk") ? jstr(j, "disk") : "?",
				 json_is_true(json_object_get(j, "partial")) ?
				 " (partial: regions written since it left)" : "");
		else
			snprintf(what, sizeof(what), "%s, %s mismatches so far%s",
				 json_is_true(json_object_get(j, "repair")) ? "repairing" : "checking",
				 jint(j, "mismatches", a, sizeof(a)),
				 json_integer_value(json_object_get(j, "resumed_at")) ?
				 ", resumed after a restart" : "");
		printf("%-13s %s: %.1f%% (%s of %s), %s/s, ETA %lld:%02lld\n", kind, what,
		       json_number_value(json_object_get(j, "percent")),
		       jsize(j, "done", a, sizeof(a)), jsize(j, "total", b, sizeof(b)),
		       jsize(j, "rate", rate, sizeof(rate)), eta / 60, eta % 60);
	}
	if (l) {
		if (!strcmp(jstr(l, "kind") ? jstr(l, "kind") : "", "scrub"))
			printf("last job      scrub%s: %s, %s mismatches\n",
			       json_is_true(json_object_get(l, "repair")) ? " --repair" : "",
			       jstr(l, "result"), jint(l, "mismatches", a, sizeof(a)));
		else
			printf("last job      rebuild of slot %s%s: %s\n", jint(l, "slot", a, sizeof(a)),
			       json_is_true(json_object_get(l, "partial")) ? " (partial)" : "",
			       jstr(l, "result"));
	}
}

static int cmd_pool_show(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	json_t *r, *m;
	char a[32], b[32];
	size_t i;

	opt_reset();
	if (opt_parse(c, argc, argv, opts) != -1)
		return 2;
	if (optind >= argc)
		return usage_error(c, "missing POOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	r = call(c, "pool.show", json_pack("{s:s}", "name", argv[optind]));
	if (!r)
		return 1;
	if (c->json) {
		print_json(r);
		json_decref(r);
		return 0;
	}
	printf("pool          %s\n", jstr(r, "name"));
	printf("state         %s%s%s\n", jstr(r, "state"), jstr(r, "error") ? ": " : "",
	       jstr(r, "error") ? jstr(r, "error") : "");
	printf("level         %s\n", jstr(r, "level"));
	printf("strip         %s\n", jsize(r, "strip", a, sizeof(a)));
	printf("chunk         %s\n", jsize(r, "chunk", a, sizeof(a)));
	printf("data          %s used of %s\n", jsize(r, "data_used", a, sizeof(a)),
	       jsize(r, "data_total", b, sizeof(b)));
	printf("metadata      %s used of %s\n", jsize(r, "meta_used", a, sizeof(a)),
	       jsize(r, "meta_total", b, sizeof(b)));
	printf("provisioned   %s\n", jsize(r, "provisioned", a, sizeof(a)));
	if (json_is_number(json_object_get(r, "overcommit")))
		printf("overcommit    %.2f\n", json_number_value(json_object_get(r, "overcommit")));
	if (json_is_integer(json_object_get(r, "low_space_pct")))
		printf("low space     below %s free (%lld%%)%s\n",
		       jsize(r, "low_space_threshold", a, sizeof(a)),
		       (long long)json_integer_value(json_object_get(r, "low_space_pct")),
		       json_is_true(json_object_get(r, "low_space")) ? " (LOW NOW)" : "");
	else
		printf("low space     below %s free%s\n", jsize(r, "low_space_threshold", a, sizeof(a)),
		       json_is_true(json_object_get(r, "low_space")) ? " (LOW NOW)" : "");
	printf("volumes       %s\n", jint(r, "volumes", a, sizeof(a)));
	json_array_foreach(json_object_get(r, "members"), i, m) {
		if (!strcmp(jstr(m, "state") ? jstr(m, "state") : "", "spare"))
			printf("spare         %s\n", jstr(m, "disk"));
		else
			printf("member        %s slot %s %s\n", jstr(m, "disk"),
			       jint(m, "slot", a, sizeof(a)), jstr(m, "state"));
	}
	if (json_integer_value(json_object_get(r, "rebuild_rate")))
		printf("rebuild rate  %s/s per disk\n", jsize(r, "rebuild_rate", a, sizeof(a)));
	else
		printf("rebuild rate  no limit\n");
	if (json_integer_value(json_object_get(r, "read_errors_fixed")))
		printf("read errors   %s repaired from redundancy\n",
		       jint(r, "read_errors_fixed", a, sizeof(a)));
	print_job(json_object_get(r, "job"));
	json_decref(r);
	return 0;
}

static int cmd_pool_destroy(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 }
	};
	bool force = false;
	json_t *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o != 'f')
			return 2;
		force = true;
	}
	if (optind >= argc)
		return usage_error(c, "missing POOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	r = call(c, "pool.destroy", json_pack("{s:s,s:b}", "name", argv[optind], "force", force));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("pool %s destroyed\n", argv[optind]);
	json_decref(r);
	return 0;
}

/* check POOL [--repair] (online, through the daemon), or check --offline
 * DEV... [--repair] (the daemon stopped; tools/volctl/check.c). */
static int cmd_check(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "offline", no_argument, NULL, 'o' },
		{ "drop-damaged", no_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 }
	};
	bool repair = false, offline = false, drop = false;
	size_t i;
	json_t *r, *l;
	int o, rc;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o == 'r')
			repair = true;
		else if (o == 'o')
			offline = true;
		else if (o == 'd')
			drop = true;
		else
			return 2;
	}
	if (drop && (!offline || !repair))
		return usage_error(c, "--drop-damaged goes with --offline --repair (the daemon "
				   "keeps every volume open)");
	if (offline) {
		if (optind >= argc)
			return usage_error(c, "missing DEV (the pool's disks, or its one device)");
		return volctl_check_offline(argv + optind, argc - optind, repair, drop, c->json);
	}
	if (optind >= argc)
		return usage_error(c, "missing POOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	r = call(c, "pool.check", json_pack("{s:s,s:b}", "name", argv[optind], "repair", repair));
	if (!r)
		return 1;
	rc = json_is_true(json_object_get(r, "clean")) ? 0 : 1;
	if (c->json) {
		print_json(r);
		json_decref(r);
		return rc;
	}
	json_array_foreach(json_object_get(r, "problems"), i, l)
		printf("  %s\n", json_string_value(l));
	if (json_integer_value(json_object_get(r, "repaired")) && !rc)
		printf("pool %s: repaired: %lld counts rewritten; clean now (%lld volumes, %lld "
		       "mappings)\n", argv[optind],
		       (long long)json_integer_value(json_object_get(r, "repaired")),
		       (long long)json_integer_value(json_object_get(r, "volumes")),
		       (long long)json_integer_value(json_object_get(r, "mappings")));
	else
		printf("pool %s: %s: %lld volumes, %lld mappings, %lld errors%s\n", argv[optind],
		       rc ? "DAMAGED" : "clean",
		       (long long)json_integer_value(json_object_get(r, "volumes")),
		       (long long)json_integer_value(json_object_get(r, "mappings")),
		       (long long)json_integer_value(json_object_get(r, "errors")),
		       rc && !repair && !json_integer_value(json_object_get(r, "bad_trees")) ?
		       " (--repair can fix them)" : "");
	json_decref(r);
	return rc;
}

static int cmd_pool_replace(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "pool.replace", "pool %s: rebuilding on the new disk "
			   "('volctl pool show' says when it is done)", "name", "old", "new", NULL);
}

static int cmd_pool_add_spare(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "pool.add_spare", "pool %s: hot spare added",
			   "name", "disk", NULL);
}

static int cmd_pool_fail(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "pool.fail", "pool %s: disk taken out",
			   "name", "disk", NULL);
}

/* pool scrub POOL [--repair] [--cancel] */
static int cmd_pool_scrub(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "cancel", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 }
	};
	bool repair = false, cancel = false;
	json_t *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o == 'r')
			repair = true;
		else if (o == 'c')
			cancel = true;
		else
			return 2;
	}
	if (optind >= argc)
		return usage_error(c, "missing POOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if (repair && cancel)
		return usage_error(c, "--repair and --cancel do not go together");
	r = call(c, "pool.scrub", cancel ? json_pack("{s:s,s:b}", "name", argv[optind], "cancel", 1) :
		 json_pack("{s:s,s:b}", "name", argv[optind], "repair", repair));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else if (cancel)
		printf("pool %s: scrub cancelled\n", argv[optind]);
	else
		printf("pool %s: scrub%s started ('volctl pool show' shows its progress)\n",
		       argv[optind], repair ? " with repair" : "");
	json_decref(r);
	return 0;
}

/* pool set POOL --rebuild-rate RATE */
/* vol create VOL --pool POOL --size SIZE */
static int cmd_vol_create(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pool", required_argument, NULL, 'p' },
		{ "size", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};
	const char *pool = NULL;
	uint64_t size = 0;
	char sz[32];
	json_t *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 'p': pool = optarg; break;
		case 's':
			if (parse_size_arg(c, "--size", optarg, &size))
				return 2;
			break;
		default: return 2;
		}
	}
	if (optind >= argc)
		return usage_error(c, "missing VOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if (!pool)
		return usage_error(c, "--pool POOL is required");
	if (!size)
		return usage_error(c, "--size SIZE is required");
	r = call(c, "vol.create", json_pack("{s:s,s:s,s:I}", "name", argv[optind], "pool", pool,
					    "size", (json_int_t)size));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("volume %s created in pool %s: %s\n", argv[optind], pool,
		       jsize(r, "size", sz, sizeof(sz)));
	json_decref(r);
	return 0;
}

static int cmd_vol_list(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pool", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 }
	};
	const char *pool = NULL;
	struct table t;
	json_t *r, *v, *params;
	size_t i;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o != 'p')
			return 2;
		pool = optarg;
	}
	if (optind < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	params = pool ? json_pack("{s:s}", "pool", pool) : NULL;
	r = call(c, "vol.list", params);
	if (!r)
		return 1;
	if (c->json) {
		print_json(r);
		json_decref(r);
		return 0;
	}
	table_init(&t, 8, "NAME", "POOL", "SIZE", "ALLOCATED", "RO", "ORIGIN", "CREATED",
		   "EXPORTED-BY");
	json_array_foreach(r, i, v) {
		char sz[32], al[32];

		table_row(&t, jstr(v, "name"), jstr(v, "pool"), jsize(v, "size", sz, sizeof(sz)),
			  jsize(v, "allocated", al, sizeof(al)), jyes(v, "readonly"),
			  jstr(v, "origin"), jstr(v, "created"), jstr(v, "exported_by"));
	}
	table_print(&t);
	json_decref(r);
	return 0;
}

static int cmd_vol_show(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "vol.show", NULL, "name", NULL);
}

static int cmd_vol_delete(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "recursive", no_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 }
	};
	bool rec = false;
	json_t *r, *d;
	size_t i;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o != 'r')
			return 2;
		rec = true;
	}
	if (optind >= argc)
		return usage_error(c, "missing VOL or VOL@SNAP");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	r = call(c, "vol.delete", json_pack("{s:s,s:b}", "name", argv[optind], "recursive", rec));
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		json_array_foreach(json_object_get(r, "deleted"), i, d)
			printf("%s deleted\n", json_string_value(d));
	json_decref(r);
	return 0;
}

/* vol resize VOL SIZE [--force] */
static int cmd_vol_resize(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 }
	};
	bool force = false;
	uint64_t size;
	json_t *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		if (o != 'f')
			return 2;
		force = true;
	}
	if (optind + 2 > argc)
		return usage_error(c, "missing %s", optind >= argc ? "VOL" : "SIZE");
	if (optind + 2 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 2]);
	if (parse_size_arg(c, "SIZE", argv[optind + 1], &size))
		return 2;
	r = call(c, "vol.resize", json_pack("{s:s,s:I,s:b}", "name", argv[optind],
					    "size", (json_int_t)size, "force", force));
	if (!r)
		return 1;
	print_human(r);
	json_decref(r);
	return 0;
}

/* snapshot VOL [SNAP], clone SRC NEWVOL: one line naming what was made */
static int snap_or_clone(struct ctx *c, int argc, char **argv, bool snap)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	json_t *params, *r;

	opt_reset();
	if (opt_parse(c, argc, argv, opts) != -1)
		return 2;
	if (optind >= argc)
		return usage_error(c, "missing %s", snap ? "VOL" : "VOL@SNAP");
	if (!snap && optind + 1 >= argc)
		return usage_error(c, "missing NEWVOL");
	if (optind + 2 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 2]);
	params = json_pack("{s:s}", snap ? "volume" : "source", argv[optind]);
	if (optind + 1 < argc)
		json_object_set_new(params, "name", json_string(argv[optind + 1]));
	r = call(c, snap ? "vol.snapshot" : "vol.clone", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("%s %s created from %s\n", snap ? "snapshot" : "clone", jstr(r, "name"),
		       argv[optind]);
	json_decref(r);
	return 0;
}

static int cmd_snapshot(struct ctx *c, int argc, char **argv)
{
	return snap_or_clone(c, argc, argv, true);
}

static int cmd_clone(struct ctx *c, int argc, char **argv)
{
	return snap_or_clone(c, argc, argv, false);
}

static int cmd_rollback(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "vol.rollback", "rolled back to %s", "snapshot", NULL);
}

static int cmd_debug(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	json_t *params = json_object(), *r;
	const char *s;

	opt_reset();
	if (opt_parse(c, argc, argv, opts) != -1) {
		json_decref(params);
		return 2;
	}
	if (optind + 1 < argc) {
		json_decref(params);
		return usage_error(c, "unexpected argument '%s' (give one comma-separated list)",
				   argv[optind + 1]);
	}
	if (optind < argc)
		json_object_set_new(params, "subsystems", json_string(argv[optind]));
	r = call(c, "log.debug", params);
	if (!r)
		return 1;
	if (c->json) {
		print_json(r);
	} else {
		s = jstr(r, "subsystems");
		printf("debug: %s\n", s && *s ? s : "none");
	}
	json_decref(r);
	return 0;
}

static int cmd_log_level(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "log.level", NULL, "?level", NULL);
}

static int cmd_call(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = { { NULL, 0, NULL, 0 } };
	json_t *params = NULL, *r;
	json_error_t jerr;

	opt_reset();
	if (opt_parse(c, argc, argv, opts) != -1)
		return 2;
	if (optind >= argc)
		return usage_error(c, "missing METHOD");
	if (optind + 2 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 2]);
	if (optind + 1 < argc) {
		params = json_loads(argv[optind + 1], 0, &jerr);
		if (!json_is_object(params)) {
			json_decref(params);
			return usage_error(c, "PARAMS must be a JSON object: %s",
					   params ? "not an object" : jerr.text);
		}
	}
	r = call(c, argv[optind], params);
	if (!r)
		return 1;
	print_json(r);
	json_decref(r);
	return 0;
}

/* ---------------------------------------------------------------- nbd */

/* nbd listen ADDR [--tls off|allow|require] [--tls-cert DIR [--tls-verify-peer] | --tls-psk FILE] */
static int cmd_nbd_listen(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tls", required_argument, NULL, 't' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-psk", required_argument, NULL, 'p' },
		{ "tls-verify-peer", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 }
	};
	const char *tls = NULL, *cert = NULL, *psk = NULL;
	char cabs[PATH_MAX], pabs[PATH_MAX];
	bool verify = false;
	json_t *params, *r;
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 't': tls = optarg; break;
		case 'c': cert = optarg; break;
		case 'p': psk = optarg; break;
		case 'v': verify = true; break;
		default: return 2;
		}
	}
	if (optind >= argc)
		return usage_error(c, "missing ADDRESS");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	if (tls && strcmp(tls, "off") && strcmp(tls, "allow") && strcmp(tls, "require"))
		return usage_error(c, "--tls takes off, allow or require, not '%s'", tls);
	if (cert && psk)
		return usage_error(c, "--tls-cert and --tls-psk exclude each other");
	if ((cert || psk) && !tls)
		tls = "require";	/* credentials given: TLS is meant */
	/* The daemon may run elsewhere in the tree: give it absolute paths. */
	if (cert && realpath(cert, cabs))
		cert = cabs;
	if (psk && realpath(psk, pabs))
		psk = pabs;
	params = json_pack("{s:s}", "address", argv[optind]);
	if (tls)
		json_object_set_new(params, "tls", json_string(tls));
	if (cert)
		json_object_set_new(params, "tls_cert", json_string(cert));
	if (psk)
		json_object_set_new(params, "tls_psk", json_string(psk));
	if (verify)
		json_object_set_new(params, "tls_verify_peer", json_true());
	r = call(c, "nbd.listen", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("nbd: listening on %s%s%s\n", jstr(r, "bound") ? jstr(r, "bound") : argv[optind],
		       tls && strcmp(tls, "off") ? ", tls " : "", tls && strcmp(tls, "off") ? tls : "");
	json_decref(r);
	return 0;
}

static int cmd_nbd_unlisten(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "nbd.unlisten", "nbd: stopped listening on %s",
			   "address", NULL);
}

static int cmd_nbd_list(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "nbd.list", NULL, NULL);
}

static int cmd_export_nbd(struct ctx *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "readonly", no_argument, NULL, 'r' },
		{ "description", required_argument, NULL, 'd' },
		{ "allow", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 }
	};
	const char *name = NULL, *desc = NULL;
	bool ro = false;
	json_t *params, *r, *allow = json_array();
	int o;

	opt_reset();
	while ((o = opt_parse(c, argc, argv, opts)) != -1) {
		switch (o) {
		case 'n': name = optarg; break;
		case 'r': ro = true; break;
		case 'd': desc = optarg; break;
		case 'a': json_array_append_new(allow, json_string(optarg)); break;
		default: json_decref(allow); return 2;
		}
	}
	if (optind >= argc || optind + 1 < argc)
		json_decref(allow);
	if (optind >= argc)
		return usage_error(c, "missing DISK_OR_VOL");
	if (optind + 1 < argc)
		return usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
	params = json_pack("{s:s,s:b}", "device", argv[optind], "readonly", ro);
	if (name)
		json_object_set_new(params, "name", json_string(name));
	if (desc)
		json_object_set_new(params, "description", json_string(desc));
	if (json_array_size(allow))
		json_object_set_new(params, "allow", allow);
	else
		json_decref(allow);
	r = call(c, "export.nbd", params);
	if (!r)
		return 1;
	if (c->json)
		print_json(r);
	else
		printf("nbd export %s: %s%s\n", jstr(r, "name") ? jstr(r, "name") : "?",
		       argv[optind], ro ? ", read-only" : "");
	json_decref(r);
	return 0;
}

static int cmd_export_list(struct ctx *c, int argc, char **argv)
{
	struct table t;
	json_t *r, *e;
	size_t i;
	int rc;

	r = call_plain(c, argc, argv, "export.list", NULL, &rc);
	if (!r)
		return rc;
	table_init(&t, 7, "PROTO", "NAME", "DEVICE", "SIZE", "RO", "CLIENTS", "STATE");
	json_array_foreach(r, i, e) {
		char sz[32], cl[32], st[600];

		snprintf(st, sizeof(st), "%s%s%s", jstr(e, "state") ? jstr(e, "state") : "?",
			 jstr(e, "error") ? ": " : "", jstr(e, "error") ? jstr(e, "error") : "");
		table_row(&t, jstr(e, "protocol"), jstr(e, "name"), jstr(e, "device"),
			  jsize(e, "size", sz, sizeof(sz)), jyes(e, "readonly"),
			  jint(e, "clients", cl, sizeof(cl)), st);
	}
	table_print(&t);
	json_decref(r);
	return 0;
}

static int cmd_unexport_nbd(struct ctx *c, int argc, char **argv)
{
	return simple_verb(c, argc, argv, "unexport.nbd", "nbd export %s removed", "name", NULL);
}

static const struct verb verbs[] = {
	{ "status", NULL, cmd_status, "", "show the daemon's version, uptime, reactors and backends",
	  "Shows what the daemon is (version, pid, uptime, state directory, socket) and\n"
	  "what this host can do (reactors and their event loop, disk backends).\n" },
	{ "disk", "list", cmd_disk_list, "", "list the disks",
	  "Lists every disk: backend, size, block size, read-only, O_DIRECT, state\n"
	  "(open, or failed with the reason when it could not be reopened at start),\n"
	  "who claims it (a pool or an export) and its path.\n" },
	{ "disk", "add", cmd_disk_add,
	  "NAME [PATH] [--backend auto|uring|aio|psync|mem|null] [--size SIZE] "
	  "[--block-size N] [--readonly]",
	  "open a file, block device, memory or null disk",
	  "Opens PATH (a file or block device) as disk NAME and remembers it across\n"
	  "restarts. With --size, a missing file is created sparse. mem and null disks\n"
	  "take no PATH and need --size. SIZE and N take suffixes: 512, 4K, 10G.\n"
	  "A relative PATH is made absolute from the current directory.\n" },
	{ "disk", "remove", cmd_disk_remove, "NAME", "close a disk and forget it",
	  "Flushes and closes disk NAME and removes it from the state file. Refused\n"
	  "while a pool or an export claims it. The file itself is left alone.\n" },
	{ "iscsi", "portal", cmd_iscsi_portal,
	  "add GROUP ADDR:PORT | remove|disable|enable ADDR:PORT",
	  "listen for iSCSI initiators, or stop",
	  "add: listens on ADDR:PORT (IPv4, or [IPv6]:PORT) for iSCSI initiators, in\n"
	  "portal group GROUP, and remembers it across restarts. GROUP is a name (A,\n"
	  "B ...: the next free tag is given to it) or a tag (1-65535; 1 is the\n"
	  "default group). Each group is a SCSI target port group (ALUA).\n"
	  "remove: stops listening and forgets it (connections made through it stay).\n"
	  "disable: stops listening and asks its sessions to log out (Async Message;\n"
	  "closed after 2 s if they do not), for maintenance; enable: listens again.\n"
	  "Both are remembered across restarts.\n" },
	{ "iscsi", "tpg", cmd_iscsi_tpg,
	  "set GROUP --alua active-optimized|active-nonoptimized|standby|unavailable | list",
	  "set or show the ALUA state of portal groups",
	  "set: the access state initiators see through GROUP's portals (REPORT TARGET\n"
	  "PORT GROUPS); every session gets a unit attention (ASYMMETRIC ACCESS STATE\n"
	  "CHANGED). Through standby and unavailable groups, I/O gets NOT READY.\n"
	  "Remembered across restarts. list: each group's tag, state and portals.\n" },
	{ "iscsi", "timeouts", cmd_iscsi_timeouts,
	  "[--nop-interval MS] [--nop-misses N] [--login MS]",
	  "show or set how fast a dead path is noticed",
	  "A connection silent for MS gets a NOP-In ping; after N pings without an\n"
	  "answer it is closed, and TCP gives up after MS x (N + 1) (TCP_USER_TIMEOUT).\n"
	  "Defaults: 3000 ms, 3 pings (a dead path is dropped within 12 s), login\n"
	  "15000 ms. For new connections; remembered across restarts. Hosts must wait\n"
	  "longer than that before retrying I/O on another path (doc/iscsi.md).\n" },
	{ "iscsi", "sanitize", cmd_iscsi_sanitize, "[--rate RATE]",
	  "show or set how fast SANITIZE erases",
	  "The most a SANITIZE (an initiator erasing a whole LU) writes per second,\n"
	  "e.g. 100M; 0 for no limit, the default. So that one LU's erase leaves the\n"
	  "pool's bandwidth to the others. For sanitizes that start from now on;\n"
	  "remembered across restarts.\n" },
	{ "iscsi", "target", cmd_iscsi_target, "create IQN | delete IQN [--force]",
	  "create or delete an iSCSI target",
	  "create: target IQN (iqn.YYYY-MM.reverse.domain:name), reachable through\n"
	  "every portal; give it LUNs with 'volctl export iscsi'.\n"
	  "delete: refused while the target has LUNs; --force closes its sessions and\n"
	  "unexports its LUNs first. Its ACL and CHAP settings go with it.\n" },
	{ "iscsi", "acl", cmd_iscsi_acl, "add|remove IQN INITIATOR_IQN",
	  "admit an initiator to a target, or stop admitting it",
	  "A target without ACL admits every initiator; with one, only the initiators\n"
	  "listed may log in (others: login status 02/02, authorization failure) and\n"
	  "discovery lists the target only to them. Sessions already logged in stay.\n" },
	{ "iscsi", "auth", cmd_iscsi_auth,
	  "set IQN|--discovery --chap USER:SECRET [--mutual USER:SECRET] | clear IQN|--discovery",
	  "require CHAP for a target's (or discovery) logins",
	  "set: initiators must authenticate with CHAP (MD5, SHA-256 or SHA3-256)\n"
	  "as USER with SECRET; with --mutual the target answers an initiator's\n"
	  "challenge as that USER (mutual CHAP; its secret must differ). clear: no\n"
	  "authentication. Secrets are kept in the state file (mode 0600) and never\n"
	  "shown: 'volctl iscsi list' shows only the user names.\n" },
	{ "iscsi", "sessions", cmd_iscsi_sessions, "",
	  "list the live iSCSI sessions",
	  "Lists every session in full feature phase: initiator, ISID, TSIH, type,\n"
	  "target, its connections (initiator address, portal) and the negotiated\n"
	  "parameters.\n" },
	{ "iscsi", "reservations", cmd_iscsi_reservations, "VOL",
	  "show the SCSI persistent reservations of an exported volume",
	  "Shows the registrations (initiator, ISID, target portal group, key) and\n"
	  "the reservation (type: WE, EA, WE-RO, EA-RO, WE-AR, EA-AR; and its holder)\n"
	  "of the LUN that exports VOL over iSCSI, with the PR generation and whether\n"
	  "they persist through a restart (APTPL).\n" },
	{ "iscsi", "list", cmd_iscsi_list, "", "list iSCSI portals, targets and LUNs",
	  "Lists the portals (address, portal group, state) and the targets with\n"
	  "their LUNs (number, disk, read-only, state; failed with the reason when it\n"
	  "could not come back at start).\n" },
	{ "export", "iscsi", cmd_export_iscsi, "DISK --target IQN [--lun N] [--readonly]",
	  "export a disk as a LUN of an iSCSI target",
	  "Exports DISK as LUN N (default: the lowest free) of target IQN, and\n"
	  "remembers it across restarts. The disk is claimed (it cannot be removed)\n"
	  "and exported once; every portal shows the same LU.\n" },
	{ "pool", "create", cmd_pool_create,
	  "POOL --raid 0|1|10|5|6 [--strip SIZE] [--chunk SIZE] [--low-space PCT] "
	  "[--spare DISK]... DISK...",
	  "create a pool: a RAID set over disks, a thin pool on it",
	  "Makes a RAID set of the given level over the DISKs (from 'volctl disk add';\n"
	  "they are claimed by the pool and cannot be removed) and formats a thin pool\n"
	  "on it. --raid 0 with one disk is a plain one-disk pool. --strip: bytes per\n"
	  "disk per stripe (default 64K). --chunk: the thin allocation unit, a power\n"
	  "of two from 64K to 1M; by default the full stripe when it is a power of two\n"
	  "in that range, else 64K (the daemon says which). --low-space: warn (in the\n"
	  "log, and 'LOW NOW' in pool show) when free data space falls below PCT\n"
	  "percent (default 10, 0: never). --spare: a hot spare (see 'pool\n"
	  "add-spare'). Remembered across restarts.\n" },
	{ "pool", "list", cmd_pool_list, "", "list the pools",
	  "Lists every pool: level, disks, chunk, data size and use, volumes, state\n"
	  "(online, degraded, or failed with the reason when it did not come back).\n" },
	{ "pool", "show", cmd_pool_show, "POOL", "show a pool's figures and disks",
	  "Shows level, strip, chunk, data and metadata used/total, provisioned\n"
	  "(the volumes' total size), overcommit ratio (provisioned / data total),\n"
	  "the low-space threshold (and its percentage; see 'pool set') and\n"
	  "each member disk with its slot and state.\n" },
	{ "pool", "destroy", cmd_pool_destroy, "POOL [--force]", "destroy a pool",
	  "Closes the pool, releases its disks and wipes their RAID superblocks.\n"
	  "Refused while the pool has volumes, unless --force (which destroys them\n"
	  "too); always refused while one of them is exported.\n" },
	{ "pool", "check", cmd_check, "POOL [--repair]", "check a pool's metadata (as 'check')",
	  "The same as 'volctl check POOL'.\n" },
	{ "pool", "replace", cmd_pool_replace, "POOL OLD NEW", "replace a failed or missing disk",
	  "Puts disk NEW in the slot of member OLD, which must be failed or missing,\n"
	  "and rebuilds it in the background while the pool serves I/O; the pool is\n"
	  "'rebuilding' until it is done ('pool show' gives progress, rate and ETA).\n"
	  "A restart during the rebuild resumes it where it stopped. Not on RAID 0.\n" },
	{ "pool", "add-spare", cmd_pool_add_spare, "POOL DISK", "add a hot spare to a pool",
	  "DISK (claimed by the pool) takes the place of the first member that fails,\n"
	  "at once, and is rebuilt. Remembered across restarts. Not on RAID 0.\n" },
	{ "pool", "fail", cmd_pool_fail, "POOL DISK", "take a member disk out",
	  "Marks member DISK failed, as if it had failed (maintenance, tests): the\n"
	  "pool goes on degraded, and a hot spare, if any, takes its place. Refused\n"
	  "when the pool would lose data.\n" },
	{ "pool", "scrub", cmd_pool_scrub, "POOL [--repair] [--cancel]",
	  "check parity and mirrors in the background",
	  "Reads every stripe and checks that parity (RAID 5/6) matches the data and\n"
	  "mirrors (1/10) match; 'pool show' gives progress and the mismatches found.\n"
	  "--repair writes parity again from the data and copies mirrors from the\n"
	  "first one. --cancel stops a running scrub. Not on RAID 0.\n" },
	{ "pool", "set", cmd_pool_set, "POOL [--low-space PCT] [--rebuild-rate RATE]",
	  "change a pool's settings",
	  "--low-space PCT: the low-space mark, in percent of the data space (0: off);\n"
	  "a pool already below it warns now. --rebuild-rate: the most a rebuild or\n"
	  "scrub reads per second per disk (e.g. 200M; 0: no limit); rebuilds also\n"
	  "slow down while the pool serves I/O. Applied at once and remembered across\n"
	  "restarts.\n" },
	{ "vol", "create", cmd_vol_create, "VOL --pool POOL --size SIZE", "create a thin volume",
	  "Creates thin volume VOL of SIZE bytes (a multiple of the block size) in\n"
	  "POOL. Space is taken as it is written. VOL can then be exported by name.\n" },
	{ "vol", "list", cmd_vol_list, "[--pool POOL]", "list volumes, snapshots and clones",
	  "Lists name, pool, size, space allocated, read-only, origin (for snapshots\n"
	  "and clones), creation time (UTC) and the exports using it.\n" },
	{ "vol", "show", cmd_vol_show, "VOL", "show one volume or snapshot",
	  "Shows everything 'vol list' does and the volume's id, chunk, mapped\n"
	  "chunks and block size.\n" },
	{ "vol", "delete", cmd_vol_delete, "VOL|VOL@SNAP [--recursive]",
	  "delete a volume or a snapshot",
	  "Deletes VOL or snapshot VOL@SNAP; its space goes back to the pool once\n"
	  "nothing shares it. A volume with snapshots needs --recursive (which deletes\n"
	  "them too). Refused while it (or one of its snapshots) is exported.\n" },
	{ "vol", "resize", cmd_vol_resize, "VOL SIZE [--force]", "grow a volume online (shrink: --force)",
	  "Grow VOL to SIZE (512M, 10G, 1T), online: exports see the new size (NBD\n"
	  "clients when they reconnect, iSCSI initiators after a unit attention).\n"
	  "A smaller SIZE needs --force: the data past it is discarded and its\n"
	  "chunks go back to the pool. Snapshots cannot be resized.\n" },
	{ "snapshot", NULL, cmd_snapshot, "VOL [SNAP]", "take a read-only snapshot VOL@SNAP",
	  "Takes a snapshot of VOL in O(1): VOL@SNAP, read-only, exportable by that\n"
	  "name. SNAP defaults to the UTC time, e.g. 20261126T183000Z.\n" },
	{ "clone", NULL, cmd_clone, "VOL@SNAP NEWVOL", "make a writable volume from a snapshot",
	  "Creates NEWVOL, a writable volume sharing VOL@SNAP's data (copy on write).\n"
	  "A writable volume can be cloned too.\n" },
	{ "check", NULL, cmd_check,
	  "POOL [--repair] | --offline DEV... [--repair [--drop-damaged]]",
	  "check (and repair) a pool's metadata",
	  "Walks every tree of the pool's metadata (the volume table and each volume's\n"
	  "mappings) and recounts every reference to each metadata block and data\n"
	  "chunk against the space maps; reports each damaged tree (by volume) and\n"
	  "each count that is wrong (too high: leaked space; too low: space that could\n"
	  "be handed out twice). Read-only. POOL: online, through the daemon, while\n"
	  "the pool serves I/O. --offline DEV...: the daemon stopped; opens the\n"
	  "pool's disks itself (all the members of its RAID set, in any order, are\n"
	  "assembled from their superblocks; or one bare pool device), read-only\n"
	  "unless --repair, and refuses a device that another process (sand) has open.\n"
	  "--repair: when every tree could be read, rewrites the space maps from the\n"
	  "trees (leaked blocks and chunks return to the pool, low counts are raised),\n"
	  "commits, checks again and says what it did. A damaged tree is rebuilt from\n"
	  "what can still be read of it (as dm's thin_repair): the chunks whose\n"
	  "mappings cannot be read are reported by range and read as zeros. --drop-\n"
	  "damaged (offline, with --repair), instead: delete each volume whose tree\n"
	  "is damaged (its data is lost; it cannot be deleted the usual way, which\n"
	  "walks the tree), then rebuild the counts from the trees left. Exit status\n"
	  "0 clean (or repaired), 1 damaged.\n" },
	{ "rollback", NULL, cmd_rollback, "VOL@SNAP", "roll a volume back to a snapshot",
	  "VOL becomes what VOL@SNAP holds: what was written since is lost. Its\n"
	  "snapshots, older and newer, stay. Refused while VOL is exported.\n" },
	{ "unexport", "iscsi", cmd_unexport_iscsi, "IQN --lun N [--force]",
	  "remove a LUN from an iSCSI target",
	  "Removes LUN N of target IQN and releases its disk, sessions or not: commands\n"
	  "doing I/O on it finish, later ones get LOGICAL UNIT NOT SUPPORTED, every\n"
	  "session of the target is told REPORTED LUNS DATA HAS CHANGED. --force\n"
	  "closes the target's sessions first.\n" },
	{ "nbd", "listen", cmd_nbd_listen, "ADDR:PORT|[IPV6]:PORT|unix:PATH "
	  "[--tls off|allow|require] [--tls-cert DIR [--tls-verify-peer] | --tls-psk FILE]",
	  "serve NBD on a TCP address or a unix socket",
	  "Listens for NBD clients on ADDR:PORT (IPv4, or [IPv6] in brackets; port 0\n"
	  "picks a free one) or on the unix socket PATH, and remembers it across\n"
	  "restarts. Clients reach every NBD export through every listener.\n"
	  "TLS (NBD_OPT_STARTTLS): --tls allow lets clients choose, --tls require\n"
	  "refuses everything but STARTTLS before TLS (the default once credentials\n"
	  "are given). Credentials: --tls-cert DIR holding server-cert.pem and\n"
	  "server-key.pem (and ca-cert.pem: with --tls-verify-peer, clients must show\n"
	  "a certificate signed by it), or --tls-psk FILE of psktool 'user:hexkey'\n"
	  "lines. Only the paths are kept in the state file.\n" },
	{ "nbd", "unlisten", cmd_nbd_unlisten, "ADDR",
	  "stop listening on an NBD address",
	  "Stops accepting NBD clients on ADDR (as given to 'nbd listen'). Clients\n"
	  "already connected stay connected.\n" },
	{ "nbd", "list", cmd_nbd_list, "", "list the NBD listeners",
	  "Lists every NBD listener: the address given, what it is bound to, and its\n"
	  "state (failed with the reason when it could not be restored at start).\n" },
	{ "export", "nbd", cmd_export_nbd,
	  "DISK_OR_VOL [--name NAME] [--readonly] [--description TEXT] [--allow CIDR]...",
	  "export a disk or volume over NBD",
	  "Serves DISK_OR_VOL to NBD clients as export NAME (default: its own name),\n"
	  "read-only with --readonly, and remembers it across restarts. The device is\n"
	  "claimed by the export until 'unexport nbd'. Exports advertise multi-conn:\n"
	  "a FLUSH on any connection covers writes acknowledged on every connection.\n"
	  "--allow CIDR (repeatable; IPv4 or IPv6, e.g. 10.0.0.0/8, fd00::/64) limits\n"
	  "the export to TCP clients from those networks: others get a policy error\n"
	  "and do not see it listed. Unix-socket clients are always allowed.\n" },
	{ "export", "list", cmd_export_list, "", "list the exports",
	  "Lists every export: protocol, name, device, size, read-only, connected\n"
	  "clients and state (failed with the reason when it could not be restored).\n" },
	{ "unexport", "nbd", cmd_unexport_nbd, "NAME", "stop exporting over NBD",
	  "Stops serving NBD export NAME: new clients are refused at once, connected\n"
	  "clients get replies to their in-flight requests and are then disconnected,\n"
	  "and the device is released. Forgotten across restarts.\n" },
	{ "debug", NULL, cmd_debug, "[LIST]", "switch debug messages per subsystem",
	  "LIST is comma-separated subsystems (core, ev, blk, rpc, nbd, iscsi, scsi,\n"
	  "raid, thin, fault, bench), 'all' or 'none'. Without LIST, shows the current.\n" },
	{ "log-level", NULL, cmd_log_level, "[error|warn|info|debug]", "set or show the log level",
	  "Messages above LEVEL are dropped (debug messages of subsystems switched on\n"
	  "with 'volctl debug' are always logged).\n" },
	{ "call", NULL, cmd_call, "METHOD [PARAMS-JSON]", "call any JSON-RPC method (for debugging)",
	  "Sends METHOD with PARAMS (a JSON object) and prints the raw result.\n" },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: volctl [--socket PATH] [--json] VERB [ARGS...]\n"
		"\n"
		"Control the sand storage daemon.\n"
		"\n"
		"Options:\n"
		"  --socket PATH   the daemon's control socket (default: $SAND_SOCKET, else\n"
		"                  " DEFAULT_SOCKET ")\n"
		"  --json          print the daemon's JSON result instead of a table\n"
		"  --help          this text; 'volctl VERB --help' for a verb\n"
		"  --version       print the version\n"
		"\n"
		"Verbs:\n");
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
		char w[64];

		snprintf(w, sizeof(w), "%s%s%s", verbs[i].name, verbs[i].sub ? " " : "",
			 verbs[i].sub ? verbs[i].sub : "");
		fprintf(f, "  %-16s%s\n", w, verbs[i].summary);
	}
	fprintf(f, "\nExit status: 0 done, 1 the daemon refused or is unreachable, 2 usage error.\n");
}

/* Take --socket/--json/--help/--version wherever they are (before "--"). */
static int global_opts(struct ctx *c, int *argcp, char **argv, bool *help)
{
	int argc = *argcp, n = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			while (i < argc)
				argv[n++] = argv[i++];
			break;
		}
		if (!strcmp(a, "--json")) {
			c->json = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			*help = true;
		} else if (!strcmp(a, "--socket")) {
			if (i + 1 >= argc)
				return usage_error(NULL, "--socket needs a PATH");
			c->socket = argv[++i];
		} else if (!strncmp(a, "--socket=", 9)) {
			c->socket = a + 9;
		} else {
			argv[n++] = argv[i];
		}
	}
	argv[n] = NULL;
	*argcp = n;
	return 0;
}

int main(int argc, char **argv)
{
	struct ctx c = { .fd = -1 };
	const struct verb *v = NULL;
	bool help = false;
	int rc, words;

	c.socket = getenv("SAND_SOCKET");
	if (!c.socket || !*c.socket)
		c.socket = DEFAULT_SOCKET;
	if (global_opts(&c, &argc, argv, &help))
		return 2;
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("volctl %s\n", SAND_VERSION);
		return 0;
	}
	if (argc < 2) {
		if (help) {
			usage(stdout);
			return 0;
		}
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
		if (strcmp(verbs[i].name, argv[1]))
			continue;
		if (!verbs[i].sub) {
			v = &verbs[i];
			break;
		}
		if (argc >= 3 && !strcmp(verbs[i].sub, argv[2])) {
			v = &verbs[i];
			break;
		}
	}
	if (!v) {
		bool group = false;

		for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
			if (!strcmp(verbs[i].name, argv[1]))
				group = true;
		if (group && argc >= 3)
			return usage_error(NULL, "unknown verb '%s %s'", argv[1], argv[2]);
		if (group) {
			if (help) {
				usage(stdout);
				return 0;
			}
			return usage_error(NULL, "'%s' needs a verb: see 'volctl --help'", argv[1]);
		}
		return usage_error(NULL, "unknown verb '%s'", argv[1]);
	}
	c.verb = v;
	if (help) {
		verb_usage(stdout, v);
		printf("\n%s: %s.\n\n%s", v->sub ? v->sub : v->name, v->summary, v->help);
		return 0;
	}
	words = v->sub ? 2 : 1;
	rc = v->fn(&c, argc - words, argv + words);
	if (c.fd >= 0)
		close(c.fd);
	return rc;
}
