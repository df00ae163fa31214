/* SPDX-License-Identifier: MIT */
/*
 * A tiny iSCSI target for the functional tests: reactors, portals (-a, as
 * many as wanted; default 127.0.0.1:0), one target, memory LUNs. Prints
 * "port N" on stdout for each portal once it listens, runs
 * until SIGTERM or SIGINT, then shuts down cleanly (so ASan sees leaks).
 *
 *   iscsi_testd [-a ADDR:PORT] [-r REACTORS] [-e] [-R] [-n MS] [-P DIR] [-L MS] [-S KIB] IQN SIZE[:BS[:PHYS]] ...
 *   -e: epoll loops; -R: every LUN read-only; -n: NOP-In ping interval;
 *   -P: persistent reservations with APTPL kept in DIR/lunN.pr;
 *   -L: writes end MS milliseconds after they land (a fault device)
 *   -S: a SANITIZE writes KIB KiB a second at most
 *   PHYS: the LUN's physical block (bytes; default BS)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sand/blkdev.h"
#include "sand/fault.h"
#include "sand/iscsi.h"
#include "sand/log.h"
#include "sand/reactor.h"
#include "proto/scsi/sanitize.h"

int main(int argc, char **argv)
{
	const char *addrs[8] = { "127.0.0.1:0" };
	unsigned naddrs = 0;
	unsigned nreactors = 2;
	enum ev_backend backend = EV_AUTO;
	struct blkdev *bds[16], *fbds[16] = { NULL };
	unsigned wlat_ms = 0;
	unsigned nbd = 0;
	bool ro = false;
	const char *prdir = NULL;
	sigset_t set;
	int opt, port, sig, rc = 1;

	while ((opt = getopt(argc, argv, "a:r:eRd:n:P:L:S:")) != -1) {
		switch (opt) {
		case 'a':
			if (naddrs < ARRAY_SIZE(addrs))
				addrs[naddrs++] = optarg;
			break;
		case 'r': nreactors = (unsigned)atoi(optarg); break;
		case 'e': backend = EV_EPOLL; break;
		case 'R': ro = true; break;
		case 'd': log_set_debug(optarg); break;
		case 'n': iscsi_set_timeouts((unsigned)atoi(optarg), 3, 15000); break;
		case 'P': prdir = optarg; break;
		case 'L': wlat_ms = (unsigned)atoi(optarg); break;
		case 'S': scsi_sanitize_set_rate((uint64_t)atoi(optarg) << 10); break;
		default:
			fprintf(stderr, "usage: %s [-a ADDR:PORT] [-r N] [-e] [-R] [-d SUBSYS] [-n MS] "
				"[-P DIR] [-L MS] [-S SANITIZE_KIB_S] IQN SIZE[:BS[:PHYS]]...\n", argv[0]);
			return 2;
		}
	}
	if (optind + 2 > argc)
		return 2;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (reactors_start(nreactors, backend)) {
		fprintf(stderr, "cannot start reactors\n");
		return 1;
	}
	if (iscsi_target_add(argv[optind]))
		goto stop;
	for (int i = optind + 1; i < argc && nbd < 16; i++) {
		uint64_t size, bs = 512, phys = 0;
		char name[32], prfile[512], *colon = strchr(argv[i], ':'), *colon2;

		if (colon) {
			*colon = '\0';
			colon2 = strchr(colon + 1, ':');
			if (colon2) {
				*colon2 = '\0';
				if (parse_size(colon2 + 1, &phys))
					goto stop;
			}
			if (parse_size(colon + 1, &bs))
				goto stop;
		}
		if (parse_size(argv[i], &size))
			goto stop;
		snprintf(name, sizeof(name), "lun%u", nbd);
		if (blk_mem_create(name, size, (uint32_t)bs, &bds[nbd]))
			goto stop;
		bds[nbd]->phys_block = (uint32_t)phys;
		if (wlat_ms) {
			snprintf(name, sizeof(name), "lun%uf", nbd);
			if (blk_fault_create(name, bds[nbd], &fbds[nbd]) ||
			    fault_set_latency(fbds[nbd], wlat_ms * 1000000ull, FAULT_OPS_WRITE)) {
				nbd++;
				goto stop;
			}
		}
		snprintf(prfile, sizeof(prfile), "%s/lun%u.pr", prdir ? prdir : ".", nbd);
		if (iscsi_lun_add_pr(argv[optind], nbd, fbds[nbd] ? fbds[nbd] : bds[nbd], ro,
				     prdir ? prfile : NULL)) {
			nbd++;
			goto stop;
		}
		nbd++;
	}
	for (unsigned i = 0; i < MAX(naddrs, 1u); i++) {
		/* each further portal in its own target port group (2, 3 ...),
		 * so that MultipathIO goes through two ALUA groups */
		port = iscsi_portal_add_tpg(addrs[i], i + 1);
		if (port < 0) {
			fprintf(stderr, "portal %s: %s\n", addrs[i], strerror(-port));
			goto stop;
		}
		printf("port %d\n", port);
	}
	fflush(stdout);
	while (sigwait(&set, &sig))
		;
	rc = 0;
stop:
	iscsi_shutdown();
	reactors_stop();
	for (unsigned i = 0; i < nbd; i++) {
		if (fbds[i])
			blkdev_close(fbds[i]);
		blkdev_close(bds[i]);
	}
	return rc;
}
