/* SPDX-License-Identifier: MIT */
/* volctl's verbs that work without the daemon (tools/volctl/check.c). */
#ifndef VOLCTL_OFFLINE_H
#define VOLCTL_OFFLINE_H

#include <stdbool.h>

/* volctl check --offline DEV... [--repair [--drop-damaged]]: the exit status. */
int volctl_check_offline(char **paths, int n, bool repair, bool drop, bool json);

#endif
